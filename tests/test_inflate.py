"""Streaming gzip inflation under a cap: bombs, many members, corrupt streams."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import tracemalloc
import zlib

import pytest

from gwfollow.config import packaged_defaults
from gwfollow.errors import CorruptSkyMapError, SkyMapError
from gwfollow.ingest.parse import parse_json_alert
from gwfollow.skymaps.inflate import STEP_IN, STEP_OUT, gunzip_bounded
from gwfollow.skymaps.skymap import read_skymap

MiB = 2**20


def _bomb(n_bytes: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * MiB
    parts = [c.compress(block) for _ in range(n_bytes // MiB)]
    return b"".join(parts) + c.flush()


def test_round_trip_and_members(sim_bytes) -> None:
    gz = gzip.compress(sim_bytes)
    assert bytes(gunzip_bounded(gz, 10 * MiB)) == sim_bytes
    two = gzip.compress(sim_bytes[:1000]) + gzip.compress(sim_bytes[1000:])
    assert bytes(gunzip_bounded(two, 10 * MiB)) == sim_bytes
    assert bytes(gunzip_bounded(gzip.compress(b""), 0)) == b""


def test_exact_limit_is_accepted_one_more_byte_is_not() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    gz = gzip.compress(data)
    assert len(gunzip_bounded(gz, len(data))) == len(data)
    with pytest.raises(SkyMapError, match="decompresses to more than"):
        gunzip_bounded(gz, len(data) - 1)


def test_bomb_is_stopped_with_memory_bounded_by_the_cap() -> None:
    bomb = _bomb(256 * MiB)  # ~250 kB that inflate to 256 MiB
    assert len(bomb) < MiB
    limit = 8 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(SkyMapError, match="more than 8 MiB"):
            gunzip_bounded(bomb, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the output (at most the cap, plus bytearray over-allocation) and a constant
    assert peak < limit * 1.25 + 2 * STEP_OUT + 4 * STEP_IN, peak / MiB


def test_many_empty_members_are_refused_quickly_bounded_in_work() -> None:
    empty = gzip.compress(b"")
    with pytest.raises(CorruptSkyMapError, match="more than 65536 gzip members"):
        gunzip_bounded(empty * 200_000, MiB)
    assert gunzip_bounded(empty * 1000 + gzip.compress(b"x"), MiB) == b"x"


@pytest.mark.parametrize("data,match", [
    # mtime=0: the same bytes in every pytest-xdist worker (parameters must collect identically)
    (gzip.compress(b"abc" * 1000, mtime=0)[:-10], "truncated"),
    (gzip.compress(b"abc", mtime=0) + b"garbage!", "corrupt"),
    (b"\x1f\x8b\x08\x00" + b"\xff" * 100, "corrupt|truncated"),
])
def test_corrupt_streams_are_typed(data, match) -> None:
    with pytest.raises(CorruptSkyMapError, match=match):
        gunzip_bounded(data, MiB)


def test_bomb_in_a_json_alert_is_a_typed_error(sim_bytes) -> None:
    """The base64 sky map of a JSON alert goes through the same bounded inflation."""
    bomb = _bomb(64 * MiB)
    doc = {"alert_type": "PRELIMINARY", "time_created": "2024-11-02T12:41:27Z", "superevent_id": "S241102br",
           "urls": {}, "external_coinc": None,
           "event": {"significant": True, "time": "2024-11-02T12:40:58.799Z", "far": 1e-10,
                     "instruments": ["H1"], "group": "CBC", "pipeline": "gstlal", "search": "AllSky",
                     "properties": {}, "classification": {}, "duration": None, "central_frequency": None,
                     "skymap": base64.b64encode(bomb).decode()}}
    alert = parse_json_alert(json.dumps(doc).encode())
    cfg = dataclasses.replace(packaged_defaults().skymap, max_size_mib=16)
    with pytest.raises(SkyMapError, match="more than 16 MiB"):
        read_skymap(alert.skymap, config=cfg)
    assert read_skymap(gzip.compress(sim_bytes), config=cfg).sha256
