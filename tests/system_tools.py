"""Debian tools the tests drive (STILTS ``votlint``, headless Chromium), installed when missing.

:func:`ensure_tool` installs a Debian package with ``apt-get`` when its
program is not on ``PATH`` (root only, one installer at a time across
pytest-xdist workers); :func:`require_tool` turns a failure into a skip
with the reason on developer machines and into a failure under
``CI=true``, where every test must run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


class ToolUnavailable(RuntimeError):
    """A tool is missing and cannot be installed here."""


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    path = Path(tempfile.gettempdir()) / f"gwfollow-{name}.lock"
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_tool(program: str, package: str, timeout: float = 1800) -> str:
    """The path of ``program``, installing Debian ``package`` first when it is missing.

    Runs ``apt-get update`` then ``apt-get install -y --no-install-recommends
    PACKAGE`` (non-interactive, as root); the output goes to
    ``$TMPDIR/gwfollow-apt-PACKAGE.log``.

    Raises
    ------
    ToolUnavailable
        Not root, no ``apt-get``, or the installation failed.
    """
    found = shutil.which(program)
    if found:
        return found
    if os.geteuid() != 0:
        raise ToolUnavailable(f"{program} is missing and installing it needs root (sudo apt-get install {package})")
    if not shutil.which("apt-get"):
        raise ToolUnavailable(f"{program} is missing and there is no apt-get here (install {package})")
    log = Path(tempfile.gettempdir()) / f"gwfollow-apt-{package}.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _lock("apt"), open(log, "ab") as out:
        found = shutil.which(program)
        if found:
            return found
        for cmd in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]):
            try:
                subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=True)
            except (subprocess.SubprocessError, OSError) as exc:
                raise ToolUnavailable(f"{' '.join(cmd)} failed (log: {log}): {exc}") from exc
    found = shutil.which(program)
    if not found:
        raise ToolUnavailable(f"{package} installed but {program} is not on PATH (log: {log})")
    return found


def require_tool(program: str, package: str) -> str:
    """:func:`ensure_tool`, skipping the test with the reason (failing under ``CI=true``)."""
    try:
        return ensure_tool(program, package)
    except ToolUnavailable as exc:
        if IN_CI:
            pytest.fail(f"{exc}; under CI=true the test set-up must be able to install it")
        pytest.skip(str(exc))
