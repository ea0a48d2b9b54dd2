"""A real crash: ``kill -9`` of ``gwfollow serve`` while alerts are pushed over HTTP, a few times.

One test (it replaces ``test_crash.py`` and the earlier form of this file):

1. the real alerts of ``../shared/data/alerts`` (sky maps: some in the middle of
   processing) are POSTed and the whole process group is SIGKILLed after three
   202 answers; every later POST fails (the service is dead) and the three
   accepted ones are already in the store;
2. two more rounds restart the service, resend what the sender could not be
   sure of (every real alert again), POST cheap synthetic alerts with a
   redelivery now and then, and SIGKILL the main process alone (its workers
   must die with it) after a random number of 202 answers;
3. a last start drains what was pending.

Then every alert answered 202 is stored exactly once (a resend counted as a
second delivery), processed, with no dead letter, and SQLite is intact.

A second test checks that ``gwfollow deadletters requeue`` reaches a running
service without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gwfollow.service.auth import token_digest

from .conftest import shared_files, shared_path
from .kafka_broker import free_port

ALERTS = shared_files("alerts", "*.json")
TOKEN = "kill9-writer"
GUARD = 180.0  # seconds before a wait counts as a hang (a loaded machine is slow, not stuck)

pytestmark = [pytest.mark.shared_data,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL semantics of Linux")]


def _config(tmp_path: Path, port: int, **service: object) -> tuple[Path, Path]:
    db = tmp_path / "k.sqlite"
    cfg = tmp_path / "site.toml"
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in service.items())
    # No catalogue and no plan: these tests are about intake and crashes (starts and drains are quicker).
    cfg.write_text(f'[store]\npath = "{db}"\n[targets]\ncatalogs = []\n[plan]\nenabled = false\n'
                   f'[service]\nport = {port}\nworkers = 1\nqueue_size = 2\n'
                   f'write_tokens_sha256 = ["{token_digest(TOKEN)}"]\n{extra}')
    return cfg, db


def _serve(cfg: Path, base: str, log: Path) -> subprocess.Popen:
    """Start ``gwfollow serve`` in a session of its own and wait until it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "gwfollow.cli.main", "serve", "--config", str(cfg)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    _stop(proc)
    raise AssertionError("service did not come up: " + log.read_text()[-3000:])


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


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


def _synthetic(n: int) -> list[bytes]:
    """Cheap retractions of unseen events and, one in four, a preliminary with a sky map."""
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


def _wait_drained(db: Path, n_raw: int, log: Path) -> None:
    deadline = time.monotonic() + GUARD
    while True:
        con = sqlite3.connect(db)
        total, pending = con.execute("SELECT COUNT(*), SUM(status = 'pending') FROM raw_messages").fetchone()
        con.close()
        if total == n_raw and not pending:
            return
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def test_kill_minus_9_of_the_service_loses_and_duplicates_nothing(tmp_path) -> None:
    rng = random.Random(13)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg, db = _config(tmp_path, port)
    log = tmp_path / "serve.log"
    real = [p.read_bytes() for p in ALERTS]
    synthetic = _synthetic(24)
    sent: dict[str, bytes] = {}  # every body answered 202, by content hash
    resent: set[str] = set()  # bodies answered 202 twice (a sender's retry, a redelivery)
    kills = 0

    # 1. Real alerts; the process group is killed after three 202 answers.
    proc = _serve(cfg, base, log)
    try:
        accepted, unsent = [], []
        for body in real:
            if len(accepted) == 3 and proc.poll() is None:
                # Mid-stream: three accepted, some of them still being processed.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                kills += 1
            status = _post(base, body)
            if status == 202:
                accepted.append(body)
            else:
                assert status is None, status
                unsent.append(body)
        assert len(accepted) == 3 and len(unsent) == len(real) - 3
    finally:
        _stop(proc)
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM raw_messages").fetchone()[0] == 3  # durable before the 202
    con.close()
    sent.update((hashlib.sha256(b).hexdigest(), b) for b in accepted)

    # 2. Restarts: the sender retries everything, synthetic alerts follow; the main process is killed alone.
    i = 0
    for round_ in range(2):
        proc = _serve(cfg, base, log)
        try:
            if round_ == 0:
                for body in accepted + unsent:  # the sender retries what it could not be sure of
                    assert _post(base, body) == 202
                    h = hashlib.sha256(body).hexdigest()
                    if h in sent:
                        resent.add(h)
                    sent[h] = body
            stop_after = rng.randint(4, 9)
            n = 0
            while n < stop_after and i < len(synthetic):
                assert _post(base, synthetic[i]) == 202
                sent[hashlib.sha256(synthetic[i]).hexdigest()] = synthetic[i]
                i += 1
                n += 1
                if i % 4 == 0:  # a redelivery of an accepted alert: stored once
                    assert _post(base, synthetic[i - 1]) == 202
                    resent.add(hashlib.sha256(synthetic[i - 1]).hexdigest())
            time.sleep(rng.uniform(0.0, 0.5))  # sometimes mid-processing
            os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers must follow it
            proc.wait(30)
            kills += 1
        finally:
            _stop(proc)

    # 3. A last start drains what was pending.
    proc = _serve(cfg, base, log)
    try:
        _wait_drained(db, len(sent), log)
    finally:
        _stop(proc)

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT content_hash, status, deliveries FROM raw_messages").fetchall()
    assert sorted(h for h, _, _ in rows) == sorted(sent), "an accepted alert is missing or an extra one is stored"
    real_hashes = {hashlib.sha256(b).hexdigest() for b in real}
    assert real_hashes <= set(sent)
    assert all(s in ("processed", "ignored", "dead") for h, s, _ in rows if h in real_hashes)
    assert all(s == "processed" for h, s, _ in rows if h not in real_hashes), rows
    assert all(d == (2 if h in resent else 1) for h, _, d in rows)  # every resend seen, none lost
    assert {hashlib.sha256(b).hexdigest() for b in accepted} <= resent
    alerts = con.execute("SELECT superevent_id, alert_type, time_created, content_hash FROM alerts").fetchall()
    assert len(alerts) == len(set(alerts))
    # every alert is recorded, the retraction of an event never seen before (S241126dm) too
    assert len(alerts) == len(sent)
    synthetic_ids = {json.loads(b)["superevent_id"] for h, b in sent.items() if h not in real_hashes}
    per_event = dict(con.execute("SELECT superevent_id, COUNT(*) FROM alerts GROUP BY superevent_id").fetchall())
    assert all(per_event[s] == 1 for s in synthetic_ids)
    assert con.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0
    con.close()
    assert kills == 3


def test_a_running_service_processes_what_the_cli_requeues(tmp_path) -> None:
    """``gwfollow deadletters requeue`` writes to the database only; the running service picks it up."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg, db = _config(tmp_path, port, requeue_poll_s=0.5)
    log = tmp_path / "serve.log"
    proc = _serve(cfg, base, log)
    try:
        # The store refuses this event's alert (as a full disk would): a dead letter.
        con = sqlite3.connect(db)
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.superevent_id = 'S241126dm' "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        con.commit()
        assert _post(base, shared_path("alerts", "S241126dm-retraction.json").read_bytes()) == 202
        deadline = time.monotonic() + GUARD
        while con.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        assert con.execute("SELECT status FROM raw_messages").fetchall() == [("dead",)]
        con.execute("DROP TRIGGER refuse")
        con.commit()

        out = subprocess.run([sys.executable, "-m", "gwfollow.cli.main", "deadletters", "requeue", "--db", str(db)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "requeued 1 message(s)" in out.stdout, out.stderr
        t0 = time.monotonic()
        while con.execute("SELECT status FROM raw_messages").fetchone()[0] != "processed":
            assert time.monotonic() - t0 < 30, "the running service did not pick up the requeued message"
            time.sleep(0.1)
        assert con.execute("SELECT superevent_id, alert_type FROM alerts").fetchall() == [("S241126dm", "RETRACTION")]
        con.close()
        assert proc.poll() is None  # no restart was needed
    finally:
        _stop(proc)
