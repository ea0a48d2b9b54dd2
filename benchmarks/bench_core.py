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
* intersection of a small (1e3 ranges) and a huge (2e6 ranges) MOC;
* the cold first call of gwfollow in a fresh process (kernels from cache).

The multi-order lines also print the minor page faults per call of each
side.  glibc gives a freed heap top back to the kernel once it passes a
trim threshold that starts low (256 kB) and grows only after a large block
has been freed; a process that has not yet read a big map then maps its
sky map's arrays (1.7 MB for 19,200 cells) afresh on every call, ~400
page faults that cost ~1 ms on a loaded machine, while mocpy's smaller
output reuses its heap.  A worker has a steady heap after its first flat
map; ``--heap steady`` (the default) sets the same thresholds for this
process with ``mallopt`` (both sides run in it), ``--heap default`` keeps
glibc's start-up state.

Usage: ``python benchmarks/bench_core.py [--repeat N] [--quick] [--only multiorder,flat,...]``
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
import zlib
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


def peak_of(fn: Callable[[], object]) -> int:
    """Peak resident memory added by one call (after a warm call)."""
    fn()
    gc.collect()
    base = _vm("VmRSS:")
    _reset_peak()
    fn()
    return max(0, _vm("VmHWM:") - base)


def measure_pair(ref_fn: Callable[[], object], ours_fn: Callable[[], object],
                 repeat: int) -> tuple[tuple[float, int], tuple[float, int]]:
    """Both functions timed interleaved (ref, ours, ref, ours...): on a shared,
    loaded machine both medians see the same load, so their ratio holds."""
    pr, po = peak_of(ref_fn), peak_of(ours_fn)
    tr, to = [], []
    cr, co = [], []
    fr = fo = 0
    for _ in range(repeat):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t, c = time.perf_counter(), time.process_time()
        ref_fn()
        tr.append(time.perf_counter() - t)
        cr.append(time.process_time() - c)
        f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t, c = time.perf_counter(), time.process_time()
        ours_fn()
        to.append(time.perf_counter() - t)
        co.append(time.process_time() - c)
        fr += f1 - f0
        fo += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f1
    FAULTS[:] = [fr / max(repeat, 1), fo / max(repeat, 1)]
    CPU[:] = [statistics.median(cr), statistics.median(co)]
    return (statistics.median(tr), pr), (statistics.median(to), po)


#: Minor page faults per call (reference, gwfollow) of the last measure_pair:
#: fresh pages the allocator had to map (glibc gives freed heap tops back to
#: the kernel past its trim threshold), which cost a loaded machine ~2-3 us each.
FAULTS: list[float] = [0.0, 0.0]
#: Median CPU seconds per call of all threads (reference, gwfollow) of the
#: last measure_pair: less sensitive to the load than wall time (mocpy's
#: reader spreads over threads, which a loaded machine makes wait).
CPU: list[float] = [0.0, 0.0]


def steady_heap() -> None:
    """Fix glibc's trim (256 MiB) and mmap (64 MiB) thresholds for this
    process, as they settle in a worker after its first large map
    (``mallopt``, glibc only; elsewhere nothing changes)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    libc = ctypes.CDLL(name)
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_trim_threshold, 256 * 2**20)
    libc.mallopt(m_mmap_threshold, 64 * 2**20)


def row(name: str, ref: tuple[float, int], ours: tuple[float, int]) -> str:
    (tr, mr), (tg, mg) = ref, ours
    return (f"{name:52s} {tr * 1e3:10.2f} {tg * 1e3:10.2f} {tr / tg:7.2f}x "
            f"{mr / 2**20:9.1f} {mg / 2**20:9.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed calls per case (default 30)")
    ap.add_argument("--quick", action="store_true", help="skip the flat nside-2048 map")
    ap.add_argument("--heap", choices=("steady", "default"), default="steady",
                    help="glibc heap thresholds: as a worker's after its first big map (default), or at start-up")
    ap.add_argument("--only", default="",
                    help="comma-separated sections: multiorder, flat, probability, setops, gallop, cold")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"benchmarks need {SHARED}", file=sys.stderr)
        return 2

    from astropy.table import Table
    from gwfollow.kernels import ranges as kr
    from gwfollow.kernels import warm_up
    from mocpy import MOC

    import gwfollow
    from gwfollow.regions.moc import moc_from_ranges, ranges_of

    warm_up()
    if args.heap == "steady":
        steady_heap()

    def want(section: str) -> bool:
        return not args.only or section in args.only.split(",")

    p = SHARED / "skymaps" / "S190814bv_bayestar.multiorder.fits"
    sm = gwfollow.read_skymap(p)
    print(f"gwfollow {gwfollow.__version__}; reference: mocpy; times are medians of {args.repeat} calls, "
          f"reference and gwfollow interleaved; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"heap {args.heap}")
    print(f"{'case':52s} {'ref ms':>10s} {'ours ms':>10s} {'ratio':>8s} {'ref MiB':>9s} {'ours MiB':>9s}")

    if want('multiorder'):
        maps = sorted((SHARED / "skymaps").glob("*.multiorder.fits"))
        for mp in maps:
            ref, ours = measure_pair(lambda: MOC.from_multiordermap_fits_file(str(mp), cumul_to=0.9),
                                     lambda: gwfollow.credible_moc(gwfollow.read_skymap(mp), 0.9), args.repeat)
            print(row(f"read + 90% MOC  {mp.name}", ref, ours)
                  + f"  faults/call {FAULTS[0]:.0f} / {FAULTS[1]:.0f}; CPU ms {CPU[0] * 1e3:.2f} / {CPU[1] * 1e3:.2f} "
                  f"({CPU[0] / CPU[1]:.2f}x)", flush=True)

    if not args.quick and want("flat"):
        slim = SHARED / "skymaps" / "MS181101ab_bayestar.slim.fits.gz"

        def ref_flat() -> object:
            from ligo.skymap.io import read_sky_map

            prob, _ = read_sky_map(str(slim), nest=True, distances=False)
            nside = int(np.sqrt(prob.size // 12))
            uniq = 4 * nside * nside + np.arange(prob.size, dtype=np.uint64)
            return MOC.from_valued_healpix_cells(uniq, prob, max_depth=11, cumul_to=0.9)

        rep = max(3, args.repeat // 10)
        ref, ours = measure_pair(ref_flat, lambda: gwfollow.credible_moc(gwfollow.read_skymap(slim), 0.9), rep)
        print(row(f"read + 90% MOC  {slim.name} (flat nside 2048)", ref, ours), flush=True)
        # The floor: zlib alone inflating the file into memory (what the map
        # costs before any reading), interleaved with gwfollow's whole read + MOC.
        gz = slim.read_bytes()
        t_z, t_g = [], []
        for _ in range(rep + 2):
            t = time.perf_counter()
            zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(gz)
            t_z.append(time.perf_counter() - t)
            t = time.perf_counter()
            gwfollow.credible_moc(gwfollow.read_skymap(slim), 0.9)
            t_g.append(time.perf_counter() - t)
        tz, tg = statistics.median(t_z), statistics.median(t_g)
        print(f"{'  zlib inflate alone vs gwfollow read + 90% MOC':52s} {tz * 1e3:10.2f} {tg * 1e3:10.2f} "
              f"{tz / tg:7.2f}x   (gwfollow = {tg / tz:.2f} x the inflate time)", flush=True)

    p = SHARED / "skymaps" / "S190814bv_bayestar.multiorder.fits"
    sm = gwfollow.read_skymap(p)
    if want('probability'):
        t = Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity})
        for label, moc in (("90% region", gwfollow.credible_moc(sm, 0.9)),
                           ("SDSS9 r coverage", MOC.load(str(SHARED / "mocs" / "P-SDSS9-r.moc.fits"), format="fits"))):
            ref, ours = measure_pair(lambda: MOC.probabilities_in_multiordermap([moc], t, n_threads=1),
                                     lambda: gwfollow.probability_in_moc(sm, moc), args.repeat)
            print(row(f"probability in MOC ({label})", ref, ours), flush=True)

    if want('setops'):
        a = MOC.load(str(SHARED / "mocs" / "P-SDSS9-r.moc.fits"), format="fits")
        b = MOC.load(str(SHARED / "mocs" / "sdss_moc.range.fits"), format="fits")
        ra, rb = ranges_of(a), ranges_of(b)
        for op in ("union", "intersection", "difference"):
            ref, ours = measure_pair(lambda: getattr(a, op)(b), lambda: getattr(kr, op)(ra, rb), args.repeat)
            print(row(f"{op}: P-SDSS9-r x sdss_moc.range (ranges)", ref, ours), flush=True)
            ours_obj = measure(lambda: gwfollow.regions.moc.moc_from_ranges(getattr(kr, op)(ra, rb)), args.repeat)
            print(row(f"{op}: same, returning a mocpy.MOC", ref, ours_obj), flush=True)

    if want('gallop'):
        # Small x huge (issue 14): 1e3 order-10 cells (a region's fine border, a
        # set of footprints) against 2e6 ranges with random bounds (a deep survey).
        rng = np.random.default_rng(14)
        huge = kr.normalize(np.unique(rng.integers(0, kr.NPIX29, 4_000_000)).reshape(-1, 2))
        cells = np.unique(rng.integers(0, 12 * 4**10, 1000))
        small = kr.normalize(np.stack([cells << 38, (cells + 1) << 38], axis=1))
        mh, ms = moc_from_ranges(huge), moc_from_ranges(small)
        assert np.array_equal(kr.intersection(small, huge), ranges_of(ms.intersection(mh)))
        ref, ours = measure_pair(lambda: ms.intersection(mh), lambda: kr.intersection(small, huge), args.repeat)
        print(row(f"intersection: {len(small):.0e} x {len(huge):.0e} ranges (galloping)", ref, ours), flush=True)
        flat = measure(lambda: kr._intersection_flat(small.reshape(-1), huge.reshape(-1)), args.repeat)
        print(row("same, linear sweep (gwfollow before issue 14)", ref, flat), flush=True)

    if want('cold'):
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
