"""Webhooks through the durable SQLite outbox: what was not delivered is delivered after a restart."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time

from aiohttp import web

from gwfollow.config import Config, packaged_defaults
from gwfollow.service import make_app
from gwfollow.service.app import STORE
from gwfollow.service.auth import token_digest
from gwfollow.service.webhooks import verify

from .conftest import shared_path

WRITE = "write-secret"


def _cfg(tmp_path, url: str) -> Config:
    svc = dict(workers=1, write_tokens_sha256=(token_digest(WRITE),), webhook_urls=(url,),
                        webhook_secret="s3cret", webhook_retries=50, webhook_backoff_s=0.2, webhook_timeout_s=1.0)
    return packaged_defaults().updated(store=dict(path=str(tmp_path / "o.sqlite")), service=svc)


async def test_undelivered_webhooks_survive_a_restart(tmp_path, aiohttp_client, aiohttp_server) -> None:
    with socket.socket() as s:  # the receiver is down during the first run
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    names = ["S241102br-preliminary.json", "MS181101ab-preliminary.json", "MS181101ab-retraction.json"]
    client = await aiohttp_client(make_app(_cfg(tmp_path, url)))
    store = client.app[STORE]
    for name in names:
        r = await client.post("/api/v1/alerts", data=shared_path("alerts", name).read_bytes(),
                              headers={"Authorization": f"Bearer {WRITE}"})
        assert r.status == 202
    t0 = time.monotonic()
    while len(store.outbox()) < 3 and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.1)
    first = store.outbox()
    assert len(first) == 3 and all(r["state"] == "pending" for r in first)
    await client.close()  # the service stops with its announcements undelivered

    got = []

    async def receiver(request):
        body = await request.read()
        got.append((request.headers["X-Gwfollow-Delivery"], request.headers["X-Gwfollow-Event"],
                    verify("s3cret", body, request.headers["X-Gwfollow-Signature"]), json.loads(body)))
        return web.Response(status=204)

    rapp = web.Application()
    rapp.router.add_post("/hook", receiver)
    await aiohttp_server(rapp, port=port)
    client2 = await aiohttp_client(make_app(_cfg(tmp_path, url)))
    t0 = time.monotonic()
    while len(got) < 3 and time.monotonic() - t0 < 30:
        await asyncio.sleep(0.05)
    assert [g[0] for g in got] == [r["delivery"] for r in first]  # same ids, same order
    assert [g[1] for g in got] == ["new", "new", "retracted"] and all(g[2] for g in got)
    await asyncio.sleep(0.2)
    assert all(r["state"] == "delivered" for r in client2.app[STORE].outbox())


async def test_the_announcement_commits_with_the_alert_or_not_at_all(tmp_path, aiohttp_client) -> None:
    """A failure between the alert's rows and its outbox row (here the outbox refuses the
    insert, as a crash would leave it) must not leave an alert that is never announced."""
    with socket.socket() as s:  # no receiver: rows stay pending, in view
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    client = await aiohttp_client(make_app(_cfg(tmp_path, url)))
    store = client.app[STORE]
    store.query("CREATE TRIGGER outbox_down BEFORE INSERT ON webhook_outbox "
                "BEGIN SELECT RAISE(ABORT, 'outbox unavailable'); END")
    auth = {"Authorization": f"Bearer {WRITE}"}
    body = shared_path("alerts", "MS181101ab-retraction.json").read_bytes()
    r = await client.post("/api/v1/alerts", data=body, headers=auth)
    assert r.status == 202
    raw_id = (await r.json())["raw_id"]
    t0 = time.monotonic()
    while store.raw(raw_id).status == "pending":
        assert time.monotonic() - t0 < 60
        await asyncio.sleep(0.05)
    # Rolled back together: no alert, no event, no announcement; the message is a dead letter.
    assert store.alerts_of("MS181101ab") == [] and store.event("MS181101ab") is None
    assert store.outbox() == []
    assert store.raw(raw_id).status == "dead" and "outbox unavailable" in store.dead_letters()[-1]["reason"]

    store.query("DROP TRIGGER outbox_down")
    r = await client.post("/api/v1/deadletters/requeue", json={}, headers=auth)
    assert (await r.json())["requeued_raw_ids"] == [raw_id]
    t0 = time.monotonic()
    while store.raw(raw_id).status == "pending":
        assert time.monotonic() - t0 < 60
        await asyncio.sleep(0.05)
    con = sqlite3.connect(tmp_path / "o.sqlite")  # what another reader sees: both rows, committed
    alerts = con.execute("SELECT id FROM alerts WHERE superevent_id = 'MS181101ab'").fetchall()
    outbox = con.execute("SELECT change FROM webhook_outbox WHERE superevent_id = 'MS181101ab'").fetchall()
    con.close()
    assert len(alerts) == 1 and outbox == [("retracted",)]
