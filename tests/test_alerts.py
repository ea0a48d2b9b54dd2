"""Parsing alerts: every real message, and malformed ones."""

from __future__ import annotations

import base64
import json

import pytest

from gwfollow import read_skymap
from gwfollow.errors import AlertParseError, AlertSchemaError
from gwfollow.ingest import (
    parse_alert,
    parse_fits_alert,
    parse_json_alert,
    parse_voevent,
)

from .conftest import shared_files, shared_path

ALERTS = shared_files("alerts", "*.json")
VOEVENTS = shared_files("voevents", "*.xml")


@pytest.mark.parametrize("path", ALERTS, ids=[p.name for p in ALERTS])
def test_real_json_alerts(path) -> None:
    raw = path.read_bytes()
    a = parse_json_alert(raw, str(path))
    doc = json.loads(raw)
    assert a.superevent_id == doc["superevent_id"] and a.alert_type == doc["alert_type"]
    assert a.time_created.tzinfo is not None and a.kind == "json"
    assert a.content_hash and a.raw == raw
    if a.is_retraction:
        assert a.event is None and a.skymap is None
    else:
        sm = read_skymap(a.skymap)
        assert abs(sm.meta.prob_sum - 1) < 1e-6
        assert "skymap" not in a.event and a.group == doc["event"]["group"]
    if doc.get("external_coinc"):
        assert a.combined_skymap is not None and "combined_skymap" not in a.external_coinc
        read_skymap(a.combined_skymap)


@pytest.mark.parametrize("path", VOEVENTS, ids=[p.name for p in VOEVENTS])
def test_real_voevents(path) -> None:
    a = parse_voevent(path.read_bytes(), str(path))
    assert a.kind == "voevent" and a.superevent_id
    expected = path.stem.split("-")[-1].upper()
    assert a.alert_type == {"EARLYWARNING": "EARLYWARNING"}.get(expected, expected)
    if a.is_retraction:
        assert a.skymap_url is None
    else:
        assert a.skymap_url and not a.skymap_url.endswith(",0")
        assert a.event["group"] == "CBC"


def test_voevent_details() -> None:
    a = parse_voevent(shared_path("voevents", "MS181101ab-2-Preliminary.xml").read_bytes())
    assert a.skymap_url == "https://emfollow.docs.ligo.org/userguide/_static/bayestar.multiorder.fits"
    assert a.event["significant"] is True and a.event["far"] == pytest.approx(9.11069936486e-14)
    assert a.event["instruments"] == ["H1", "L1", "V1"]
    assert set(a.event["classification"]) >= {"BNS", "BBH"}


def test_parse_alert_sniffs_format(sim_bytes) -> None:
    a = parse_alert(sim_bytes, "sim.fits")
    assert a.kind == "fits" and a.superevent_id == "MS000000sim" and a.skymap == sim_bytes
    assert parse_fits_alert(sim_bytes).alert_type == "PRELIMINARY"


def _alert(**over) -> bytes:
    doc = {"alert_type": "PRELIMINARY", "time_created": "2024-11-02T12:41:27Z", "superevent_id": "S241102br",
           "urls": {}, "external_coinc": None,
           "event": {"significant": True, "time": "2024-11-02T12:40:58.799Z", "far": 1e-10,
                     "instruments": ["H1"], "group": "CBC", "pipeline": "gstlal", "search": "AllSky",
                     "properties": {}, "classification": {}, "duration": None, "central_frequency": None,
                     "skymap": base64.b64encode(b"SIMPLE  =").decode()}}
    for k, v in over.items():
        if k.startswith("event."):
            doc["event"][k[6:]] = v
        else:
            doc[k] = v
    return json.dumps(doc).encode()


def test_minimal_alert_parses() -> None:
    assert parse_json_alert(_alert()).skymap == b"SIMPLE  ="


@pytest.mark.parametrize("raw,err,match", [
    (b'{"alert_type": "PRELIM', AlertParseError, "not valid JSON"),
    (b"", AlertParseError, "empty"),
    (b"\x00\x01garbage", AlertParseError, "neither"),
    (b"<VOEvent><What>", AlertParseError, "XML"),
    (b"<html></html>", AlertSchemaError, "not <VOEvent>"),
    (b"[1, 2]", AlertSchemaError, "JSON object"),
])
def test_malformed(raw, err, match) -> None:
    with pytest.raises(err, match=match) as ei:
        parse_alert(raw, "kafka:igwn.gwalert[0]@7")
    assert "kafka:igwn.gwalert[0]@7" in str(ei.value)


def test_schema_violations_name_the_field() -> None:
    with pytest.raises(AlertSchemaError, match="alert_type"):
        parse_json_alert(_alert(alert_type="SOMETHING"))
    with pytest.raises(AlertSchemaError, match="event/far"):
        parse_json_alert(_alert(**{"event.far": "high"}))
    doc = json.loads(_alert())
    del doc["superevent_id"]
    with pytest.raises(AlertSchemaError, match="superevent_id"):
        parse_json_alert(json.dumps(doc).encode())


def test_bad_base64() -> None:
    with pytest.raises(AlertParseError, match="base64"):
        parse_json_alert(_alert(**{"event.skymap": "not*base64!"}))
    with pytest.raises(AlertParseError, match="base64"):
        parse_json_alert(_alert(**{"event.skymap": "QUJD" + "A"}))


def test_voevent_without_graceid() -> None:
    xml = b'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0"><Who><Date>2020-01-01T00:00:00</Date></Who><What><Param name="AlertType" value="Initial"/></What></voe:VOEvent>'
    with pytest.raises(AlertSchemaError, match="GraceID"):
        parse_voevent(xml)
