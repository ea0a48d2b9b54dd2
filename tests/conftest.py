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


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data; skip (or fail under CI=true) when absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        if IN_CI:
            pytest.fail(f"{p} is missing: under CI=true the shared data must be present")
        pytest.skip(f"{p} not present (../shared/data is beside the project root on developer machines)")
    return p


def shared_files(folder: str, pattern: str = "*") -> list[Path]:
    """Files of a shared folder, for parametrisation (empty when absent)."""
    d = SHARED / folder
    return sorted(d.glob(pattern)) if d.is_dir() else []


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
