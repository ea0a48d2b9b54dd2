"""kill -9 of ``gwfollow serve`` over HTTP, a few times: every accepted alert is stored exactly once.

Each round starts the real command, POSTs alerts (cheap retractions and
preliminaries with sky maps, so some are in the middle of processing), and
SIGKILLs the service after a random number of accepted (202) answers.  A
last start drains what was pending.  Then every alert answered 202 must
be in the store once, processed, and SQLite must be intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from gwfollow.service.auth import token_digest

from .conftest import shared_path

WRITE = "kill9-secret"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL semantics of Linux")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port: int, db: str) -> subprocess.Popen:
    env = {**os.environ, "GWFOLLOW_SERVICE_WORKERS": "1", "GWFOLLOW_STORE_PATH": db,
           "GWFOLLOW_SERVICE_WRITE_TOKENS_SHA256": token_digest(WRITE), "GWFOLLOW_TARGETS_CATALOGS": ""}
    p = subprocess.Popen([sys.executable, "-m", "gwfollow.cli.main", "serve", "--port", str(port),
                          "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
                return p
        except (urllib.error.URLError, ConnectionError, OSError):
            if p.poll() is not None:
                raise AssertionError(f"serve exited with {p.returncode}")
            time.sleep(0.2)
    p.kill()
    raise AssertionError("serve did not start")


def _post(port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/alerts", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {WRITE}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _alerts(n: int) -> list[bytes]:
    ret = json.loads(shared_path("alerts", "S241126dm-retraction.json").read_bytes())
    pre = shared_path("alerts", "MS181101ab-preliminary.json").read_bytes()
    out = []
    for i in range(n):
        letters = chr(97 + i // 26) + chr(97 + i % 26)
        if i % 4 == 0:
            out.append(pre.replace(b"MS181101ab", f"MS1811{i % 100:02d}{letters}".encode()))
        else:
            out.append(json.dumps({**ret, "superevent_id": f"S2411{i % 100:02d}{letters}"}).encode())
    return out


def test_kill_minus_9_of_the_service_loses_and_duplicates_nothing(tmp_path) -> None:
    rng = random.Random(13)
    db = str(tmp_path / "k.sqlite")
    port = _free_port()
    alerts = _alerts(36)
    accepted: dict[str, bytes] = {}
    kills = 0
    i = 0
    for _ in range(3):
        proc = _start(port, db)
        stop_after = rng.randint(4, 9)
        sent = 0
        try:
            while sent < stop_after and i < len(alerts):
                body = alerts[i]
                status = _post(port, body)
                assert status == 202, status
                accepted[hashlib.sha256(body).hexdigest()] = body
                i += 1
                sent += 1
                if i % 4 == 0:  # a redelivery of an accepted alert: stored once
                    assert _post(port, alerts[i - 1]) == 202
        finally:
            time.sleep(rng.uniform(0.0, 0.5))  # sometimes mid-processing
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
    proc = _start(port, db)  # drains what was pending
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 180:
            con = sqlite3.connect(db)
            pending = con.execute("SELECT COUNT(*) FROM raw_messages WHERE status = 'pending'").fetchone()[0]
            con.close()
            if pending == 0:
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT content_hash, status FROM raw_messages").fetchall()
    hashes = [h for h, _ in rows]
    assert sorted(hashes) == sorted(accepted), "an accepted alert is missing or an extra one is stored"
    assert {s for _, s in rows} == {"processed"}, rows
    per_event = con.execute("SELECT superevent_id, COUNT(*) FROM alerts GROUP BY superevent_id").fetchall()
    assert len(per_event) == len(accepted) and all(n == 1 for _, n in per_event)
    assert con.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0
    con.close()
    assert kills == 3
