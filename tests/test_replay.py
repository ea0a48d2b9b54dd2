"""`gwfollow replay`: deterministic products from files and from a Kafka topic."""

from __future__ import annotations

import asyncio
import filecmp
import json
import uuid

import numpy as np
import pytest
from mocpy import MOC

from gwfollow.cli.main import main

from .conftest import shared_files, shared_path

ALERTS = shared_files("alerts", "*.json")
pytestmark = pytest.mark.shared_data


def test_replay_twice_gives_identical_products(tmp_path, capsys) -> None:
    src = str(shared_path("alerts"))
    for run in ("a", "b"):
        assert main(["replay", src, "--out", str(tmp_path / run), "--db", str(tmp_path / f"{run}.sqlite"),
                     "--quiet", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    # S241126dm's retraction (its event never seen) is recorded, not dead-lettered
    assert "replayed 11 message(s): 11 processed" in out
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert sorted(cmp.common_dirs) == ["MS181101ab", "S241102br", "S241126dm", "S250720j"]
    for d in cmp.common_dirs:
        sub = filecmp.dircmp(tmp_path / "a" / d, tmp_path / "b" / d)
        assert not sub.diff_files and not sub.left_only and not sub.right_only
    s = json.loads((tmp_path / "a" / "S241102br" / "summary.json").read_text())
    assert [a["alert_type"] for a in s["alerts"]] == ["PRELIMINARY", "INITIAL", "UPDATE"]
    assert len(s["skymap_versions"]) == 3 and s["latest_skymap"] == s["skymap_versions"][-1]["sha256"]
    moc = MOC.load(str(tmp_path / "a" / "S241102br" / "moc-0.9.fits"), format="fits")
    assert moc.sky_fraction * 4 * np.pi * (180 / np.pi) ** 2 == pytest.approx(s["areas_deg2"]["0.9"], rel=1e-9)
    retracted = json.loads((tmp_path / "a" / "MS181101ab" / "summary.json").read_text())
    assert retracted["retracted"] and retracted["products_withdrawn"]
    assert not list((tmp_path / "a" / "MS181101ab").glob("moc-*.fits"))


def test_replay_filters_and_nothing_to_do(tmp_path, capsys) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text("[filters]\nmock_events = false\n")
    assert main(["replay", str(shared_path("alerts", "MS181101ab-preliminary.json")), "--filters",
                 "--config", str(cfg), "--quiet", "--workers", "1"]) == 0
    assert "1 ignored" in capsys.readouterr().out
    assert main(["replay"]) == 2
    assert "nothing to replay" in capsys.readouterr().err


def test_replay_from_kafka_stops_at_end(kafka_broker, tmp_path, capsys) -> None:
    from aiokafka import AIOKafkaProducer

    topic = f"r-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)

    async def produce():
        p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_request_size=8 * 2**20)
        await p.start()
        for f in ("S241102br-update.json", "S241102br-preliminary.json"):
            await p.send_and_wait(topic, shared_path("alerts", f).read_bytes())
        await p.stop()

    asyncio.run(produce())
    assert main(["replay", "--kafka", kafka_broker.bootstrap, "--topic", topic, "--from-beginning",
                 "--out", str(tmp_path / "k"), "--quiet", "--workers", "1"]) == 0
    assert "replayed 2 message(s): 2 processed" in capsys.readouterr().out
    s = json.loads((tmp_path / "k" / "S241102br" / "summary.json").read_text())
    # Replayed in time-created order, whatever the order on the topic.
    assert [a["alert_type"] for a in s["alerts"]] == ["PRELIMINARY", "UPDATE"]


def test_replay_reports(tmp_path, capsys) -> None:
    assert main(["replay", str(shared_path("alerts", "S241102br-preliminary.json")),
                 str(shared_path("alerts", "MS181101ab-preliminary.json")),
                 str(shared_path("alerts", "MS181101ab-retraction.json")),
                 "--out", str(tmp_path), "--report", "--quiet", "--workers", "1"]) == 0
    html = (tmp_path / "S241102br" / "report.html").read_text()
    assert "S241102br" in html and "sky.png" in html and "Top galaxies: OpenNGC" in html
    assert (tmp_path / "S241102br" / "sky.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RETRACTED" in (tmp_path / "MS181101ab" / "report.html").read_text()
    gal = json.loads((tmp_path / "S241102br" / "galaxies-OpenNGC.json").read_text())
    assert gal["columns"][:4] == ["rank", "id", "ra", "dec"] and gal["rows"]
