"""REST benchmark with wrk: cached target lists, and latency while alerts are processed.

Installs Debian's ``wrk`` when missing (apt-get), fills a database by replaying
real alerts, starts ``gwfollow serve`` on 127.0.0.1 (2 worker processes),
then runs wrk (2 threads, 50 connections, 15 s) against a VOTable target
list, first idle and then while alerts are POSTed (the pipeline busy), and
prints requests/s and latency percentiles.

The reference is the floor of the stack on this machine: a bare aiohttp
application, on the same event loop as ``gwfollow serve`` (uvloop when
installed), whose one handler returns the same bytes with the same headers,
measured the same way; the ratio is gwfollow over it.  Peak memory is the
largest resident set of the service and its workers, sampled each 0.2 s.
The load average is printed with each figure (the machine may be shared).

Usage: ``python benchmarks/bench_rest.py [--seconds 15]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrk() -> str:
    w = shutil.which("wrk")
    if w:
        return w
    print("installing wrk (apt-get)...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def _run_wrk(wrk: str, url: str, seconds: int) -> tuple[str, float]:
    out = subprocess.run([wrk, "-t2", "-c50", f"-d{seconds}s", "--latency", url], capture_output=True,
                         text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"\s+(50|75|90|99)%\s+([\d.]+\w+)", out))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = f", {bad.group(1)} non-2xx" if bad else ""
    return f"{rps:8.0f} req/s, p50 {lat.get('50')}, p90 {lat.get('90')}, p99 {lat.get('99')}{errors}", rps


REFERENCE_APP = """
import sys
from aiohttp import web
body = open(sys.argv[2], "rb").read()
headers = dict(line.split(": ", 1) for line in open(sys.argv[3]).read().splitlines() if line)
async def handle(request):
    return web.Response(body=body, headers=headers)
app = web.Application()
app.router.add_get("/{tail:.*}", handle)
try:
    import uvloop
    loop = uvloop.new_event_loop()
except ImportError:
    loop = None
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, loop=loop)
"""


def _load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


class _PeakRSS:
    """Largest resident set of a process and its children, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc] + self.proc.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def _reference(wrk: str, url: str, seconds: int, tmp: str) -> tuple[str, float]:
    """The same body and headers from a bare aiohttp app: (wrk summary, req/s)."""
    with urllib.request.urlopen(url) as r:
        # Not the hop-by-hop Connection (urllib asks to close, and a replayed "close" would
        # make every wrk request open a new connection).
        body, headers = r.read(), {k: v for k, v in r.headers.items()
                                   if k not in ("Content-Length", "Date", "Server", "Connection", "Keep-Alive")}
    Path(tmp, "body").write_bytes(body)
    Path(tmp, "headers").write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", REFERENCE_APP, str(port), str(Path(tmp, "body")),
                             str(Path(tmp, "headers"))], start_new_session=True)
    try:
        ref_url = f"http://127.0.0.1:{port}/ref"
        for _ in range(600):
            try:
                urllib.request.urlopen(ref_url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        return _run_wrk(wrk, ref_url, seconds)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=15)
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"benchmarks need {SHARED}", file=sys.stderr)
        return 2
    from gwfollow.config import load_config
    from gwfollow.pipeline.replay import order_messages, replay_messages
    from gwfollow.service.auth import token_digest
    from gwfollow.store import Store

    wrk = _wrk()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        cfg = load_config(env={})
        cfg = cfg.updated(store=dict(path=str(db)))
        names = ["S241102br-preliminary.json", "S241102br-initial.json"]
        store = Store(db)
        asyncio.run(replay_messages(order_messages([((SHARED / "alerts" / n).read_bytes(), n) for n in names]),
                                    cfg, store))
        store.close()
        port = _free_port()
        site = Path(tmp) / "site.toml"
        site.write_text(f'[store]\npath = "{db}"\n[service]\nport = {port}\nworkers = 2\n'
                        f'write_tokens_sha256 = ["{token_digest("bench")}"]\n')
        proc = subprocess.Popen([sys.executable, "-m", "gwfollow.cli.main", "serve", "--config", str(site),
                                 "--log-level", "WARNING"], start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(3000):  # start-up spawns and warms the workers: a minute on a loaded machine
                try:
                    urllib.request.urlopen(f"{base}/api/v1/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            url = f"{base}/api/v1/events/S241102br/targets?kind=galaxies&format=votable&limit=100"
            urllib.request.urlopen(url).read()
            peak = _PeakRSS(proc.pid)
            ref, ref_rps = _reference(wrk, url, args.seconds, tmp)
            print(f"reference (bare aiohttp, same bytes and headers), idle: {ref}  ({_load()})", flush=True)
            got, rps = _run_wrk(wrk, url, args.seconds)
            print(f"gwfollow, cached VOTable target list (100 galaxies), idle: {got}  ({_load()})", flush=True)
            print(f"ratio gwfollow / reference: {rps / ref_rps:.2f}", flush=True)
            stop = threading.Event()

            def push() -> None:
                bodies = [(SHARED / "alerts" / n).read_bytes() for n in
                          ("S250720j-preliminary.json", "S241102br-update.json", "MS181101ab-initial.json")]
                i = 0
                while not stop.is_set():
                    body = bodies[i % len(bodies)] + b" " * (i + 1)  # a new message each time
                    req = urllib.request.Request(f"{base}/api/v1/alerts", data=body, method="POST",
                                                 headers={"Authorization": "Bearer bench"})
                    urllib.request.urlopen(req).read()
                    i += 1
                    time.sleep(1.0)

            t = threading.Thread(target=push)
            t.start()
            try:
                got, _ = _run_wrk(wrk, url, args.seconds)
                print(f"gwfollow, same, while alerts are processed (1 alert/s pushed): {got}  ({_load()})")
            finally:
                stop.set()
                t.join()
            print(f"peak RSS of gwfollow serve and its workers: {peak.stop() / 2**20:.0f} MiB")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
