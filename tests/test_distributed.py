"""Replay on a real Dask LocalCluster (2 worker processes on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import filecmp

import pytest

from gwfollow.cli.main import main
from gwfollow.config import TelescopeConfig, load_config, named_config
from gwfollow.pipeline.distributed import replay_on_dask
from gwfollow.pipeline.replay import order_messages
from gwfollow.store import Store

from .conftest import shared_files, shared_path

ALERTS = shared_files("alerts", "*.json")
pytestmark = pytest.mark.shared_data


def test_dask_replay_equals_sequential(tmp_path, capsys) -> None:
    src = str(shared_path("alerts"))
    assert main(["replay", src, "--out", str(tmp_path / "seq"), "--quiet", "--workers", "1"]) == 0
    assert main(["replay", src, "--out", str(tmp_path / "dask"), "--dask", "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "events on the cluster: 4/4" in err
    cmp = filecmp.dircmp(tmp_path / "seq", tmp_path / "dask")
    assert sorted(cmp.common_dirs) == ["MS181101ab", "S241102br", "S241126dm", "S250720j"]
    for d in cmp.common_dirs:
        sub = filecmp.dircmp(tmp_path / "seq" / d, tmp_path / "dask" / d)
        assert not sub.diff_files and not sub.left_only and not sub.right_only, d


def test_failures_are_reported_per_event(tmp_path) -> None:
    good = shared_path("alerts", "S241102br-preliminary.json").read_bytes()
    voevent = shared_path("voevents", "S190425z-1-Initial.xml").read_bytes()  # its sky map path is missing
    msgs = order_messages([(good, "good.json"), (voevent, str(tmp_path / "S190425z.xml")), (b"junk", "junk")])
    store = Store(tmp_path / "d.sqlite")
    cfg = load_config(env={})
    done = []
    outcomes = replay_on_dask(msgs, cfg, store, n_workers=2, on_event=lambda k, d, t: done.append((k, d, t)))
    status = {m.source: o.status for m, o in zip(msgs, outcomes)}
    assert status["good.json"] == "processed"
    assert status[str(tmp_path / "S190425z.xml")] == "dead" and status["junk"] == "dead"
    reasons = {d["error_type"] for d in store.dead_letters()}
    assert reasons == {"FetchError", "AlertParseError"}
    assert len(done) == 3
    # A task that fails as a whole (here: a telescope grid that does not exist) is reported, not fatal.
    bad = dataclasses.replace(cfg, telescopes=(named_config(TelescopeConfig, "X", grid=str(tmp_path / "no.txt"),
                                                               fov_width_deg=5.0),))
    store2 = Store(tmp_path / "e.sqlite")
    out = replay_on_dask([m for m in msgs if m.source == "good.json"], bad, store2, n_workers=1)
    assert out[0].status == "dead" and "event task failed" in out[0].reason
