"""The REST response cache never keeps a body computed before the store changed."""

from __future__ import annotations

import threading

from gwfollow.service.responsecache import ResponseCache


def test_a_body_computed_before_an_invalidation_is_not_kept() -> None:
    c = ResponseCache()
    gen = c.generation  # a handler starts, reads the store ...
    c.invalidate()  # ... the pipeline commits a new alert meanwhile ...
    c.put("/api/v1/events", b"stale", gen)  # ... and the handler finishes with the old body
    assert c.get("/api/v1/events") is None
    c.put("/api/v1/events", b"fresh", c.generation)
    assert c.get("/api/v1/events") == b"fresh"
    c.invalidate()
    assert c.get("/api/v1/events") is None and len(c) == 0


def test_bounded_and_safe_across_threads() -> None:
    c = ResponseCache(max_entries=10)
    for i in range(25):
        c.put(f"/k{i}", i, c.generation)
    assert len(c) <= 10
    stop = threading.Event()

    def invalidate() -> None:
        while not stop.is_set():
            c.invalidate()

    t = threading.Thread(target=invalidate)
    t.start()
    try:
        for i in range(20000):
            g = c.generation
            c.put(f"/k{i % 50}", i, g)
            hit = c.get(f"/k{i % 50}")
            assert hit is None or hit == i or isinstance(hit, int)
    finally:
        stop.set()
        t.join()
    assert len(c) <= 10
