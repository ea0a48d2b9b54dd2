"""Sky maps: any published form (multi-order NUNIQ, flat NESTED/RING, gzipped) read into one
multi-order representation (:mod:`.skymap`), the FITS table reader behind it (:mod:`.fitsio`) and
the simulated BAYESTAR-like maps of the demo (:mod:`.simulate`)."""
