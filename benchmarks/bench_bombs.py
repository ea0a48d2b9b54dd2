"""Peak memory and time of decompression bombs: stdlib ``gzip.decompress`` vs gwfollow.

Each case runs in a fresh child process, which reports its peak RSS
(``ru_maxrss``) and the wall time; the baseline is the child's RSS after
imports. Cases:

* ``bomb``: a gzip stream of zeros (~1 MiB compressed per 1 GiB), in a
  JSON alert (base64) as the issue's attacker sent it; gwfollow parses the
  alert and reads its sky map under ``skymap.max_size_mib`` (``--cap``);
  the reference inflates the same bytes with ``gzip.decompress`` (no cap);
* ``members``: 200,000 empty gzip members (4 MB), read as a sky map.

Usage: ``python benchmarks/bench_bombs.py [--inflated-mib 1024] [--cap 256]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import base64, dataclasses, gzip, json, resource, sys, time, zlib
sys.path.insert(0, sys.argv[1])
from gwfollow.config import SkyMapConfig
from gwfollow.errors import GwfollowError
from gwfollow.ingest.parse import parse_json_alert
from gwfollow.skymaps.skymap import read_skymap
case, impl, inflated_mib, cap = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
if case == "bomb":
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    blk = bytes(2**20)
    data = b"".join(c.compress(blk) for _ in range(inflated_mib)) + c.flush()
else:
    data = gzip.compress(b"") * 200_000
doc = {"alert_type": "PRELIMINARY", "time_created": "2024-11-02T12:41:27Z", "superevent_id": "S241102br",
       "urls": {}, "external_coinc": None,
       "event": {"significant": True, "time": "2024-11-02T12:40:58.799Z", "far": 1e-10, "instruments": ["H1"],
                 "group": "CBC", "pipeline": "gstlal", "search": "AllSky", "properties": {}, "classification": {},
                 "duration": None, "central_frequency": None, "skymap": base64.b64encode(data).decode()}}
body = json.dumps(doc).encode()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
outcome = "ok"
try:
    sky = parse_json_alert(body).skymap
    if impl == "reference":
        out = gzip.decompress(sky)
        outcome = f"inflated {len(out) / 2**20:.0f} MiB"
        del out
    else:
        read_skymap(sky, config=dataclasses.replace(SkyMapConfig(), max_size_mib=cap))
except GwfollowError as exc:
    outcome = type(exc).__name__
except Exception as exc:
    outcome = "untyped " + type(exc).__name__
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"body_mib": len(body) / 2**20, "base_mib": base / 1024, "peak_mib": peak / 1024,
                  "seconds": dt, "outcome": outcome}))
"""


def run(case: str, impl: str, inflated_mib: int, cap: float) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), case, impl, str(inflated_mib), str(cap)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inflated-mib", type=int, default=1024, help="size the bomb inflates to (MiB)")
    ap.add_argument("--cap", type=float, default=256.0, help="skymap.max_size_mib for gwfollow (MiB)")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    import statistics

    print(f"bomb: {a.inflated_mib} MiB of zeros, gzip in a JSON alert; gwfollow cap {a.cap:g} MiB; "
          f"median of {a.runs} runs, each in a fresh process")
    for case in ("bomb", "members"):
        rows = {}
        for impl in ("reference", "gwfollow"):
            rs = [run(case, impl, a.inflated_mib, a.cap) for _ in range(a.runs)]
            rows[impl] = {
                "extra_mib": statistics.median(r["peak_mib"] - r["base_mib"] for r in rs),
                "seconds": statistics.median(r["seconds"] for r in rs),
                "outcome": rs[0]["outcome"], "body_mib": rs[0]["body_mib"],
            }
            r = rows[impl]
            print(f"  {case:8s} {impl:9s} body {r['body_mib']:6.2f} MiB  peak RSS above baseline "
                  f"{r['extra_mib']:8.1f} MiB  {r['seconds']:7.3f} s  -> {r['outcome']}")
        ref, gw = rows["reference"], rows["gwfollow"]
        print(f"  {case:8s} ratio reference/gwfollow: memory {ref['extra_mib'] / max(gw['extra_mib'], 1):.1f}x, "
              f"time {ref['seconds'] / max(gw['seconds'], 1e-9):.1f}x")


if __name__ == "__main__":
    main()
