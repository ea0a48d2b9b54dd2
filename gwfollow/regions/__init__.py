"""Regions on the sky and in time: credible-region MOCs and space-time MOCs (:mod:`.moc`), MOC 2.0
I/O (:mod:`.mocio`), survey and catalogue coverages (:mod:`.coverage`, :mod:`.mocserver`)."""
