"""Worker processes die with the service and give memory back after large inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gwfollow.pipeline.worker import release_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and malloc_trim are Linux")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_die_when_the_main_process_is_killed(tmp_path) -> None:
    script = textwrap.dedent("""
        import asyncio, dataclasses, os, sys
        from gwfollow.config import packaged_defaults
        from gwfollow.pipeline.runner import Pipeline
        from gwfollow.store import Store

        async def main():
            cfg = packaged_defaults().updated(service=dict(workers=2), store=dict(path=sys.argv[1]))
            async with Pipeline(cfg, Store(sys.argv[1])):
                kids = [int(p) for p in open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
                        if b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()]  # not the resource tracker
                print(" ".join(map(str, kids)), flush=True)
                await asyncio.sleep(600)

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "w.sqlite")], stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        kids = [int(p) for p in line.split()]
        assert kids and all(_alive(k) for k in kids), line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [k for k in kids if _alive(k)]
    for k in survivors:
        os.kill(k, signal.SIGKILL)
    assert not survivors, "worker processes outlived the killed main process"


def test_release_memory_returns_freed_heap_to_the_system() -> None:
    script = textwrap.dedent("""
        import os, sys
        from gwfollow.pipeline.worker import release_memory
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        blocks = [bytes(1500) + i.to_bytes(4, "little") for i in range(200_000)]  # glibc heap, not pymalloc
        keep = blocks[::200]  # pins the heap: free() alone cannot shrink it
        del blocks
        before = rss()
        assert release_memory()
        after = rss()
        print(before, after)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, after = map(int, out.split())
    assert before - after > 100 * 2**20, (before / 2**20, after / 2**20)


def test_release_memory_is_harmless_to_call() -> None:
    assert release_memory() in (True, False)
