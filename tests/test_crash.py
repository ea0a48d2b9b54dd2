"""A real crash: ``kill -9`` of ``gwfollow serve`` while alerts are pushed over HTTP.

Every alert the service answered 202 for was durable at that moment: after
the restart each is stored exactly once and processed; alerts that were not
accepted (the connection died) are sent again, as a sender would.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gwfollow.service.auth import token_digest
from gwfollow.store import Store

from .conftest import shared_files
from .kafka_broker import free_port

ALERTS = [p for p in shared_files("alerts", "*.json")]
TOKEN = "crash-test-writer"
GUARD = 180.0  # seconds before a wait counts as a hang (a loaded machine is slow, not stuck)

pytestmark = pytest.mark.shared_data


def _serve(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gwfollow.cli.main", "serve", "--config", str(cfg)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("service did not come up: " + log.read_text()[-3000:])


def _post(base: str, body: bytes) -> int | None:
    """The HTTP status, or None when the connection failed (the service is dead)."""
    req = urllib.request.Request(f"{base}/api/v1/alerts", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_sigkill_mid_stream_keeps_every_accepted_alert_once(tmp_path) -> None:
    db = tmp_path / "crash.sqlite"
    port = free_port()
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[store]\npath = "{db}"\n[service]\nport = {port}\nworkers = 1\nqueue_size = 2\n'
                   f'write_tokens_sha256 = ["{token_digest(TOKEN)}"]\n')
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    bodies = [p.read_bytes() for p in ALERTS]
    proc = _serve(cfg, log)
    try:
        _wait_healthy(base, proc, log)
        accepted, unsent = [], []
        for i, body in enumerate(bodies):
            if len(accepted) == 3:
                # Mid-stream: three accepted, some of them still being processed.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
            status = _post(base, body)
            if status == 202:
                accepted.append(body)
            else:
                assert status is None, status
                unsent.append(body)
        assert len(accepted) == 3 and len(unsent) == len(bodies) - 3
        pending = Store(db)
        assert pending.counts()["raw_messages"] == 3  # durable before the 202, whatever the kill interrupted
        pending.close()

        proc = _serve(cfg, log)
        _wait_healthy(base, proc, log)
        for body in accepted + unsent:  # the sender retries what it could not deliver, and more
            assert _post(base, body) == 202
        deadline = time.monotonic() + GUARD
        while True:
            s = Store(db)
            done = s.counts()["raw_messages"] == len(bodies) and not s.pending_raw_ids()
            s.close()
            if done:
                break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
    s = Store(db)
    rows = s.query("SELECT content_hash, status, deliveries FROM raw_messages")
    expected = {hashlib.sha256(b).hexdigest() for b in bodies}
    assert sorted(r[0] for r in rows) == sorted(expected)  # each stored exactly once
    assert all(r[1] in ("processed", "ignored", "dead") for r in rows)
    by_hash = {r[0]: r[2] for r in rows}
    assert all(by_hash[hashlib.sha256(b).hexdigest()] == 2 for b in accepted)  # the sender's resend
    alerts = s.query("SELECT superevent_id, alert_type, time_created, content_hash FROM alerts")
    assert len(alerts) == len(set(alerts))
    # every alert is recorded, the retraction of an event never seen before (S241126dm) too
    assert len(alerts) == len(bodies)
    s.close()
