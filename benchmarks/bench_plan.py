"""Observation plans: gwemopt 0.4.2 against gwfollow on the same maps, grid, site and night.

Setting (issue 12): ZTF (its real 1,778-field grid, 6.86 deg square), Palomar,
24 h from the event time, airmass <= 2, Sun below -12 deg, single 30 s exposures.

gwemopt is not a dependency of gwfollow: it runs in its own virtualenv
(``--gwemopt-venv``, made by ``--setup``: ``python -m venv DIR && DIR/bin/pip
install gwemopt==0.4.2``), in a child process, and its wall time is measured
inside that process from the call of ``gwemopt.run.run`` (map read, tiles,
segments, schedule, files written) to its return, imports excluded.
gwfollow's time is measured the same way in this process: ``read_skymap``
to the plan written as CSV: in a fresh process like gwemopt (imports
excluded; numba's cached kernels loaded, astropy's time set-up, the bundled
IERS table read and the candidate fields' footprints computed within the
time), the first call in this process, and the median of the next ones
(warm: footprints cached in the process, as in a service worker).

Both tools' plans are judged by the same code, independently of either:

* probability covered: the map's probability in the union of the planned
  fields' true footprints (6.86 deg squares built by mocpy with half-widths;
  gwemopt's own footprint is four times too large), by mocpy's
  ``probability_in_multiordermap``;
* observability: every exposure's start and end checked with astropy's
  ``AltAz`` (airmass <= 2 i.e. altitude >= 30 deg, Sun <= -12 deg).

Usage::

    python benchmarks/bench_plan.py --setup                # once: gwemopt's virtualenv
    python benchmarks/bench_plan.py [--runs 3] [--gwemopt-runs 1] [MAP ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_VENV = ROOT / "benchmarks" / ".venv-gwemopt"
HALF_WIDTH_DEG = 6.86 / 2
PALOMAR = (33.3563, -116.8650, 1712.0)

GWEMOPT_CHILD = r"""
import json, sys, time
from pathlib import Path
from gwemopt.run import run  # imported before the clock starts
skymap, out = sys.argv[1], sys.argv[2]
args = ["-t", "ZTF", "-o", out, "-e", skymap, "--doTiles", "--doSchedule", "--scheduleType", "greedy",
        "--filters", "r", "--exposuretimes", "30", "--doSingleExposure", "-a", "2", "--Tobs", "0.0,1.0",
        "--plots", ""]
t0 = time.perf_counter()
run(args)
wall = time.perf_counter() - t0
rows = []
for line in Path(out, "schedule_ZTF.dat").read_text().splitlines():
    f = line.split()
    if f:
        rows.append({"field_id": int(f[0]), "ra": float(f[1]), "dec": float(f[2]), "mjd": float(f[3]),
                     "exposure_s": float(f[5])})
# VmHWM starts afresh at exec (ru_maxrss would count the parent's pages at fork).
peak = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM")) / 2**20
print("RESULT " + json.dumps({"wall_s": wall, "rows": rows, "peak_gib": peak}))
"""


def _maps(names: list[str], tmp: Path) -> list[tuple[str, Path]]:
    """Map files: the given ones, or the real S190814bv maps and the maps embedded in real alerts."""
    import base64

    if names:
        return [(Path(n).name, Path(n)) for n in names]
    out = []
    for n in ("S190814bv_5_LALInference.v1.fits.gz", "S190814bv_bayestar.multiorder.fits"):
        p = SHARED / "skymaps" / n
        if p.exists():
            out.append((n, p))
    for alert in ("S241102br-preliminary.json", "S250720j-preliminary.json"):
        p = SHARED / "alerts" / alert
        if p.exists():
            doc = json.loads(p.read_bytes())
            f = tmp / (alert.split("-")[0] + ".multiorder.fits")
            f.write_bytes(base64.b64decode(doc["event"]["skymap"]))
            out.append((f.name, f))
    if not out:
        sys.exit(f"no maps: {SHARED} is absent; pass map files as arguments")
    return out


def covered_probability(skymap_path: Path, ra: np.ndarray, dec: np.ndarray) -> float:
    """The map's probability in the union of true ZTF footprints, by mocpy alone."""
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from astropy.table import Table
    from mocpy import MOC

    from gwfollow.skymaps.skymap import read_skymap

    if ra.size == 0:
        return 0.0
    n = ra.size
    mocs = MOC.from_boxes(lon=Longitude(ra * u.deg), lat=Latitude(dec * u.deg),
                          a=Angle(np.full(n, HALF_WIDTH_DEG) * u.deg), b=Angle(np.full(n, HALF_WIDTH_DEG) * u.deg),
                          angle=Angle(np.zeros(n) * u.deg), max_depth=10)
    union = mocs[0]
    for m in mocs[1:]:
        union = union.union(m)
    sm = read_skymap(skymap_path)  # flat maps as UNIQ cells, the form mocpy sums
    return float(union.probability_in_multiordermap(Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity})))


def unobservable(ra: np.ndarray, dec: np.ndarray, start_mjd: np.ndarray, exposure_s: np.ndarray) -> int:
    """Exposures below airmass 2 or in twilight (Sun above -12 deg) at start or end, by astropy's AltAz."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body
    from astropy.time import Time
    from astropy.utils import iers

    if ra.size == 0:
        return 0
    lat, lon, h = PALOMAR
    loc = EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, h * u.m)
    bad = np.zeros(ra.size, dtype=bool)
    with iers.conf.set_temp("auto_download", False):
        for t in (Time(start_mjd, format="mjd", scale="utc"),
                  Time(start_mjd, format="mjd", scale="utc") + exposure_s * u.s):
            frame = AltAz(obstime=t, location=loc)
            alt = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame).alt.deg
            sun = get_body("sun", t, loc).transform_to(frame).alt.deg
            bad |= (alt < math.degrees(math.asin(0.5))) | (sun > -12.0)
    return int(bad.sum())


def run_gwemopt(venv: Path, skymap: Path) -> dict:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([str(venv / "bin" / "python"), "-c", GWEMOPT_CHILD, str(skymap), out],
                              capture_output=True, text=True, cwd=out)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"gwemopt failed on {skymap.name}: {proc.stderr[-2000:]}")
    return json.loads(line[7:])


def run_gwfollow(skymap: Path, out: Path) -> tuple[float, object]:
    from gwfollow.products.report import write_table
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.targets.fields import ZTF_FOV, Telescope, grid_path
    from gwfollow.targets.plan import PlanParameters, plan_observations
    from gwfollow.targets.sites import site_by_name

    t0 = time.perf_counter()
    sm = read_skymap(skymap)
    tel = Telescope.from_file("ZTF", grid_path("package:ZTF_Fields.txt"), ZTF_FOV)
    plan = plan_observations(sm, tel, site_by_name("Palomar"), sm.event_t0,
                             PlanParameters.defaults(hours=24, exposure_s=30, visits=1))
    write_table(plan.table(), out)
    return time.perf_counter() - t0, plan


GWFOLLOW_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import bench_plan  # gwfollow imported inside run_gwfollow, before its clock starts
from pathlib import Path
import gwfollow.products.report, gwfollow.skymaps.skymap, gwfollow.targets.plan, gwfollow.targets.sites
wall, plan = bench_plan.run_gwfollow(Path(sys.argv[2]), Path(sys.argv[3]))
print(f"RESULT {wall}")
"""


def run_gwfollow_cold(skymap: Path, out: Path) -> float:
    """gwfollow's wall time in a fresh process, as gwemopt's is measured: imports
    excluded; numba's cached kernels loaded, astropy's time set-up, the bundled
    IERS table read and the footprints computed within the time."""
    proc = subprocess.run([sys.executable, "-c", GWFOLLOW_CHILD, str(Path(__file__).parent), str(skymap), str(out)],
                          capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"gwfollow failed on {skymap.name}: {proc.stderr[-2000:]}")
    return float(line[7:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("maps", nargs="*", help="sky map files (default: the real maps in ../shared/data)")
    ap.add_argument("--gwemopt-venv", type=Path, default=DEFAULT_VENV, help="gwemopt's own virtualenv")
    ap.add_argument("--setup", action="store_true", help="create gwemopt's virtualenv and install gwemopt 0.4.2")
    ap.add_argument("--runs", type=int, default=3, help="gwfollow runs after the first (median printed)")
    ap.add_argument("--cold-runs", type=int, default=3,
                    help="gwfollow runs each in a fresh process, imports excluded (median printed)")
    ap.add_argument("--gwemopt-runs", type=int, default=1, help="gwemopt runs per map (median printed)")
    ap.add_argument("--no-gwemopt", action="store_true", help="time gwfollow only")
    args = ap.parse_args(argv)
    venv = args.gwemopt_venv
    if args.setup:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "gwemopt==0.4.2"], check=True)
        return 0
    if not args.no_gwemopt and not (venv / "bin" / "python").exists():
        sys.exit(f"no gwemopt virtualenv at {venv}: run with --setup first (or --gwemopt-venv DIR)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared with other work)")
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        for name, path in _maps(args.maps, tmpd):
            cold = [run_gwfollow_cold(path, tmpd / "plan.csv") for _ in range(args.cold_runs)]
            first, plan = run_gwfollow(path, tmpd / "plan.csv")
            warm = [run_gwfollow(path, tmpd / "plan.csv")[0] for _ in range(args.runs)]
            gf_p = covered_probability(path, plan.ra[plan.visit == 1], plan.dec[plan.visit == 1])
            gf_bad = unobservable(plan.ra, plan.dec, plan.start_utc.mjd, np.full(len(plan), 30.0))
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"\n{name}")
            print(f"  gwfollow: {len(np.unique(plan.field_id))} fields, {len(plan)} exposures, covered {gf_p:.4f} "
                  f"(own count {plan.probability:.4f}), unobservable exposures {gf_bad}, "
                  f"fresh process median {statistics.median(cold):.3f} s over {len(cold)}, "
                  f"first in this process {first:.3f} s, warm median {statistics.median(warm):.3f} s over {len(warm)}, "
                  f"peak RSS {peak:.2f} GiB (whole process)")
            if args.no_gwemopt:
                continue
            res = [run_gwemopt(venv, path) for _ in range(args.gwemopt_runs)]
            rows = res[0]["rows"]
            ra = np.array([r["ra"] for r in rows])
            dec = np.array([r["dec"] for r in rows])
            ids, first_i = np.unique([r["field_id"] for r in rows], return_index=True)
            ge_p = covered_probability(path, ra[first_i], dec[first_i])
            ge_bad = unobservable(ra, dec, np.array([r["mjd"] for r in rows]),
                                  np.array([r["exposure_s"] for r in rows]))
            ge_wall = statistics.median(r["wall_s"] for r in res)
            print(f"  gwemopt:  {ids.size} fields, {len(rows)} exposures, covered {ge_p:.4f} (true footprints), "
                  f"unobservable exposures {ge_bad}, wall {ge_wall:.1f} s (median of {len(res)}), "
                  f"peak RSS {max(r['peak_gib'] for r in res):.2f} GiB")
            print(f"  ratio: gwemopt / gwfollow wall = {ge_wall / statistics.median(cold):.0f}x (fresh process), "
                  f"{ge_wall / first:.0f}x (first call in this process), "
                  f"{ge_wall / statistics.median(warm):.0f}x (warm); covered {gf_p - ge_p:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
