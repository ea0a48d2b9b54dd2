"""SAMP with a real receiver: TOPCAT (Debian ``topcat``) under a virtual X server (Xvfb), on 127.0.0.1.

TOPCAT and Xvfb are installed by the test set-up when missing, as Chromium
and STILTS are (:mod:`tests.system_tools`, as root); elsewhere the test skips
with the reason, and under ``CI=true`` it must run.  The protocol itself is
covered by ``test_samp.py`` with pyvo's hub and clients; this test catches
what only a real client does (TOPCAT refuses a duplicate table-id).
TOPCAT starts, runs its own hub and subscribes in about 3 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gwfollow.config import load_config
from gwfollow.products.samp import TABLE_MTYPE, products_from_skymap, send_products

from .system_tools import require_tool

STARTUP_S = 60.0


def _tools() -> tuple[str, str]:
    return require_tool("topcat", "topcat"), require_tool("Xvfb", "xvfb")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process and its children (TOPCAT's script starts java) by its own process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def topcat_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A TOPCAT running its own SAMP hub, its lock file under ``tmp_path`` (found through $SAMP_HUB)."""
    topcat, xvfb = _tools()
    read, write = os.pipe()
    # -displayfd: Xvfb picks a free display and writes its number; no TCP listener.
    x = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                         pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    os.close(write)
    with os.fdopen(read) as f:
        display = f.readline().strip()
    home = tmp_path / "home"
    home.mkdir()
    log = open(tmp_path / "topcat.log", "wb")  # noqa: SIM115 -- closed below
    env = dict(os.environ, DISPLAY=f":{display}", HOME=str(home))
    # Java takes its home from the password file, not $HOME: the lock file goes where we say.
    # Standard profile only: the Web Profile would take port 21012 from test_pages.py running alongside.
    tc = subprocess.Popen([topcat, f"-Duser.home={home}", "-Djsamp.hostname=127.0.0.1", "-Djsamp.hub.profiles=std",
                           "-hub"], env=env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    lock = home / ".samp"
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{lock.as_uri()}")
    try:
        deadline = time.monotonic() + STARTUP_S
        while not lock.is_file():
            if tc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TOPCAT did not start a hub in {STARTUP_S:g} s (log: {tmp_path / 'topcat.log'})")
            time.sleep(0.2)
        yield str(lock)
    finally:
        _stop(tc)
        _stop(x)
        log.close()


def _topcat_subscribed(deadline: float) -> str:
    from pyvo.samp import SAMPIntegratedClient

    probe = SAMPIntegratedClient(name="probe")
    probe.connect()
    try:
        while time.monotonic() < deadline:
            for cid in probe.get_subscribed_clients(TABLE_MTYPE):
                if probe.get_metadata(cid).get("samp.name") == "topcat":
                    return cid
            time.sleep(0.2)
    finally:
        probe.disconnect()
    pytest.fail("TOPCAT did not subscribe to table.load.votable")


def test_topcat_loads_the_tables_sent_again(topcat_hub, sim_path, tmp_path) -> None:
    """TOPCAT replies "ok" once it has read each VOTable, also when the same products are sent again
    and again (TOPCAT 4.8 answers "Duplicate table-id" to the third table with one id, so each send
    has its own)."""
    me = _topcat_subscribed(time.monotonic() + STARTUP_S)
    products = products_from_skymap(sim_path, load_config(env={}), catalogs=[], telescopes=["ZTF"])
    for attempt in (1, 2, 3):
        sent = send_products(products, directory=tmp_path / "send", reply_seconds=30)  # the same URLs twice
        tables = [m for m in sent if m["samp.mtype"] == TABLE_MTYPE]
        print(attempt, [(m["samp.params"], m["replies"]) for m in tables])
        assert tables and all(m["replies"].get(me) == "ok" for m in tables), (attempt, tables)
        assert all(m["names"][me] == "topcat" for m in tables)
