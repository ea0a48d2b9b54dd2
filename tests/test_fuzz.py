"""Property tests over the parsers: any input gives a parsed alert or a typed GwfollowError.

Inputs are real messages (../shared/data) and a simulated sky map, mutated by
hypothesis: JSON fields replaced by arbitrary JSON values and edge-case
times, VOEvent parameters replaced by arbitrary text, FITS header cards
replaced by arbitrary integers, floats (NaN, inf, 1e300), strings and
booleans, and arbitrary byte flips and truncations.  A fixed corpus of
inputs that once failed untyped (``tests/fuzz_corpus``) runs too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwfollow import errors
from gwfollow.config import load_config
from gwfollow.errors import GwfollowError
from gwfollow.ingest.model import Alert
from gwfollow.ingest.parse import parse_alert
from gwfollow.products.core import NeedsFetch, ProcessedAlert, process_message
from gwfollow.skymaps.skymap import read_skymap

from .conftest import SHARED

CORPUS = Path(__file__).parent / "fuzz_corpus"
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
CFG = load_config(env={})
SMALL = dataclasses.replace(CFG, skymap=dataclasses.replace(CFG.skymap, max_size_mib=32.0))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z",
                     "2024-13-01T00:00:00Z", "", "yesterday", "2024-11-02T12:41:27.000000001Z"]),
    st.text(max_size=30))
ids = st.one_of(st.text(max_size=30), st.sampled_from(["S241102br", "", "../x", "S241102br\r\n", "G1"]))


def _parse_or_typed(body: bytes) -> Alert | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parse_alert(body, "fuzz")
    except GwfollowError:
        return None


def _read_or_typed(data: bytes | None) -> None:
    if data is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_skymap(data, config=SMALL.skymap)
    except GwfollowError:
        pass


def _json_docs() -> list[dict]:
    return [json.loads(p.read_bytes()) for p in sorted((SHARED / "alerts").glob("*.json"))][:6]


@pytest.mark.skipif(not (SHARED / "alerts").is_dir(), reason="../shared/data/alerts is absent")
@SETTINGS
@given(data=st.data())
def test_json_alerts(data) -> None:
    docs = _json_docs()
    doc = copy.deepcopy(data.draw(st.sampled_from(docs)))
    for _ in range(data.draw(st.integers(1, 3))):
        target = doc
        if isinstance(doc.get("event"), dict) and data.draw(st.booleans()):
            target = doc["event"]
        key = data.draw(st.sampled_from(sorted(target) + ["time_created", "superevent_id", "extra"]))
        if key in ("time_created", "time"):
            target[key] = data.draw(times)
        elif key == "superevent_id":
            target[key] = data.draw(ids)
        elif key == "skymap":
            target[key] = data.draw(st.sampled_from(["", "AAAA", "H4sI" + "A" * 40, "!!"]))
        else:
            target[key] = data.draw(json_values)
    body = json.dumps(doc).encode()
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(body)))
        body = body[:i] + data.draw(st.binary(max_size=8)) + body[i + data.draw(st.integers(0, 8)):]
    alert = _parse_or_typed(body)
    if alert is not None:
        _read_or_typed(alert.skymap)


@pytest.mark.skipif(not (SHARED / "voevents").is_dir(), reason="../shared/data/voevents is absent")
@SETTINGS
@given(data=st.data())
def test_voevents(data) -> None:
    import re
    from xml.sax.saxutils import quoteattr

    paths = sorted((SHARED / "voevents").glob("*.xml"))
    xml = data.draw(st.sampled_from(paths)).read_bytes()
    params = re.findall(rb'name="([A-Za-z_]+)"', xml)
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(sorted(set(params))))
        value = data.draw(st.one_of(st.text(max_size=30), times, ids, st.sampled_from(["nan", "inf", "1e999", "-0"])))
        value = "".join(c for c in value if c in "\t\n\r" or (" " <= c <= "\ud7ff"))  # XML characters
        xml = re.sub(rb'(name="' + name + rb'"[^>]*?value=)"[^"]*"', lambda m: m.group(1) + quoteattr(value).encode(),
                     xml, count=1)
        xml = re.sub(rb'(value=)"[^"]*"([^>]*?name="' + name + rb'")', lambda m: m.group(1) + quoteattr(value).encode()
                     + m.group(2), xml, count=1)
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(xml)))
        xml = xml[:i] + data.draw(st.binary(max_size=8)) + xml[i + data.draw(st.integers(0, 8)):]
    _parse_or_typed(xml)


CARDS = ["BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS", "TTYPE1", "TFORM1", "TTYPE3",
         "TFORM2", "ORDERING", "MOCORDER", "INDXSCHM", "OBJECT", "DATE-OBS", "MJD-OBS", "DISTMEAN", "DISTSTD",
         "TTYPE4", "TTYPE5"]
card_values = st.one_of(
    st.integers(-10, 10**6).map(str), st.sampled_from(["1.5", "NaN", "inf", "-inf", "1e300", "-1e300", "T", "F",
                                                      "99999999999999999999", "-5", "0"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="'"),
            max_size=18).map(lambda s: f"'{s}'"))


def _set_card(raw: bytes, key: str, value: str) -> bytes:
    head = raw[:5 * 2880 * 2]
    i = head.find(key.ljust(8).encode() + b"=")
    if i < 0 or i % 80:
        return raw
    card = (key.ljust(8) + "= " + value.rjust(20)).ljust(80)[:80].encode()
    return raw[:i] + card + raw[i + 80:]


@SETTINGS
@given(data=st.data())
def test_fits_headers_and_tables(sim_bytes, data) -> None:
    raw = sim_bytes
    for _ in range(data.draw(st.integers(1, 3))):
        raw = _set_card(raw, data.draw(st.sampled_from(CARDS)), data.draw(card_values))
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        n = data.draw(st.integers(1, 16))
        raw = raw[:i] + data.draw(st.binary(min_size=n, max_size=n)) + raw[i + n:]
    if data.draw(st.integers(0, 4)) == 0:
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    alert = _parse_or_typed(raw)
    if alert is not None:
        assert alert.skymap == raw


def _corpus() -> list[tuple[str, str]]:
    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())
    return sorted(manifest.items())


@pytest.mark.parametrize("name,expected", _corpus())
def test_corpus_inputs_give_their_typed_error(name, expected) -> None:
    body = (CORPUS / name).read_bytes()
    if name.endswith(".gz"):
        import gzip

        body = gzip.decompress(body)
    cls = getattr(errors, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(cls):
            res = process_message(body, name, SMALL)
            if isinstance(res, NeedsFetch):
                pytest.fail(f"{name} was accepted up to the fetch of {res.url}")
            assert isinstance(res, ProcessedAlert)
