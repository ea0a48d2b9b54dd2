"""Ranked tables as JSON, CSV and VOTable, and the `rank` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import votable
from astropy.table import Table

from gwfollow import read_skymap
from gwfollow.cli.main import main
from gwfollow.products.report import ReportError, format_for, table_bytes, write_table
from gwfollow.targets.catalogues import openngc
from gwfollow.targets.rank import rank_galaxies


@pytest.fixture(scope="module")
def ranked(sim_bytes):
    return rank_galaxies(read_skymap(sim_bytes), openngc(), level=None, limit=30).table()


def test_votable_round_trip(ranked, tmp_path) -> None:
    p = write_table(ranked, tmp_path / "t.xml")
    vt = votable.parse(str(p))
    t = vt.get_first_table().to_table()
    assert t.colnames == ranked.colnames and len(t) == 30
    assert str(t["dist_mpc"].unit) == "Mpc" and str(t["probdensity_3d"].unit) == "1 / Mpc3"
    np.testing.assert_array_equal(np.asarray(t["score"]), np.asarray(ranked["score"]))
    infos = {i.name: i.value for i in vt.resources[0].infos}
    assert infos["catalog"] == "OpenNGC" and len(infos["skymap_sha256"]) == 64


def test_csv_and_json(ranked, tmp_path) -> None:
    t = Table.read(write_table(ranked, tmp_path / "t.csv"), format="ascii.csv")
    assert list(t["id"]) == list(ranked["id"])
    doc = json.loads(table_bytes(ranked, "json"))
    assert doc["columns"] == ranked.colnames and len(doc["rows"]) == 30
    assert doc["units"]["ra"] == "deg" and doc["provenance"]["catalog"] == "OpenNGC"
    assert doc["rows"][0]["rank"] == 1


def test_formats() -> None:
    assert format_for("a.vot", None) == "votable" and format_for(None, None) == "json"
    with pytest.raises(ReportError):
        format_for("a.png", None)
    with pytest.raises(ReportError):
        format_for("a.csv", "xls")


def test_rank_command(sim_path, tmp_path, capsys) -> None:
    assert main(["rank", str(sim_path), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "OpenNGC" in out
    assert main(["rank", str(sim_path), "--limit", "7", "-o", str(tmp_path / "r.csv")]) == 0
    assert len(Table.read(tmp_path / "r.csv", format="ascii.csv")) == 7
    assert main(["rank", str(sim_path), "--catalog", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
