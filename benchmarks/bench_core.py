"""Core benchmark: mocpy (reference) vs gwfollow on the same inputs, one process.

Prints, for each case, the median wall time of both, their ratio
(reference / gwfollow: above 1 means gwfollow is faster) and the peak
resident memory each added (Linux VmHWM after resetting it, so Rust and
numpy allocations are both counted).

Cases (issue: core sky map -> MOC):
* read + 90% MOC of every real multi-order map in ../shared/data/skymaps;
* read + 90% MOC of the flat nside-2048 map (reference: ligo.skymap's reader
  + mocpy.MOC.from_valued_healpix_cells, mocpy having no flat-map reader);
* probability in a MOC (mocpy.MOC.probabilities_in_multiordermap);
* union and intersection of two survey MOCs from ../shared/data/mocs;
* the cold first call of gwfollow in a fresh process (kernels from cache).

Usage: ``python benchmarks/bench_core.py [--repeat N] [--quick]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, int]:
    """Median seconds over ``repeat`` calls and the peak RSS added by one call."""
    fn()  # warm (JIT cache load, file cache)
    gc.collect()
    base = _vm("VmRSS:")
    _reset_peak()
    fn()
    peak = max(0, _vm("VmHWM:") - base)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), peak


def row(name: str, ref: tuple[float, int], ours: tuple[float, int]) -> str:
    (tr, mr), (tg, mg) = ref, ours
    return (f"{name:52s} {tr * 1e3:10.2f} {tg * 1e3:10.2f} {tr / tg:7.2f}x "
            f"{mr / 2**20:9.1f} {mg / 2**20:9.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed calls per case (default 30)")
    ap.add_argument("--quick", action="store_true", help="skip the flat nside-2048 map")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"benchmarks need {SHARED}", file=sys.stderr)
        return 2

    from astropy.table import Table
    from gwfollow.kernels import ranges as kr
    from gwfollow.kernels import warm_up
    from mocpy import MOC

    import gwfollow
    from gwfollow.regions.moc import ranges_of

    warm_up()
    print(f"gwfollow {gwfollow.__version__}; reference: mocpy; times are medians of {args.repeat} calls")
    print(f"{'case':52s} {'ref ms':>10s} {'ours ms':>10s} {'ratio':>8s} {'ref MiB':>9s} {'ours MiB':>9s}")

    maps = sorted((SHARED / "skymaps").glob("*.multiorder.fits"))
    for p in maps:
        ref = measure(lambda: MOC.from_multiordermap_fits_file(str(p), cumul_to=0.9), args.repeat)
        ours = measure(lambda: gwfollow.credible_moc(gwfollow.read_skymap(p), 0.9), args.repeat)
        print(row(f"read + 90% MOC  {p.name}", ref, ours), flush=True)

    if not args.quick:
        slim = SHARED / "skymaps" / "MS181101ab_bayestar.slim.fits.gz"

        def ref_flat() -> object:
            from ligo.skymap.io import read_sky_map

            prob, _ = read_sky_map(str(slim), nest=True, distances=False)
            nside = int(np.sqrt(prob.size // 12))
            uniq = 4 * nside * nside + np.arange(prob.size, dtype=np.uint64)
            return MOC.from_valued_healpix_cells(uniq, prob, max_depth=11, cumul_to=0.9)

        rep = max(3, args.repeat // 10)
        ref = measure(ref_flat, rep)
        ours = measure(lambda: gwfollow.credible_moc(gwfollow.read_skymap(slim), 0.9), rep)
        print(row(f"read + 90% MOC  {slim.name} (flat nside 2048)", ref, ours), flush=True)

    p = SHARED / "skymaps" / "S190814bv_bayestar.multiorder.fits"
    sm = gwfollow.read_skymap(p)
    t = Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity})
    for label, moc in (("90% region", gwfollow.credible_moc(sm, 0.9)),
                       ("SDSS9 r coverage", MOC.load(str(SHARED / "mocs" / "P-SDSS9-r.moc.fits"), format="fits"))):
        ref = measure(lambda: MOC.probabilities_in_multiordermap([moc], t, n_threads=1), args.repeat)
        ours = measure(lambda: gwfollow.probability_in_moc(sm, moc), args.repeat)
        print(row(f"probability in MOC ({label})", ref, ours), flush=True)

    a = MOC.load(str(SHARED / "mocs" / "P-SDSS9-r.moc.fits"), format="fits")
    b = MOC.load(str(SHARED / "mocs" / "sdss_moc.range.fits"), format="fits")
    ra, rb = ranges_of(a), ranges_of(b)
    for op in ("union", "intersection", "difference"):
        ref = measure(lambda: getattr(a, op)(b), args.repeat)
        ours = measure(lambda: getattr(kr, op)(ra, rb), args.repeat)
        print(row(f"{op}: P-SDSS9-r x sdss_moc.range (ranges)", ref, ours), flush=True)
        ours_obj = measure(lambda: gwfollow.regions.moc.moc_from_ranges(getattr(kr, op)(ra, rb)), args.repeat)
        print(row(f"{op}: same, returning a mocpy.MOC", ref, ours_obj), flush=True)

    code = (
        "import time; t=time.perf_counter(); import gwfollow; t1=time.perf_counter();"
        f"m=gwfollow.credible_moc(gwfollow.read_skymap({str(p)!r}), 0.9); t2=time.perf_counter();"
        "m=gwfollow.credible_moc(gwfollow.read_skymap(" + repr(str(p)) + "), 0.9); t3=time.perf_counter();"
        "print(f'{(t1-t)*1e3:.0f} {(t2-t1)*1e3:.1f} {(t3-t2)*1e3:.2f}')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    print(f"cold process: import gwfollow {out[0]} ms, first read + 90% MOC {out[1]} ms "
          f"(kernels from numba's cache), second call {out[2]} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
