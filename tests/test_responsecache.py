"""The REST response cache never keeps a body computed before the store changed."""

from __future__ import annotations

import threading

from gwfollow.config import packaged_defaults
from gwfollow.service import make_app
from gwfollow.service.keys import RESPONSE_CACHE
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


def test_bounded_by_bytes_with_least_recently_used_eviction() -> None:
    bound = 1 << 20
    c = ResponseCache(max_bytes=bound)
    body = bytes(100_000)
    c.put("/keep", (b"k" * 100_000, "application/json", None, {}), c.generation)
    for i in range(200):  # 20 MB of distinct large responses into a 1 MiB cache
        c.put(f"/api/v1/events/S{i}/targets?limit={i}", (body, "application/json", None, {}), c.generation)
        assert c.nbytes <= bound
        assert c.get("/keep") is not None  # read often: never the least recently used
    assert 8 <= len(c) <= bound // 100_000
    assert c.get("/api/v1/events/S0/targets?limit=0") is None  # the oldest went first
    assert c.get("/api/v1/events/S199/targets?limit=199") is not None
    c.put("/huge", (bytes(bound + 1), "text/plain", None, {}), c.generation)  # larger than the bound
    assert c.get("/huge") is None and c.nbytes <= bound


def test_the_bound_comes_from_the_config(tmp_path) -> None:
    cfg = packaged_defaults().updated(store=dict(path=str(tmp_path / "c.sqlite")),
                                      service=dict(response_cache_mib=0.5))
    app = make_app(cfg)
    assert app[RESPONSE_CACHE].max_bytes == 2**19
    assert packaged_defaults().service.response_cache_mib > 0


def test_bounded_and_safe_across_threads() -> None:
    c = ResponseCache(max_bytes=10 * 256)  # ints cost only the per-entry overhead
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
