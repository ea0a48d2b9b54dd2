"""Identifiers and HTML: content carried by alerts never reaches a page, header or path unchecked."""

from __future__ import annotations

import json

import pytest

from gwfollow.config import packaged_defaults
from gwfollow.errors import AlertSchemaError
from gwfollow.ingest.ids import check_event_id, is_event_id
from gwfollow.ingest.parse import parse_alert, parse_fits_alert, parse_json_alert, parse_voevent
from gwfollow.products.report import event_report_html
from gwfollow.service import make_app
from gwfollow.service.app import STORE
from gwfollow.service.auth import token_digest
from gwfollow.service.safety import CONTENT_SECURITY_POLICY, content_disposition

from .conftest import shared_path

WRITE = "write-secret"
XSS = "x'><img src=x onerror=alert(document.domain)>"
BAD_IDS = ["", XSS, "../../etc/passwd", "S241102br\r\nSet-Cookie: a=b", "S241102br\x00", "S" * 10000,
           'S241102br"', "s241102br", "S241102BR", "S2411020br", "S241102br ", "G", "G1234567890"]


def _json_alert(sid) -> bytes:
    return json.dumps({"alert_type": "RETRACTION", "time_created": "2024-11-26T23:06:05Z",
                       "superevent_id": sid, "urls": {}, "event": None, "external_coinc": None}).encode()


@pytest.mark.parametrize("sid", ["S241102br", "MS181101ab", "TS230101a", "S250720j", "G298048", "MS000000sim"])
def test_graceddb_ids_are_accepted(sid) -> None:
    assert is_event_id(sid) and check_event_id(sid, "t") == sid
    assert parse_json_alert(_json_alert(sid)).superevent_id == sid


@pytest.mark.parametrize("sid", BAD_IDS)
def test_bad_ids_are_refused_in_json(sid) -> None:
    with pytest.raises(AlertSchemaError, match="not a GraceDB superevent id"):
        parse_json_alert(_json_alert(sid))


@pytest.mark.parametrize("sid", [None, 12, ["S241102br"]])
def test_non_string_ids_are_refused(sid) -> None:
    with pytest.raises(AlertSchemaError):
        parse_json_alert(_json_alert(sid))


@pytest.mark.parametrize("sid", [XSS, "../../etc/passwd", "S241102br&#10;X"])
def test_bad_ids_are_refused_in_voevents(sid) -> None:
    from xml.sax.saxutils import quoteattr

    xml = shared_path("voevents", "MS181101ab-2-Preliminary.xml").read_bytes()
    bad = xml.replace(b'value="MS181101ab"', b"value=" + quoteattr(sid).encode().replace(b"&amp;#10;", b"&#10;"))
    with pytest.raises(AlertSchemaError, match="GraceID"):
        parse_voevent(bad)


def test_bad_object_in_a_fits_map_is_refused(sim_bytes) -> None:
    bad = sim_bytes.replace(b"MS000000sim", b"<script>xy>")
    with pytest.raises(AlertSchemaError, match="OBJECT"):
        parse_fits_alert(bad)
    with pytest.raises(AlertSchemaError):
        parse_alert(bad)


def test_report_html_escapes_everything() -> None:
    evil = "<script>alert(1)</script>"
    html = event_report_html(
        {"superevent_id": XSS, "state": evil, "alerts": [{"alert_type": evil, "note": "a'b\"c"}],
         "skymap_versions": [{"creator": evil}], "provenance": {"gwfollow": evil},
         "areas_deg2": {"0.9": 12.3456789}, "probabilities": {"0.9": 0.9}, "latest_skymap": evil},
        {evil: [{"rank": 1, "id": evil, "ra": 1.0}]}, image="x' onerror='alert(1)")
    assert "<script>" not in html and "<img src=x" not in html and "onerror='" not in html
    assert "&lt;script&gt;" in html and "&#39;&gt;&lt;img src=x" in html
    assert "<td>12.35</td>" in html  # same look as before: 4 significant digits


@pytest.mark.parametrize("name", ['a"b.fits', "a\r\nb.fits", "é.fits", "a;b=c.fits", ""])
def test_content_disposition_is_safe_for_any_name(name) -> None:
    v = content_disposition(name)
    assert "\r" not in v and "\n" not in v and v.count('"') == 2
    assert v.startswith('attachment; filename="')


async def test_http_intake_refuses_bad_ids_with_422_and_keeps_the_raw(tmp_path, aiohttp_client) -> None:
    cfg = packaged_defaults().updated(store=dict(path=str(tmp_path / "s.sqlite")),
                                      service=dict(workers=1, write_tokens_sha256=(token_digest(WRITE),)))
    client = await aiohttp_client(make_app(cfg))
    auth = {"Authorization": f"Bearer {WRITE}"}
    doc = json.loads(shared_path("alerts", "S241102br-preliminary.json").read_bytes())
    doc["superevent_id"] = XSS
    r = await client.post("/api/v1/alerts", data=json.dumps(doc).encode(), headers=auth)
    assert r.status == 422
    problem = await r.json()
    assert problem["code"] == "invalid-alert" and "not a GraceDB superevent id" in problem["detail"]
    r = await client.post("/api/v1/alerts", data=b'{"not": "an alert"}', headers=auth)
    assert r.status == 422 and "IGWN alert schema" in (await r.json())["detail"]
    store = client.app[STORE]
    assert store.counts()["raw_messages"] == 2 and len(store.dead_letters()) == 2
    assert store.events() == []
    assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


async def test_report_page_has_a_csp_and_a_safe_image_link(tmp_path, aiohttp_client) -> None:
    import asyncio

    from gwfollow.pipeline.replay import order_messages, replay_messages
    from gwfollow.store import Store

    db = tmp_path / "r.sqlite"
    cfg = packaged_defaults().updated(store=dict(path=str(db)), service=dict(workers=1))
    store = Store(db)
    body = shared_path("alerts", "S241102br-preliminary.json").read_bytes()
    await replay_messages(order_messages([(body, "p.json")]), cfg, store)
    store.close()
    client = await aiohttp_client(make_app(cfg))
    r = await client.get("/api/v1/events/S241102br/report")
    assert r.status == 200 and r.content_type == "text/html"
    assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "src='/api/v1/events/S241102br/report.png'" in await r.text()
    r = await client.get("/api/v1/events/S241102br/moc?level=0.9")
    assert r.headers["Content-Disposition"] == 'attachment; filename="S241102br-moc-0.9.fits"'
    await asyncio.sleep(0)
