"""No valid alert lost to a crash or a race; nothing failing silently (issue 13, item 5)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor


from gwfollow.cli.main import main as cli_main
from gwfollow.config import Config, packaged_defaults
from gwfollow.pipeline.deadletters import requeue_dead
from gwfollow.pipeline.runner import Pipeline
from gwfollow.service import make_app
from gwfollow.service.app import PIPELINE, STORE
from gwfollow.service.auth import token_digest
from gwfollow.store import Store

from .conftest import settle, shared_path

WRITE = "write-secret"


def _cfg(tmp_path, **svc) -> Config:
    service = {"workers": 1, "write_tokens_sha256": (token_digest(WRITE),), **svc}
    return packaged_defaults().updated(store=dict(path=str(tmp_path / "r.sqlite")), service=service)


def _children(pid: int) -> list[int]:
    """Pool worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(p) for p in f.read().split()]
    out = []
    for k in kids:
        with open(f"/proc/{k}/cmdline", "rb") as f:
            if b"spawn_main" in f.read():
                out.append(k)
    return out


async def _kill_worker_while_busy(pipe: Pipeline, body: bytes) -> None:
    """Submit ``body`` and SIGKILL the worker process while it works on it."""
    workers = _children(os.getpid())
    assert workers
    await pipe.submit(body, "crash-test")
    await asyncio.sleep(0.15)  # the message is with the worker (it takes > 0.5 s)
    for w in workers:
        os.kill(w, signal.SIGKILL)


async def test_a_worker_crash_retries_the_message(tmp_path) -> None:
    store = Store(tmp_path / "c.sqlite")
    body = shared_path("alerts", "S250720j-preliminary.json").read_bytes()  # two sky maps: slow enough
    async with Pipeline(_cfg(tmp_path, crash_retries=2), store) as pipe:
        await _kill_worker_while_busy(pipe, body)
        await pipe.join()
        crashes = pipe.stats["worker_crashes"]
    assert crashes == 1
    assert store.dead_letters() == []
    assert store.query("SELECT status FROM raw_messages")[0][0] == "processed"
    assert store.counts()["products"] > 0


async def test_a_crash_without_retries_is_a_transient_dead_letter_that_can_be_requeued(tmp_path) -> None:
    store = Store(tmp_path / "c.sqlite")
    body = shared_path("alerts", "S250720j-preliminary.json").read_bytes()
    async with Pipeline(_cfg(tmp_path, crash_retries=0), store) as pipe:
        await _kill_worker_while_busy(pipe, body)
        await pipe.join()
        dead = store.dead_letters(only_open=True)
        assert len(dead) == 1 and dead[0]["transient"] == 1 and "worker process died" in dead[0]["reason"]
        assert await requeue_dead(pipe, transient_only=True) == [dead[0]["raw_id"]]
        await pipe.join()
    assert store.dead_letters(only_open=True) == []
    assert store.query("SELECT status FROM raw_messages")[0][0] == "processed"


def _renamed(body: bytes, sid: str) -> bytes:
    return body.replace(b"MS181101ab", sid.encode())


async def test_retractions_racing_their_event_always_withdraw(tmp_path) -> None:
    """PRELIMINARY and RETRACTION back to back for 8 events, 2 workers: every event ends retracted."""
    pre = shared_path("alerts", "MS181101ab-preliminary.json").read_bytes()
    ret = shared_path("alerts", "MS181101ab-retraction.json").read_bytes()
    sids = [f"MS18110{i}ab" for i in range(8)]
    store = Store(tmp_path / "race.sqlite")
    cfg = _cfg(tmp_path, workers=2)
    async with Pipeline(cfg, store, executor=ThreadPoolExecutor(2)) as pipe:
        for i, sid in enumerate(sids):
            pair = [_renamed(pre, sid), _renamed(ret, sid)]
            if i % 2:
                pair.reverse()  # the retraction overtakes its event
            for b in pair:
                await pipe.submit(b, sid)
        await pipe.join()
    assert store.dead_letters() == []
    for sid in sids:
        assert store.event(sid).state == "retracted", sid
        assert all(p["withdrawn"] for p in store.products_of(sid)), sid


async def test_a_retraction_for_an_unseen_event_is_recorded_and_applied_later(tmp_path) -> None:
    store = Store(tmp_path / "u.sqlite")
    async with Pipeline(_cfg(tmp_path), store, executor=ThreadPoolExecutor(1)) as pipe:
        await pipe.submit(shared_path("alerts", "S241126dm-retraction.json").read_bytes(), "r")
        await pipe.submit(shared_path("alerts", "MS181101ab-retraction.json").read_bytes(), "r2")
        await pipe.join()
        assert store.event("S241126dm").state == "retracted" and store.dead_letters() == []
        await pipe.submit(shared_path("alerts", "MS181101ab-preliminary.json").read_bytes(), "p")
        await pipe.join()
    assert store.event("MS181101ab").state == "retracted"
    assert all(p["withdrawn"] for p in store.products_of("MS181101ab"))
    assert sorted(a["alert_type"] for a in store.alerts_of("MS181101ab")) == ["PRELIMINARY", "RETRACTION"]


async def test_dead_letter_endpoint_lists_and_requeues(tmp_path, aiohttp_client) -> None:
    cfg = _cfg(tmp_path)
    client = await aiohttp_client(make_app(cfg))
    auth = {"Authorization": f"Bearer {WRITE}"}
    store = client.app[STORE]
    # a message that failed for a reason outside it (kept as a transient dead letter)
    acc = await client.app[PIPELINE].accept(shared_path("alerts", "S241102br-preliminary.json").read_bytes(), "x")
    store.dead_letter(acc.raw_id, "x", OSError("disk full"), transient=True)
    assert (await client.get("/api/v1/deadletters")).status == 401
    body = await (await client.get("/api/v1/deadletters", headers=auth)).json()
    assert body["total"] == 1 and body["dead_letters"][0]["transient"] is True
    r = await client.post("/api/v1/deadletters/requeue", data=b'{"ids": "x"}', headers=auth)
    assert r.status == 422
    r = await client.post("/api/v1/deadletters/requeue", json={"transient": True}, headers=auth)
    assert r.status == 202 and (await r.json())["requeued_raw_ids"] == [acc.raw_id]
    await settle(store, 1)
    assert store.raw(acc.raw_id).status == "processed" and store.event("S241102br") is not None
    assert (await (await client.get("/api/v1/deadletters", headers=auth)).json())["total"] == 0


def test_deadletters_cli(tmp_path, capsys) -> None:
    db = tmp_path / "d.sqlite"
    store = Store(db)
    a = store.accept_raw(b"junk-1", "a", "unknown", "h1")
    b = store.accept_raw(b"junk-2", "b", "unknown", "h2")
    store.dead_letter(a.raw_id, "a", ValueError("bad"))
    store.dead_letter(b.raw_id, "b", OSError("worker died"), transient=True)
    store.close()
    assert cli_main(["deadletters", "list", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "2 dead letter(s)" in out and "transient" in out and "permanent" in out
    assert cli_main(["deadletters", "requeue", "--db", str(db), "--transient"]) == 0
    assert "requeued 1 message(s): raw 2" in capsys.readouterr().out
    s = Store(db)
    assert s.raw(b.raw_id).status == "pending" and s.raw(a.raw_id).status == "dead"
    assert s.pending_raw_ids() == [b.raw_id]
    s.close()
    assert cli_main(["deadletters", "list", "--db", str(db)]) == 0
    assert "1 dead letter(s)" in capsys.readouterr().out
    assert cli_main(["deadletters", "list", "--db", str(tmp_path / "none.sqlite")]) == 2


def test_replay_goes_on_past_bad_inputs_and_exits_non_zero_with_a_summary(tmp_path, capsys) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.json").write_bytes(shared_path("alerts", "S241102br-preliminary.json").read_bytes())
    (d / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (d / "year1.json").write_bytes(shared_path("alerts", "S241102br-initial.json").read_bytes()
                                   .replace(b'"time_created": "', b'"time_created": "0001-01-01T00:00:00+01:00", "x": "'))
    (d / "junk.fits").write_bytes(b"SIMPLE  = junk")
    os.mkfifo(d / "fifo.json")
    rc = cli_main(["replay", str(d), "--quiet", "--workers", "1"])
    out, err = capsys.readouterr()
    assert rc == 1, err
    assert "replayed 4 message(s)" in out and "1 processed" in out
    assert "4 input(s) rejected" in err
    for name in ("deep.json", "year1.json", "junk.fits", "fifo.json"):
        assert name in err
    assert "Traceback" not in err


async def test_the_api_answers_while_a_backlog_drains(tmp_path, aiohttp_client) -> None:
    """400 messages pending at start-up, a queue of 4: /health answers before they are done."""
    cfg = _cfg(tmp_path, queue_size=4)
    store = Store(cfg.store.path)
    ret = shared_path("alerts", "S241126dm-retraction.json").read_bytes()
    for i in range(400):
        body = ret + b" " * i  # distinct bytes, same alert
        store.accept_raw(body, f"backlog-{i}", "json", f"h{i}")
    store.close()
    t0 = time.monotonic()
    client = await aiohttp_client(make_app(cfg))
    r = await client.get("/api/v1/health")
    assert r.status == 200
    pending = len(client.app[STORE].pending_raw_ids())
    assert pending > 100, (pending, time.monotonic() - t0)
    await settle(client.app[STORE], 400)
