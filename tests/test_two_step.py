"""The two processing steps of an alert, with real kills between them.

``gwfollow serve`` stores the alert, its sky map, MOCs and ranked targets
first; observability and the observation plan come from a second step in
their own (niced) worker process, recorded as a pending row in the store.
The second-step worker is held with ``SIGSTOP`` so that the state between
the steps lasts as long as the test needs, then:

* REST answers ``503`` with ``Retry-After`` (not ``404``) for the plan and
  the observability, and the event says ``processing.state = pending``;
* ``kill -9`` of that worker: the step is retried on a fresh worker and its
  products are stored;
* ``kill -9`` of the whole service: the row is still pending in the store,
  and the next start does the step.
"""

from __future__ import annotations

import json
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

from .conftest import shared_path
from .kafka_broker import free_port

TOKEN = "two-step-writer"
GUARD = 180.0  # seconds before a wait counts as a hang (a loaded machine is slow, not stuck)
NICE = 13  # the second step's niceness: how the test tells its worker from the others

pytestmark = [pytest.mark.shared_data,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def _serve(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gwfollow.cli.main", "serve", "--config", str(cfg)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _wait(what: str, fn, proc: subprocess.Popen, log: Path):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            got = fn()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: " + log.read_text()[-3000:])


def _second_step_worker(pid: int) -> int | None:
    """The child of ``pid`` running at niceness NICE (field 19 of /proc/PID/stat)."""
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except FileNotFoundError:
        return None
    for k in kids:
        try:
            stat = open(f"/proc/{k}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        if int(stat[16]) == NICE and stat[0] != "Z":
            return int(k)
    return None


def _post(base: str, body: bytes) -> int:
    req = urllib.request.Request(f"{base}/api/v1/alerts", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status


@pytest.fixture
def service(tmp_path):  # type: ignore[no-untyped-def]
    db = tmp_path / "two.sqlite"
    port = free_port()
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[store]\npath = "{db}"\n[service]\nport = {port}\nworkers = 1\ndeferred_workers = 1\n'
                   f'deferred_nice = {NICE}\ncrash_retries = 2\nwrite_tokens_sha256 = ["{token_digest(TOKEN)}"]\n')
    log = tmp_path / "serve.log"
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        p = _serve(cfg, log)
        procs.append(p)
        _wait("health", lambda: _get(f"http://127.0.0.1:{port}/api/v1/health")[0] == 200, p, log)
        return p

    yield start, f"http://127.0.0.1:{port}", db, log
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


def _first_step_then_hold(start, base: str, log: Path) -> tuple[subprocess.Popen, int, str]:  # type: ignore[no-untyped-def]
    """Start the service, hold its second-step worker, push an alert, wait for its first step."""
    proc = start()
    worker = _wait("the second-step worker", lambda: _second_step_worker(proc.pid), proc, log)
    os.kill(worker, signal.SIGSTOP)
    body = shared_path("alerts", "S241102br-preliminary.json").read_bytes()
    assert _post(base, body) == 202
    ev = f"{base}/api/v1/events/S241102br"
    _wait("the first step", lambda: _get(f"{ev}/targets?kind=galaxies")[0] == 200, proc, log)
    return proc, worker, ev


def test_pending_second_step_answers_503_and_survives_a_killed_worker(service) -> None:
    start, base, db, log = service
    proc, worker, ev = _first_step_then_hold(start, base, log)
    # First-step products are there...
    assert _get(f"{ev}/moc?level=0.9")[0] == 200
    assert _get(f"{ev}/targets?kind=fields")[0] == 200
    # ... the second step's are pending: 503 with Retry-After, not 404.
    for path in ("plan", "observability"):
        status, headers, body = _get(f"{ev}/{path}")
        assert status == 503, (path, status, body)
        assert int(headers["Retry-After"]) > 0
        problem = json.loads(body)
        assert problem["code"] == "products-pending" and problem["processing"]["state"] == "pending"
    status, _, body = _get(ev)
    assert status == 200 and json.loads(body)["processing"]["state"] == "pending"
    # A real kill of the worker that holds the second step: a fresh one does it.
    os.kill(worker, signal.SIGKILL)
    _wait("the plan", lambda: _get(f"{ev}/plan")[0] == 200, proc, log)
    assert _get(f"{ev}/observability")[0] == 200
    event = json.loads(_get(ev)[2])
    assert event["processing"]["state"] == "complete"
    (step,) = event["processing"]["second_steps"]
    assert step["state"] == "done"
    assert "a worker process died; trying the message again" in log.read_text()  # the killed try
    s = Store(db)
    kinds = [r[0] for r in s.query("SELECT kind FROM products")]
    s.close()
    assert kinds.count("plan") == 1 and kinds.count("observability") == 1  # stored once


def test_second_step_pending_at_a_service_kill_is_done_after_restart(service) -> None:
    start, base, db, log = service
    proc, _, ev = _first_step_then_hold(start, base, log)
    assert _get(f"{ev}/plan")[0] == 503
    os.killpg(proc.pid, signal.SIGKILL)  # the service and its workers, between the two steps
    proc.wait(30)
    s = Store(db)
    (row,) = s.query("SELECT state FROM deferred_work")
    assert row[0] == "pending"  # durable: the first step's transaction queued it
    assert not [r for r in s.query("SELECT kind FROM products") if r[0] in ("plan", "observability")]
    s.close()
    proc = start()
    _wait("the plan after the restart", lambda: _get(f"{ev}/plan")[0] == 200, proc, log)
    assert json.loads(_get(ev)[2])["processing"]["state"] == "complete"
    s = Store(db)
    assert [r[0] for r in s.query("SELECT state FROM deferred_work")] == ["done"]
    kinds = [r[0] for r in s.query("SELECT kind FROM products")]
    s.close()
    assert kinds.count("plan") == 1 and kinds.count("observability") == 1
