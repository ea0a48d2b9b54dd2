"""The pipeline with real parts: SQLite store, HTTP server for VOEvent sky maps."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from aiohttp import web
from mocpy import MOC

from gwfollow import credible_moc, read_skymap
from gwfollow.config import (
    Config,
    named_config,
    packaged_defaults,
)
from gwfollow.ingest import parse_json_alert
from gwfollow.pipeline.runner import Pipeline
from gwfollow.regions.moc import ranges_of
from gwfollow.store import Store

from .conftest import shared_path

CFG = packaged_defaults().updated(telescopes=(), sites=(),
                                  fetch=dict(timeout_s=5, retries=2, backoff_s=0.05, max_mib=5,
                                             allowed_hosts=("127.0.0.1",), allowed_networks=("127.0.0.1/32",)))


@pytest.fixture(scope="module")
def process_pool():
    """The production executor: spawned worker processes, shared by this module's tests."""
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def _pipe(pool: ProcessPoolExecutor, store: Store, cfg: Config = CFG, **kw) -> Pipeline:
    return Pipeline(cfg, store, executor=pool, **kw)


async def _run_all(pipe: Pipeline, bodies: list[tuple[bytes, str]]) -> None:
    for body, src in bodies:
        await pipe.submit(body, src)
    await pipe.join()


async def test_real_alerts_become_events_and_mocs(tmp_path, process_pool) -> None:
    store = Store(tmp_path / "g.sqlite")
    names = ["S241102br-preliminary.json", "S241102br-initial.json", "S250720j-preliminary.json"]
    bodies = [(shared_path("alerts", n).read_bytes(), n) for n in names]
    async with _pipe(process_pool, store) as pipe:
        await _run_all(pipe, bodies)
    assert {e.superevent_id for e in store.events()} == {"S241102br", "S250720j"}
    # S250720j carries a combined (GW + GRB) map: a second sky-map version with its own MOCs.
    roles = sorted(m["role"] for m in store.skymaps_of("S250720j"))
    assert roles == ["combined", "gw"]
    # Each stored MOC equals the MOC computed directly from the alert's sky map.
    alert = parse_json_alert(bodies[1][0])
    sm = read_skymap(alert.skymap)
    maps = store.skymaps_of("S241102br")
    latest = maps[-1]
    assert latest["sha256"] == sm.sha256
    for p in store.products_of("S241102br"):
        if p["skymap_id"] == latest["id"] and p["kind"] == "moc":
            path = tmp_path / f"p{p['id']}.fits"
            path.write_bytes(store.product_data(p["id"]))
            stored = MOC.load(str(path), format="fits")
            assert np.array_equal(ranges_of(stored), ranges_of(credible_moc(sm, p["level"])))
            assert p["provenance"]["skymap_sha256"] == sm.sha256
    timings = store.query("SELECT DISTINCT stage FROM timings")
    assert {"total", "process", "store", "worker.parse"} <= {r[0] for r in timings}


async def test_redelivery_and_malformed_messages(tmp_path, process_pool) -> None:
    store = Store(tmp_path / "g.sqlite")
    good = shared_path("alerts", "MS181101ab-preliminary.json").read_bytes()
    bad = [
        (good[: len(good) // 2], "truncated"),
        (good.replace(b'"skymap": "U0lN', b'"skymap": "!!!!'), "bad-base64"),
        (good.replace(b'"PRELIMINARY"', b'"SOMETHING"'), "unknown-type"),
        (b"SIMPLE  =                    T" + b" " * 3000, "corrupt-fits"),
    ]
    async with _pipe(process_pool, store) as pipe:
        unseen = (shared_path("alerts", "S241126dm-retraction.json").read_bytes(), "unseen-retraction")
        await _run_all(pipe, [(good, "a")] + bad + [unseen, (good, "again"), (good, "and again")])
        assert pipe.stats["redelivered"] == 2
    dead = store.dead_letters()
    assert len(dead) == len(bad)
    reasons = " | ".join(d["reason"] for d in dead)
    for word in ("JSON", "base64", "SOMETHING", "truncated"):
        assert word in reasons
    # A retraction of an event never seen is recorded (the event is born retracted).
    assert store.event("S241126dm").state == "retracted"
    # The listener went on: the good alert is processed once, its raw kept once.
    assert store.counts()["alerts"] == 2 and store.counts()["products"] == 3
    assert store.raw(1).deliveries == 3
    for d in dead:
        assert store.raw(d["raw_id"]).status == "dead" and store.raw(d["raw_id"]).body


async def test_filters(tmp_path, process_pool) -> None:
    store = Store(tmp_path / "g.sqlite")
    cfg = CFG.updated(filters=dict(mock_events=False))
    body = shared_path("alerts", "MS181101ab-preliminary.json").read_bytes()
    async with _pipe(process_pool, store, cfg) as pipe:
        await _run_all(pipe, [(body, "mock")])
    a = store.alerts_of("MS181101ab")
    assert len(a) == 1 and not a[0]["acted"] and "mock" in a[0]["note"]
    assert store.counts()["products"] == 0 and store.raw(1).status == "ignored"


async def test_resume_after_crash(tmp_path, process_pool) -> None:
    db = tmp_path / "g.sqlite"
    store = Store(db)
    body = shared_path("alerts", "MS181101ab-initial.json").read_bytes()
    pipe = _pipe(process_pool, store)
    await pipe.start()
    await pipe.accept(body, "kafka")  # accepted (offset committed), then the process "dies"
    await pipe.stop()
    assert store.pending_raw_ids() == [1]
    store.close()
    store = Store(db)
    async with _pipe(process_pool, store) as pipe:
        await pipe.join()
    assert store.pending_raw_ids() == [] and store.counts()["products"] == 3


@pytest.fixture
async def skymap_server(aiohttp_server):
    data = shared_path("skymaps", "MS181101ab_bayestar.multiorder.fits").read_bytes()
    hits = {"flaky": 0}

    async def ok(request):
        return web.Response(body=data, content_type="application/fits")

    async def flaky(request):
        hits["flaky"] += 1
        if hits["flaky"] < 3:
            return web.Response(status=503)
        return web.Response(body=data)

    async def missing(request):
        return web.Response(status=404)

    async def huge(request):
        return web.Response(body=b"x" * (6 * 2**20))

    app = web.Application()
    app.router.add_get("/ok.fits", ok)
    app.router.add_get("/flaky.fits", flaky)
    app.router.add_get("/missing.fits", missing)
    app.router.add_get("/huge.fits", huge)
    server = await aiohttp_server(app)
    return server, hits


async def test_voevent_skymaps_are_fetched_with_retries(tmp_path, skymap_server, process_pool) -> None:
    server, hits = skymap_server
    base = f"http://127.0.0.1:{server.port}"
    xml = shared_path("voevents", "MS181101ab-2-Preliminary.xml").read_bytes()
    url = b"https://emfollow.docs.ligo.org/userguide/_static/bayestar.multiorder.fits,0"
    variants = [(xml.replace(url, f"{base}/{name}.fits".encode()).replace(b"Preliminary", name.encode()), name)
                for name in ("ok", "flaky", "missing", "huge")]
    store = Store(tmp_path / "g.sqlite")
    async with _pipe(process_pool, store) as pipe:
        await _run_all(pipe, [(b.replace(b'value="ok"', b'value="Preliminary"')
                               .replace(b'value="flaky"', b'value="Initial"')
                               .replace(b'value="missing"', b'value="Update"')
                               .replace(b'value="huge"', b'value="Update"'), n) for b, n in variants])
    assert hits["flaky"] == 3
    dead = {d["source"]: d["reason"] for d in store.dead_letters()}
    assert set(dead) == {"missing", "huge"}
    assert "404" in dead["missing"] and "limit" in dead["huge"]
    assert len(store.skymaps_of("MS181101ab")) == 2


async def test_event_loop_is_not_blocked_while_processing(tmp_path) -> None:
    """A ticker on the loop keeps ticking while a real process pool works."""
    store = Store(tmp_path / "g.sqlite")
    body = shared_path("alerts", "S250720j-preliminary.json").read_bytes()  # two sky maps
    cfg = dataclasses.replace(CFG, service=dataclasses.replace(CFG.service, workers=1))
    gaps = []

    async def ticker():
        last = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(0.005)
            now = asyncio.get_running_loop().time()
            gaps.append(now - last)
            last = now

    async with Pipeline(cfg, store) as pipe:  # the default: spawned worker processes
        t = asyncio.create_task(ticker())
        await _run_all(pipe, [(body, "u")])
        t.cancel()
    assert store.counts()["products"] == 6  # MOCs and galaxies of both maps (GW and combined)
    # Work done on the loop would stop the ticker for all of its duration; no
    # absolute bound (the machine may be loaded): the longest gap is shorter
    # than the work the worker process did meanwhile.
    worker = store.query("SELECT seconds FROM timings WHERE stage = 'process'")[0][0]
    assert max(gaps) < worker


async def test_unexpected_failure_is_kept_and_pipeline_goes_on(tmp_path, process_pool) -> None:
    """A failure that is not the message's fault still ends in a dead letter, not a hang."""
    from gwfollow.config import TelescopeConfig

    bad = dataclasses.replace(CFG, telescopes=(named_config(TelescopeConfig, "X", grid=str(tmp_path / "missing.txt"),
                                                               fov_width_deg=5.0),))
    store = Store(tmp_path / "g.sqlite")
    body = shared_path("alerts", "MS181101ab-preliminary.json").read_bytes()
    outcomes = []

    async def hook(o):
        outcomes.append(o)

    pipe = _pipe(process_pool, store, bad)
    pipe.add_hook(hook)
    async with pipe:
        await _run_all(pipe, [(body, "a")])
    assert [o.status for o in outcomes] == ["dead"]
    assert "internal error" in store.dead_letters()[0]["reason"] and store.raw(1).status == "dead"


def _hold_worker(flag: str) -> None:
    """Keep a pool worker busy until the file ``flag`` exists."""
    while not os.path.exists(flag):
        time.sleep(0.01)


async def test_full_queue_holds_intake_back(tmp_path) -> None:
    """Back-pressure: with the worker busy and the queue full, intake waits (nothing dropped)."""
    cfg = dataclasses.replace(CFG, service=dataclasses.replace(CFG.service, workers=1, queue_size=1))
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    store = Store(tmp_path / "g.sqlite")
    pipe = Pipeline(cfg, store, executor=pool)
    flag = tmp_path / "go"
    try:
        await pipe.start()
        held = asyncio.get_running_loop().run_in_executor(pool, _hold_worker, str(flag))
        bodies = [f"message {i}".encode() for i in range(3)]
        await pipe.submit(bodies[0], "a")  # taken by the worker task, which waits for the pool
        await pipe.submit(bodies[1], "b")  # fills the queue
        third = asyncio.create_task(pipe.submit(bodies[2], "c"))

        async def stored_and_full() -> None:
            while store.counts()["raw_messages"] < 3 or pipe.queue_depth < 1:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(stored_and_full(), 60)
        for _ in range(50):
            await asyncio.sleep(0)
        # The third message is durable, but its intake waits for room in the queue.
        assert not third.done() and pipe.queue_depth == 1
        flag.write_text("go")
        await asyncio.wait_for(held, 60)
        await asyncio.wait_for(third, 60)
        await asyncio.wait_for(pipe.join(), 120)
    finally:
        flag.write_text("go")
        await pipe.stop()
        pool.shutdown(wait=True)
    assert [r[0] for r in store.query("SELECT status FROM raw_messages ORDER BY id")] == ["dead"] * 3
