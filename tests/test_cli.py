"""The command-line tools, run in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mocpy import MOC, STMOC

from gwfollow.cli.main import COMMANDS, main, parser


@pytest.mark.parametrize("cmd", [[]] + [[c] for c in COMMANDS])
def test_help_with_example(cmd, capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        main([*cmd, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "gwfollow" in out


def test_every_command_is_registered() -> None:
    p = parser()
    sub = next(a for a in p._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_moc_command_writes_levels_and_formats(sim_path, tmp_path, capsys) -> None:
    out = tmp_path / "region.fits"
    assert main(["moc", str(sim_path), "--level", "0.5", "90%", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "level 0.5" in text and "level 0.9" in text and "deg2" in text
    from gwfollow import credible_moc, read_skymap

    sm = read_skymap(sim_path)
    for lv in (0.5, 0.9):
        written = MOC.load(str(tmp_path / f"region-{lv:g}.fits"), format="fits")
        assert written == credible_moc(sm, lv)
    for ext, fmt in ((".json", "json"), (".txt", "ascii")):
        o = tmp_path / f"r{ext}"
        assert main(["moc", str(sim_path), "--level", "0.9", "-o", str(o), "--boundary", "exclude"]) == 0
        assert MOC.load(str(o), format=fmt) == credible_moc(sm, 0.9, boundary="exclude")


def test_moc_command_json_and_stmoc(sim_path, tmp_path, capsys) -> None:
    out = tmp_path / "st.fits"
    assert main(["moc", str(sim_path), "--level", "0.9", "--duration", "6h", "-o", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    row = payload["mocs"][0]
    assert row["level"] == 0.9 and row["duration_s"] == 21600 and row["cells"] > 0
    assert 0.89 < row["probability"] <= 0.9
    st = STMOC.load(str(out), format="fits")
    assert (st.max_time - st.min_time).sec == pytest.approx(21600, abs=1e-3)


def test_info_command(sim_path, capsys) -> None:
    assert main(["info", str(sim_path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["cells"] == 19200 and s["ordering"] == "NUNIQ"
    assert [r["level"] for r in s["regions"]] == [0.5, 0.9]
    assert s["regions"][0]["area_deg2"] < s["regions"][1]["area_deg2"]
    assert main(["info", str(sim_path)]) == 0
    assert "90% region" in capsys.readouterr().out


def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  =" + b" " * 100)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.fits" in err[0] and "truncated" in err[0]
    assert main(["moc", str(tmp_path / "missing.fits"), "-o", str(tmp_path / "x.fits")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_bad_parameters(sim_path, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["moc", str(sim_path), "--level", "1.5", "-o", str(tmp_path / "x.fits")])
    assert ei.value.code == 2 and "not in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["moc", str(sim_path), "--duration", "soon", "-o", str(tmp_path / "x.fits")])
    assert "duration" in capsys.readouterr().err
    assert main(["moc", str(sim_path), "-o", str(tmp_path / "x.png")]) == 2
    assert "extension" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "demo finished" in out
    for name in ("simulated.multiorder.fits", "region-0.5.fits", "region-0.9.fits", "region-0.9-1d.stmoc.fits"):
        assert (tmp_path / name).stat().st_size > 0
    m = MOC.load(str(tmp_path / "region-0.9.fits"), format="fits")
    assert 0 < m.sky_fraction < 0.1
    assert np.isfinite(m.sky_fraction)
