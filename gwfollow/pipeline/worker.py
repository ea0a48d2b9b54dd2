"""What a worker process does around each message: die with its parent, give memory back.

* :func:`die_with_parent` (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``): a
  worker is killed by the kernel when the process that started it dies, even
  by ``kill -9``; otherwise orphaned workers (hundreds of MiB each) outlive
  the service.
* :func:`run_and_release`: after a message, heap memory freed by Python
  is handed back to the operating system (glibc ``malloc_trim``), so a worker
  that once inflated a large sky map does not keep its peak for ever.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


@functools.cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); True if set."""
    libc = _libc()
    if libc is None:
        return False
    return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def release_memory() -> bool:
    """Return free heap pages to the operating system (glibc); True if any were released."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    return bool(trim(0))


def run_and_release(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (a message's processing), then :func:`release_memory`.

    The trim costs about a millisecond against the hundreds a message takes,
    so it runs after every message (a large inflated sky map can come from a
    small message, so the message size is no guide).
    """
    try:
        return fn(*args)
    finally:
        release_memory()
