"""Run the chain end to end on a simulated sky map (no network, no files to fetch)."""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  gwfollow demo --out demo-output
      simulates a BAYESTAR-like multi-order sky map, prints 'gwfollow info' for it
      and writes its 50% and 90% credible-region MOCs and a 1-day space-time MOC"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-output", help="directory for the demo's files (default: demo-output)")
    p.add_argument("--seed", type=int, default=170817, help="seed of the simulated sky map")


def main(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from gwfollow import kernels
    from gwfollow.cli.main import main as cli_main
    from gwfollow.skymaps.simulate import simulated_alert_json, simulated_skymap_bytes, write_simulated_skymap

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = 9

    def step(i: int, what: str) -> None:
        print(f"\n[{i}/{steps}] {what}", flush=True)

    def run(argv: list[str]) -> None:
        rc = cli_main(argv)
        if rc:
            raise SystemExit(rc)

    step(1, "compiling or loading the numba kernels (cached after the first run)")
    t0 = time.perf_counter()
    kernels.warm_up()
    print(f"      ready in {time.perf_counter() - t0:.2f} s")
    step(2, "simulating a multi-order sky map (von Mises-Fisher arc, BAYESTAR-like mesh, 40 Mpc)")
    sim = {"ra_deg": 197.45, "dec_deg": -23.38, "size_deg": 1.5, "distance_mpc": 40.0}
    skymap = write_simulated_skymap(out / "simulated.multiorder.fits", seed=args.seed, **sim)
    print(f"      wrote {skymap}")
    step(3, f"gwfollow info {skymap}")
    run(["info", str(skymap)])
    step(4, f"gwfollow moc {skymap} --level 0.5 0.9 -o {out / 'region.fits'}  (and a 1-day space-time MOC)")
    run(["moc", str(skymap), "--level", "0.5", "0.9", "-o", str(out / "region.fits")])
    run(["moc", str(skymap), "--level", "0.9", "--duration", "1d", "-o", str(out / "region-0.9-1d.stmoc.fits")])
    step(5, f"gwfollow rank {skymap} --catalog openngc --limit 10  (3-D posterior, embedded OpenNGC)")
    run(["rank", str(skymap), "--catalog", "openngc", "--limit", "10"])
    step(6, f"gwfollow fields {skymap} --telescope ZTF --limit 8  (generated ZTF-like tiling, greedy to 90%)")
    run(["fields", str(skymap), "--telescope", "ZTF", "--limit", "8"])
    step(7, f"gwfollow observe {skymap} --site Palomar --hours 24 --step 60")
    run(["observe", str(skymap), "--site", "Palomar", "--hours", "24", "--step", "60"])
    step(8, "gwfollow coverage with a survey footprint MOC made here (a declination band, as a stand-in survey)")
    survey = out / "survey-band.moc.fits"
    _write_band_moc(survey)
    run(["coverage", str(skymap), "--moc", str(survey)])
    step(9, "the service pipeline on two simulated alerts (PRELIMINARY, UPDATE): gwfollow replay --report")
    alerts = out / "alerts"
    alerts.mkdir(exist_ok=True)
    (alerts / "preliminary.json").write_bytes(simulated_alert_json(
        simulated_skymap_bytes(args.seed + 1, **{**sim, "size_deg": 3.0}), alert_type="PRELIMINARY",
        time_created="2024-05-19T16:21:00Z"))
    (alerts / "update.json").write_bytes(simulated_alert_json(
        skymap.read_bytes(), alert_type="UPDATE", time_created="2024-05-19T17:05:00Z"))
    run(["replay", str(alerts), "--db", str(out / "demo.sqlite"), "--out", str(out / "events"), "--report",
         "--workers", "1"])
    print(f"\ndemo finished: files in {out}/ (open {out / 'events'}/*/report.html)")
    return 0


def _write_band_moc(path) -> None:
    """A MOC of the band -30 < Dec < -20 deg: a survey footprint for the demo."""
    from astropy.coordinates import SkyCoord
    from mocpy import MOC

    MOC.from_zone(SkyCoord([[0, -30], [359.999, -20]], unit="deg"), max_depth=8).save(
        str(path), format="fits", overwrite=True)
