"""Helpers shared by the commands: parsing durations and levels, printing."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0, "day": 86400.0, "w": 604800.0}
_DUR = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def duration_seconds(text: str) -> float:
    """Parse ``1d``, ``3h``, ``90min``, ``3600s`` or ``3600`` into seconds."""
    m = _DUR.match(text.lower())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise argparse.ArgumentTypeError(
            f"cannot read duration {text!r}; use e.g. 1d, 6h, 30min or 3600s"
        )
    value = float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1.0)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be positive")
    return value


def level(text: str) -> float:
    """Parse a credible level: ``0.9`` or ``90%``."""
    t = text.strip()
    try:
        v = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read level {text!r}; use e.g. 0.9 or 90%") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"level {text!r} is not in (0, 1]")
    return v


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
