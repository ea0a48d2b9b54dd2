"""``/report`` and ``/report.png`` are rendered once per sky-map revision, then served from memory;
a new revision renders again, a retraction answers 410 and drops what was kept."""

from __future__ import annotations

import asyncio
import time

from gwfollow.config import packaged_defaults
from gwfollow.service import make_app
from gwfollow.service.auth import token_digest
from gwfollow.service.keys import REPORTS, STORE

from .conftest import shared_path

WRITE = "report-writer"


async def _post_and_wait(client, name: str, sid: str, n_alerts: int) -> None:
    body = shared_path("alerts", name).read_bytes().replace(name.split("-")[0].encode(), sid.encode())
    r = await client.post("/api/v1/alerts", data=body, headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status == 202, await r.text()
    store = client.app[STORE]
    t0 = time.monotonic()
    # Both steps: the report shows the second step's products (coverages, plans) too,
    # so a revision is complete, and its report final, only when no second step is pending.
    while (len(store.alerts_of(sid)) < n_alerts
           or store.query("SELECT COUNT(*) FROM deferred_work WHERE state = 'pending'")[0][0]):
        assert time.monotonic() - t0 < 120, f"{name} was not processed"
        await asyncio.sleep(0.1)


async def test_report_rendered_once_per_revision_and_gone_after_retraction(tmp_path, aiohttp_client) -> None:
    cfg = packaged_defaults().updated(store=dict(path=str(tmp_path / "r.sqlite")),
                                      service=dict(workers=1, write_tokens_sha256=(token_digest(WRITE),)))
    client = await aiohttp_client(make_app(cfg))
    reports = client.app[REPORTS]
    await _post_and_wait(client, "S241102br-preliminary.json", "S241102br", 1)

    # Three clients at once: one render between them.
    first = await asyncio.gather(*(client.get("/api/v1/events/S241102br/report") for _ in range(3)))
    assert [r.status for r in first] == [200, 200, 200]
    pages = {await r.text() for r in first}
    assert len(pages) == 1 and "PRELIMINARY" in pages.pop()
    assert reports.renders == 1
    tag = first[0].headers["ETag"]
    t = time.perf_counter()
    again = await client.get("/api/v1/events/S241102br/report")
    png = await client.get("/api/v1/events/S241102br/report.png")
    served_s = time.perf_counter() - t
    assert again.status == 200 and again.headers["ETag"] == tag
    assert png.status == 200 and (await png.read())[:8] == b"\x89PNG\r\n\x1a\n"
    assert reports.renders == 1, "a report of the same revision was rendered again"
    assert (await client.get("/api/v1/events/S241102br/report", headers={"If-None-Match": tag})).status == 304
    print(f"report served from memory in {served_s * 1e3:.1f} ms (page + plot)")

    # A new sky-map revision: rendered again (once), the old revision dropped.
    await _post_and_wait(client, "S241102br-initial.json", "S241102br", 2)
    r = await client.get("/api/v1/events/S241102br/report")
    assert r.status == 200 and r.headers["ETag"] != tag and "INITIAL" in await r.text()
    assert (await client.get("/api/v1/events/S241102br/report.png")).status == 200
    assert reports.renders == 2 and len(reports.revisions("S241102br")) == 1

    # A retraction: 410 as for the other products, nothing of the event kept.
    await _post_and_wait(client, "MS181101ab-retraction.json", "S241102br", 3)
    for url in ("/api/v1/events/S241102br/report", "/api/v1/events/S241102br/report.png"):
        r = await client.get(url)
        assert r.status == 410 and (await r.json())["code"] == "event-retracted", url
    assert reports.revisions("S241102br") == [] and reports.nbytes == 0 and reports.renders == 2
