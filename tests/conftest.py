"""Shared fixtures: real data from ../shared/data, no outside network."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


MISSING_PREFIX = "MISSING-"
"""Name prefix of the placeholder :func:`shared_files` returns for absent data."""


def _missing(what: Path) -> None:
    """Fail under ``CI=true``, skip otherwise: ``what`` under ../shared/data is absent."""
    if IN_CI:
        pytest.fail(f"{what} is missing: under CI=true the shared data must be present "
                    f"(lay ../shared/data beside the project root)", pytrace=False)
    pytest.skip(f"{what} not present (../shared/data is beside the project root on developer machines)")


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data; skip (or fail under CI=true) when absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        _missing(p)
    return p


def shared_files(folder: str, pattern: str = "*") -> list[Path]:
    """Files of a shared folder, for parametrisation.

    When the folder is absent or holds no match, one placeholder path named
    ``MISSING-<pattern>`` is returned instead of an empty list, so that the
    parametrised test is still collected and :func:`pytest_runtest_setup`
    skips it (or fails it under ``CI=true``) with the reason, rather than
    pytest silently skipping an empty parameter set.
    """
    d = SHARED / folder
    found = sorted(d.glob(pattern)) if d.is_dir() else []
    return found or [d / f"{MISSING_PREFIX}{pattern}"]


def _absent_shared_params(item: pytest.Item) -> list[Path]:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return []
    return [v for v in callspec.params.values()
            if isinstance(v, Path) and v.is_relative_to(SHARED) and not v.exists()]


def pytest_report_header(config: pytest.Config) -> str:
    state = "present" if SHARED.is_dir() else "ABSENT"
    return f"shared data: {SHARED} ({state}; CI={'true' if IN_CI else 'false'})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The ``shared_data`` marker, and parameters that are shared files.

    A test marked ``shared_data`` (or parametrised with a path under
    ../shared/data) is skipped when the data is absent on a developer
    machine and fails under ``CI=true``, before any fixture starts.
    """
    absent = _absent_shared_params(item)
    if absent:
        _missing(absent[0])
    if item.get_closest_marker("shared_data") is not None and not SHARED.is_dir():
        _missing(SHARED)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests may talk to 127.0.0.1 only; anything else is a test bug."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if not _is_loopback(str(host)):
                raise OSError(f"outside network blocked in tests: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def sim_bytes() -> bytes:
    """A simulated BAYESTAR-like multi-order sky map (bytes)."""
    from gwfollow.skymaps.simulate import simulated_skymap_bytes

    return simulated_skymap_bytes(seed=3, ra_deg=120.0, dec_deg=30.0, size_deg=2.0)


@pytest.fixture(scope="session")
def sim_path(tmp_path_factory: pytest.TempPathFactory, sim_bytes: bytes) -> Path:
    p = tmp_path_factory.mktemp("sim") / "sim.multiorder.fits"
    p.write_bytes(sim_bytes)
    return p


@pytest.fixture(scope="session")
def kafka_broker():
    """A real Kafka-protocol broker (tansu) on a free loopback port."""
    from .kafka_broker import KafkaBroker

    with KafkaBroker() as broker:
        yield broker


async def settle(store, n: int, timeout: float = 120.0) -> None:
    """Wait until ``n`` raw messages are no longer pending (processed, ignored or dead).

    ``timeout`` only guards against a hang (it is not a speed check): generous,
    because a loaded 2-core machine can take tens of seconds per alert.
    """
    import asyncio
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if store.query("SELECT COUNT(*) FROM raw_messages WHERE status != 'pending'")[0][0] >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(store.counts())
