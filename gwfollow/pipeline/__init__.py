"""Running the core over streams of alerts: the async service pipeline (:mod:`.runner`), its
listeners (:mod:`.listeners`), archive replay (:mod:`.replay`) and replay on Dask
(:mod:`.distributed`)."""
