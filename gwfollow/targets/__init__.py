"""Targets inside a region: catalogue sources (:mod:`.catalogues`, :mod:`.partitioned`,
:mod:`.tap`), galaxy ranking (:mod:`.rank`), telescope fields (:mod:`.fields`), sites and
observability (:mod:`.observability`, :mod:`.windows`)."""
