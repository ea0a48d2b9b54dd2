"""Regenerate the fuzz corpus: inputs that once crashed gwfollow untyped (issue 13).

Run from the project root: ``python tests/fuzz_corpus/make_corpus.py``.
Each file is the exact input (``.gz``: gzip of the input, to keep the
repository small); ``MANIFEST.json`` names the typed error each must raise.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import zlib
from pathlib import Path

from astropy.io import fits

from gwfollow.skymaps.simulate import simulated_skymap_bytes

HERE = Path(__file__).parent
SIM = simulated_skymap_bytes(seed=3, ra_deg=120.0, dec_deg=30.0, size_deg=30.0, max_order=4)
PLACEHOLDER = base64.b64encode(b"SIMPLE  =").decode()  # never read: the alert fails first


def alert(**over) -> dict:
    doc = {"alert_type": "PRELIMINARY", "time_created": "2024-11-02T12:41:27Z", "superevent_id": "S241102br",
           "urls": {}, "external_coinc": None,
           "event": {"significant": True, "time": "2024-11-02T12:40:58.799Z", "far": 1e-10,
                     "instruments": ["H1", "L1"], "group": "CBC", "pipeline": "gstlal", "search": "AllSky",
                     "properties": {}, "classification": {}, "duration": None, "central_frequency": None,
                     "skymap": PLACEHOLDER}}
    doc.update(over)
    return doc


def card(raw: bytes, key: str, value: str) -> bytes:
    i = raw.find(key.ljust(8).encode() + b"=")
    assert i >= 0 and i % 80 == 0, key
    return raw[:i] + (key.ljust(8) + "= " + value.rjust(20)).ljust(80).encode() + raw[i + 80:]


def without(col: str) -> bytes:
    with fits.open(io.BytesIO(SIM)) as h:
        h[1].columns.del_col(col)
        out = io.BytesIO()
        h.writeto(out)
    return out.getvalue()


def main() -> None:
    files: dict[str, tuple[bytes, str]] = {}
    nested = {"a": None}
    for _ in range(40):
        nested = {"a": nested}
    deep_event = alert()
    deep_event["event"]["properties"] = nested
    files["deep_array.json"] = (b"[" * 100_000 + b"]" * 100_000, "AlertParseError")
    files["deep_object.json"] = (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "AlertParseError")
    files["deep_properties.json"] = (json.dumps(deep_event).encode(), "AlertSchemaError")
    files["year1_offset.json"] = (json.dumps(alert(time_created="0001-01-01T00:00:00+01:00")).encode(),
                                  "AlertSchemaError")
    files["year9999_offset.json"] = (json.dumps(alert(time_created="9999-12-31T23:59:59-01:00")).encode(),
                                     "AlertSchemaError")
    for name, sid in [("xss", "x'><img src=x onerror=alert(document.domain)>"), ("traversal", "../../etc/passwd"),
                      ("crlf", "S241102br\r\nX-Injected: 1"), ("nul", "S241102br\x00"), ("empty", ""),
                      ("long", "S" * 10_000)]:
        files[f"id_{name}.json"] = (json.dumps(alert(superevent_id=sid)).encode(), "AlertSchemaError")
    for name, value in [("float", "1.5"), ("string", "'abc'"), ("negative", "-5")]:
        files[f"naxis2_{name}.fits"] = (card(SIM, "NAXIS2", value), "AlertParseError")
    files["tform2_text.fits"] = (card(SIM, "TFORM2", "'1A'"), "AlertParseError")  # PROBDENSITY as text
    for name, value in [("nan", "NaN"), ("inf", "inf"), ("1e300", "1e300")]:
        files[f"mjd_obs_{name}.fits"] = (card(SIM, "MJD-OBS", value), "AlertParseError")
    files["distmu_without_distsigma.fits"] = (without("DISTSIGMA"), "AlertParseError")
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(c.compress(bytes(2**20)) for _ in range(64)) + c.flush()
    b = alert()
    b["event"]["skymap"] = base64.b64encode(bomb).decode()
    files["gzip_bomb_in_json.json"] = (json.dumps(b).encode(), "SkyMapError")
    m = alert()
    m["event"]["skymap"] = base64.b64encode(gzip.compress(b"") * 70_000).decode()
    files["empty_gzip_members_in_json.json"] = (json.dumps(m).encode(), "CorruptSkyMapError")
    manifest = {}
    for name, (data, expected) in sorted(files.items()):
        if len(data) > 64_000:
            name += ".gz"
            data = gzip.compress(data, mtime=0)
        (HERE / name).write_bytes(data)
        manifest[name] = expected
    (HERE / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
