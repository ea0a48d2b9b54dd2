"""Pure parsing: message bytes -> :class:`~gwfollow.ingest.model.Alert`.

Three formats:

* IGWN alert JSON, as sent on GCN Kafka topic ``igwn.gwalert``, validated
  against the JSON schema of the ``igwn-gwalert-schema`` package
  (``igwn.alerts.Alert.schema.json``); sky maps are base64 multi-order FITS.
* GCN classic VOEvent 2.0 XML of LVK notices (Preliminary ... Retraction):
  the sky map is a URL (``skymap_fits``) fetched later, asynchronously.
* A bare FITS sky map: the superevent id comes from ``OBJECT``, the type is
  ``PRELIMINARY`` unless told otherwise, the time from ``DATE`` or
  ``DATE-OBS``.

Every failure raises :class:`~gwfollow.errors.AlertParseError` (the bytes are
not the format) or :class:`~gwfollow.errors.AlertSchemaError` (the format is
right, the content is not), naming the source and what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from datetime import datetime, timezone
from importlib import resources
from typing import Any
from xml.etree import ElementTree

import jsonschema
from jsonschema.exceptions import best_match

from gwfollow.config import SkyMapConfig
from gwfollow.errors import AlertParseError, AlertSchemaError, SkyMapError
from gwfollow.ingest.ids import check_event_id
from gwfollow.ingest.model import ALERT_TYPES, Alert
from gwfollow.skymaps.skymap import read_skymap

_VOEVENT_TYPES = {
    "earlywarning": "EARLYWARNING",
    "preliminary": "PRELIMINARY",
    "initial": "INITIAL",
    "update": "UPDATE",
    "retraction": "RETRACTION",
}
_B64_CHARS = re.compile(rb"^[A-Za-z0-9+/\r\n]*={0,2}\s*$")


@functools.cache
def alert_schema() -> dict[str, Any]:
    """The IGWN alert JSON schema shipped by ``igwn-gwalert-schema``."""
    text = resources.files("igwn_gwalert_schema").joinpath("igwn.alerts.Alert.schema.json").read_text()
    return json.loads(text)


@functools.cache
def _validator():

    schema = alert_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def parse_time(text: str, source: str, what: str) -> datetime:
    """ISO 8601 -> timezone-aware UTC datetime."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise AlertSchemaError(f"{what} {text!r} is not an ISO 8601 time", source=source) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    try:
        return t.astimezone(timezone.utc)
    except OverflowError:
        raise AlertSchemaError(f"{what} {text!r} is outside the years 1..9999 in UTC", source=source) from None


def _b64(text: str | None, source: str, field: str) -> bytes | None:
    if text is None:
        return None
    try:  # the common case, strict base64 without line breaks, checked and decoded in one C pass
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass  # line breaks, or not base64: the lenient path says which
    data = text.encode("ascii", "replace")
    if not _B64_CHARS.match(data):
        raise AlertParseError(
            f"{field} is not base64 (unexpected characters)", source=source,
            hint="the message is corrupt; it has been kept as a dead letter",
        )
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise AlertParseError(f"{field} is not valid base64 ({exc})", source=source) from None


#: IGWN alerts are 4 levels deep; deeper input only serves to exhaust recursion.
MAX_JSON_DEPTH = 32


def _depth(doc: Any) -> int:
    """Nesting depth of a JSON value, without recursion."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return deepest


def _without_skymaps(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its base64 sky maps replaced by empty strings, for schema validation.

    The schema asks only that they be strings (``contentEncoding`` is an
    annotation; :func:`_b64` checks the base64), and a validator that tries
    ``oneOf [null, string]`` puts the repr of the failed branch's value, the
    whole megabytes-long string, into an error it then discards.
    """
    out = doc
    for block, key in (("event", "skymap"), ("external_coinc", "combined_skymap")):
        sub = out.get(block)
        if isinstance(sub, dict) and isinstance(sub.get(key), str):
            out = {**out, block: {**sub, key: ""}}
    return out


def parse_json_alert(raw: bytes, source: str = "<json>") -> Alert:
    """Parse and validate an IGWN alert JSON message.

    Examples
    --------
    >>> a = parse_json_alert(b'{"alert_type": "RETRACTION", "time_created": "2024-11-26T23:06:05Z",'
    ...                      b' "superevent_id": "S241126dm", "urls": {}, "event": null, "external_coinc": null}')
    >>> a.superevent_id, a.alert_type, a.is_retraction
    ('S241126dm', 'RETRACTION', True)
    """
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlertParseError(f"not valid JSON ({exc})", source=source,
                              hint="truncated or corrupt message") from None
    except RecursionError:
        raise AlertParseError("JSON nested too deeply", source=source) from None
    if not isinstance(doc, dict):
        raise AlertSchemaError("the alert must be a JSON object", source=source)
    if _depth(doc) > MAX_JSON_DEPTH:
        raise AlertSchemaError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", source=source,
                               hint="an IGWN alert is a few levels deep")
    errors = list(_validator().iter_errors(_without_skymaps(doc)))
    if errors:

        e = best_match(errors)
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        msg = e.message if len(e.message) < 200 else e.message[:200] + "..."
        raise AlertSchemaError(
            f"does not follow the IGWN alert schema at {where}: {msg}"
            + (f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""),
            source=source,
        )
    for key in ("superevent_id", "alert_type", "time_created"):
        if key not in doc:
            raise AlertSchemaError(f"missing required field {key!r}", source=source)
    if doc["alert_type"] not in ALERT_TYPES:
        raise AlertSchemaError(f"unknown alert_type {doc['alert_type']!r}", source=source)
    event = doc.get("event")
    skymap = None
    if isinstance(event, dict):
        event = dict(event)
        skymap = _b64(event.pop("skymap", None), source, "event.skymap")
    ext = doc.get("external_coinc")
    combined = None
    if isinstance(ext, dict):
        ext = dict(ext)
        combined = _b64(ext.pop("combined_skymap", None), source, "external_coinc.combined_skymap")
    if doc["alert_type"] != "RETRACTION" and event is None:
        raise AlertSchemaError(f"{doc['alert_type']} alert without an event", source=source)
    return Alert(
        superevent_id=check_event_id(doc["superevent_id"], source),
        alert_type=doc["alert_type"],
        time_created=parse_time(doc["time_created"], source, "time_created"),
        kind="json",
        raw=bytes(raw),
        event=event,
        skymap=skymap,
        combined_skymap=combined,
        external_coinc=ext,
        urls=dict(doc.get("urls") or {}),
    )


def _params(elem: ElementTree.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in elem.iter():
        if p.tag.split("}")[-1] == "Param" and "name" in p.attrib:
            out.setdefault(p.attrib["name"], p.attrib.get("value", ""))
    return out


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def parse_voevent(raw: bytes, source: str = "<voevent>") -> Alert:
    """Parse a GCN classic VOEvent 2.0 notice of the LVK.

    The sky map is not fetched here: :attr:`Alert.skymap_url` says where it
    is (a trailing ``,N`` HDU suffix of GCN notices is removed).
    """
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        raise AlertParseError(f"not well-formed XML ({exc})", source=source,
                              hint="truncated or corrupt message") from None
    if root.tag.split("}")[-1] != "VOEvent":
        raise AlertSchemaError(f"root element is <{root.tag}>, not <VOEvent>", source=source)
    what = next((c for c in root if c.tag.split("}")[-1] == "What"), None)
    if what is None:
        raise AlertSchemaError("VOEvent without <What>", source=source)
    params = _params(what)
    sid = params.get("GraceID")
    if not sid:
        raise AlertSchemaError("VOEvent without a GraceID parameter", source=source)
    sid = check_event_id(sid.strip(), source, "GraceID")
    atype_raw = params.get("AlertType", "")
    atype = _VOEVENT_TYPES.get(atype_raw.strip().lower())
    if atype is None:
        raise AlertSchemaError(f"unknown AlertType {atype_raw!r}", source=source)
    if params.get("Retraction", "").strip().lower() in ("true", "1"):
        atype = "RETRACTION"
    date = None
    for c in root.iter():
        if c.tag.split("}")[-1] == "Date" and c.text:
            date = c.text
            break
    if date is None:
        raise AlertSchemaError("VOEvent without <Who><Date>", source=source)
    event_time = None
    for c in root.iter():
        if c.tag.split("}")[-1] == "ISOTime" and c.text:
            event_time = c.text.strip()
            break
    url = None
    for name in ("skymap_fits", "skymap_fits_basic", "skymap_fits_shib", "skymap_fits_x509"):
        if params.get(name):
            url = re.sub(r",\d+$", "", params[name].strip())
            break
    event = None
    if atype != "RETRACTION":
        groups: dict[str, dict[str, float]] = {}
        for g in what.iter():
            if g.tag.split("}")[-1] == "Group" and g.attrib.get("type") in ("Classification", "Properties"):
                groups[g.attrib["type"]] = {
                    k: v for k, v in ((k, _num(v)) for k, v in _params(g).items()) if v is not None
                }
        sig = params.get("Significant")
        event = {
            "time": event_time,
            "far": _num(params.get("FAR")),
            "significant": (sig.strip() == "1") if sig is not None else None,
            "instruments": [s for s in params.get("Instruments", "").split(",") if s],
            "group": params.get("Group"),
            "pipeline": params.get("Pipeline"),
            "search": params.get("Search"),
            "classification": groups.get("Classification", {}),
            "properties": groups.get("Properties", {}),
        }
    return Alert(
        superevent_id=sid,
        alert_type=atype,
        time_created=parse_time(date, source, "Who/Date"),
        kind="voevent",
        raw=bytes(raw),
        event=event,
        skymap_url=url,
        urls={"gracedb": params["EventPage"]} if params.get("EventPage") else {},
    )


def parse_fits_alert(raw: bytes, source: str = "<fits>", alert_type: str = "PRELIMINARY",
                     skymap_config: SkyMapConfig | None = None) -> Alert:
    """A bare FITS sky map as an alert (event id from ``OBJECT``); the map read
    (with ``skymap_config``) travels with the alert as ``decoded_skymap``."""
    try:
        sm = read_skymap(raw, name=source, config=skymap_config)
    except SkyMapError as exc:
        raise AlertParseError(f"unreadable sky map ({exc.message})", source=source) from None
    sid = sm.meta.object_id
    if not sid:
        raise AlertSchemaError("the sky map has no OBJECT card to name its event", source=source,
                               hint="set OBJECT to the superevent id")
    sid = check_event_id(sid, source, "OBJECT")
    created = sm.meta.event_time or "1970-01-01T00:00:00"
    event = {
        "time": sm.meta.event_time,
        "far": None,
        "significant": None,
        "instruments": list(sm.meta.instruments),
        "group": "CBC" if sm.has_distance else "Burst",
        "pipeline": sm.meta.creator,
        "search": None,
        "classification": {},
        "properties": {},
    }
    return Alert(
        superevent_id=sid,
        alert_type=alert_type,
        time_created=parse_time(created, source, "DATE-OBS"),
        kind="fits",
        raw=bytes(raw),
        event=event,
        skymap=bytes(raw),
        decoded_skymap=sm,
    )


def sniff(raw: bytes) -> str:
    """Guess the format of a message: ``json``, ``voevent``, ``fits`` or ``unknown``."""
    head = raw[:64].lstrip()
    if head.startswith((b"{", b"[")):
        return "json"
    if head.startswith(b"<"):
        return "voevent"
    if raw[:9] == b"SIMPLE  =" or raw[:2] == b"\x1f\x8b":
        return "fits"
    return "unknown"


def parse_alert(raw: bytes, source: str = "<message>", skymap_config: SkyMapConfig | None = None) -> Alert:
    """Parse a message of any supported format (see :func:`sniff`); a bare FITS
    sky map is read with ``skymap_config``."""
    kind = sniff(raw)
    if kind == "json":
        return parse_json_alert(raw, source)
    if kind == "voevent":
        return parse_voevent(raw, source)
    if kind == "fits":
        return parse_fits_alert(raw, source, skymap_config=skymap_config)
    if not raw:
        raise AlertParseError("empty message", source=source)
    raise AlertParseError(
        "neither IGWN alert JSON, VOEvent XML nor FITS", source=source,
        hint="gwfollow accepts igwn.gwalert JSON, GCN classic VOEvents and FITS sky maps",
    )
