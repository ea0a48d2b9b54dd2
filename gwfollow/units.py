"""Reading quantities people type (durations, credible levels) at the public boundary.

Ground floor: used by the command line and the HTTP API alike, imports nothing of gwfollow.
Each function raises :class:`ValueError` with a message that says what to type instead.
"""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0,
          "day": 86400.0, "w": 604800.0}
_DUR = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_duration_s(text: str) -> float:
    """Seconds in ``1d``, ``3h``, ``90min``, ``3600s`` or ``3600``.

    >>> parse_duration_s("1.5h")
    5400.0
    """
    m = _DUR.match(text.lower())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise ValueError(f"cannot read duration {text!r}; use e.g. 1d, 6h, 30min or 3600s")
    value = float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1.0)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"duration {text!r} must be a positive, finite time")
    return value


def parse_level(text: str) -> float:
    """A credible level from ``0.9`` or ``90%``.

    >>> parse_level("90%")
    0.9
    """
    t = text.strip()
    try:
        v = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"cannot read level {text!r}; use e.g. 0.9 or 90%") from None
    if not 0.0 < v <= 1.0:
        raise ValueError(f"level {text!r} is not in (0, 1]")
    return v
