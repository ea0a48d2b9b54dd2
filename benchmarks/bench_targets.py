"""Targets benchmark: galaxy ranking (gwfollow vs ligo.skymap crossmatch vs a
plain numpy/healpy implementation) and field ranking, in one process.

Catalogues are generated (uniform on the sky, distances uniform in volume
out to 500 Mpc) with 1e5, 1e6 and 2e7 galaxies; the sky map is a real
BAYESTAR map from ../shared/data (19,200 cells, 90 % region ~38 deg²) and a
wide one (S190425z, ~10,000 deg²).  Printed: the one-time index build, the
per-alert ranking with the index (coarse-then-fine inside the 99.9 % region),
the ranking without an index (every galaxy evaluated), the numpy/healpy
version of the same, crossmatch on a subsample (it is too slow for the full
catalogues), peak memory, the probability in each of the 1,778 ZTF fields
(mocpy, one footprint at a time, the footprint grid) and the fields ranked
for the full ZTF grid.

Usage: ``python benchmarks/bench_targets.py [--sizes 1e5 1e6 2e7]``
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def timeit(fn, repeat: int = 5) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pair(ref, ours, repeat: int):
    """Reference and gwfollow timed interleaved (same load for both); per
    side the median wall time, the median CPU time of all threads, and the
    peak resident memory one call adds (Linux VmHWM after clear_refs)."""
    peaks = []
    for fn in (ref, ours):
        fn()
        gc.collect()
        base = _rss()
        _reset()
        fn()
        peaks.append(max(0, _hwm() - base))
    wall: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for j, fn in enumerate((ref, ours)):
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[j].append(time.perf_counter() - t)
            cpu[j].append(time.process_time() - c)
    return [(statistics.median(wall[j]), statistics.median(cpu[j]), peaks[j]) for j in (0, 1)]


def numpy_healpy_rank(sm, ra, dec, dist):
    """The straightforward vectorised implementation (the comparison baseline)."""
    import healpy as hp

    order = sm.max_order
    max_ipix = sm.ipix << (2 * (order - sm.order))
    srt = np.argsort(max_ipix)
    pix = hp.ang2pix(2**order, np.pi / 2 - np.radians(dec), np.radians(ra), nest=True)
    idx = srt[np.searchsorted(max_ipix[srt], pix, side="right") - 1]
    p2 = sm.probdensity[idx]
    mu, sg, nm = sm.distmu[idx], sm.distsigma[idx], sm.distnorm[idx]
    p3 = p2 * nm / (np.sqrt(2 * np.pi) * sg) * np.exp(-0.5 * ((dist - mu) / sg) ** 2)
    return np.argsort(-p3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", type=float, default=[1e5, 1e6, 2e7],
                    help="catalogue sizes (none: fields only)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs per ranking line (default 5)")
    args = ap.parse_args(argv)
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from gwfollow.kernels import warm_up
    from ligo.skymap.io import read_sky_map
    from ligo.skymap.postprocess.crossmatch import crossmatch

    from gwfollow import read_skymap
    from gwfollow.targets.catalogues import Catalog
    from astropy.table import Table
    from mocpy import MOC

    from gwfollow.regions.moc import moc_from_ranges, probability_in_ranges
    from gwfollow.targets.fields import (
        ZTF_FOV,
        Telescope,
        field_footprints,
        field_probabilities,
        footprint_grid,
        rank_fields,
    )
    from gwfollow.targets.rank import rank_galaxies

    warm_up()
    maps = {"S190814bv (38 deg2)": SHARED / "skymaps" / "S190814bv_bayestar.multiorder.fits",
            "S190425z (10,000 deg2)": SHARED / "skymaps" / "S190425z_bayestar.fits.gz"}
    sms = {k: read_skymap(p) for k, p in maps.items()}
    rng = np.random.default_rng(0)
    print(f"{'case':62s} {'time':>10s} {'peak MiB':>9s}")
    for n in map(int, args.sizes):
        ra = rng.uniform(0, 360, n)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        dist = 500.0 * rng.uniform(0, 1, n) ** (1 / 3)
        cat = Catalog.from_arrays(ra, dec, dist, name=f"gen{n:.0e}")
        cols_mib = 3 * 8 * n / 2**20
        gc.collect()
        _reset()
        base = _hwm()
        t = time.perf_counter()
        cat.index()
        t_index = time.perf_counter() - t
        print(f"{f'index {n:.0e} galaxies (once per catalogue)':62s} {t_index:9.2f}s "
              f"{(_hwm() - base) / 2**20:9.0f}  (columns {cols_mib:.0f} MiB)", flush=True)
        for label, sm in sms.items():
            t_idx = timeit(lambda: rank_galaxies(sm, cat, level=0.999, limit=500))
            print(f"{f'rank with index, {label}':62s} {t_idx * 1e3:8.1f}ms", flush=True)
        sm = sms["S190814bv (38 deg2)"]
        rep = args.repeat if n <= 1e6 else max(1, args.repeat // 2)
        uncat = Catalog.from_arrays(ra, dec, dist, name=f"gen{n:.0e}")  # never indexed
        (t_np, c_np, m_np), (t_full, c_full, m_full) = pair(
            lambda: numpy_healpy_rank(sm, ra, dec, dist), lambda: rank_galaxies(sm, uncat, level=None, limit=500), rep)
        print(f"{f'rank without index, whole sky, top 500, {n:.0e} galaxies':62s} {t_full * 1e3:8.1f}ms "
              f"{m_full / 2**20:9.0f}  (CPU {c_full * 1e3:.0f} ms, all threads; load {os.getloadavg()[0]:.1f})")
        print(f"{'  numpy/healpy implementation, same (interleaved)':62s} {t_np * 1e3:8.1f}ms {m_np / 2**20:9.0f}  "
              f"ratio {t_np / t_full:.2f}x (CPU {c_np * 1e3:.0f} ms)", flush=True)
    if args.sizes:
        # crossmatch on a subsample: its cost is dominated by the distance grid, not the galaxies.
        m = read_sky_map(str(maps["S190814bv (38 deg2)"]), moc=True)
        sub = 1000
        coords = SkyCoord(ra[:sub] * u.deg, dec[:sub] * u.deg, dist[:sub] * u.Mpc)
        gc.collect()
        _reset()
        base = _hwm()
        t = time.perf_counter()
        crossmatch(m, coords)
        t_cm = time.perf_counter() - t
        print(f"{f'ligo.skymap crossmatch, {sub} galaxies, S190814bv':62s} {t_cm * 1e3:8.1f}ms "
              f"{(_hwm() - base) / 2**20:9.0f}")
        small = Catalog.from_arrays(ra[:sub], dec[:sub], dist[:sub])
        t_g = timeit(lambda: rank_galaxies(sm, small, level=None, distance_grid="crossmatch"))
        print(f"{f'gwfollow, same {sub} galaxies (crossmatch grid)':62s} {t_g * 1e3:8.1f}ms   ratio {t_cm / t_g:.0f}x")
    ztf = Telescope.from_file("ZTF", SHARED / "fields" / "ZTF_Fields.txt", ZTF_FOV)
    import tempfile

    from gwfollow.targets import fields as fields_mod

    with tempfile.TemporaryDirectory() as cache:
        fields_mod._GRIDS.clear()
        t = time.perf_counter()
        grid = footprint_grid(ztf, 10, cache)
        print(f"{'ZTF footprint grid built and written to the disk cache':62s} {time.perf_counter() - t:9.2f}s "
              f"({len(grid.bounds)} atoms)")
        loads = []
        for _ in range(5):
            fields_mod._GRIDS.clear()  # as in a new process
            t = time.perf_counter()
            footprint_grid(ztf, 10, cache)
            loads.append(time.perf_counter() - t)
        print(f"{'ZTF footprint grid loaded from the disk cache (new process)':62s} "
              f"{statistics.median(loads) * 1e3:8.1f}ms  (load {os.getloadavg()[0]:.1f})")
    feet = field_footprints(ztf.ra, ztf.dec, ztf.fov, 10)
    mocs = [moc_from_ranges(f, 10) for f in feet]
    for label, sm in sms.items():
        # Probability in every field: mocpy (one call for all 1,778 MOCs), the
        # per-footprint kernel (gwfollow before issue 14), the footprint grid.
        t_tab = Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity})
        gc.collect()
        t_ref = timeit(lambda: MOC.probabilities_in_multiordermap(mocs, t_tab, n_threads=1), 3)
        t_old = timeit(lambda: [probability_in_ranges(sm, f) for f in feet], 3)
        _reset()
        base = _hwm()
        t_new = timeit(lambda: field_probabilities(sm, ztf), 11)
        peak = (_hwm() - base) / 2**20
        print(f"{f'probability in each ZTF field (1778), {label}':62s} {t_new * 1e3:8.1f}ms {peak:9.0f}  "
              f"mocpy {t_ref * 1e3:.1f} ms ({t_ref / t_new:.0f}x), per footprint {t_old * 1e3:.1f} ms "
              f"({t_old / t_new:.0f}x)", flush=True)
    for label, sm in sms.items():
        first = time.perf_counter()
        rank_fields(sm, ztf)
        first = time.perf_counter() - first
        t_f = timeit(lambda: rank_fields(sm, ztf), 11)
        print(f"{f'fields, full ZTF grid (1778), {label}':62s} {t_f * 1e3:8.1f}ms  (first call {first:.2f} s)")
    # Executed pointings -> space-time coverage (ZTF's GW190425 campaign).
    from gwfollow.targets.fields import pointings_to_stmoc

    obs = SHARED / "fields" / "ZTF_GW190425_observation_data.csv"
    t_p = timeit(lambda: pointings_to_stmoc(obs, SHARED / "fields" / "ZTF_Fields.txt", ZTF_FOV, order=10), 3)
    print(f"{'pointings -> ST-MOC, ZTF GW190425 campaign':62s} {t_p * 1e3:8.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
