"""Helpers shared by the commands: parsing durations and levels, printing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gwfollow.units import parse_duration_s, parse_level


def duration_seconds(text: str) -> float:
    """Parse ``1d``, ``3h``, ``90min``, ``3600s`` or ``3600`` into seconds (for argparse)."""
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def level(text: str) -> float:
    """Parse a credible level: ``0.9`` or ``90%`` (for argparse)."""
    try:
        return parse_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
