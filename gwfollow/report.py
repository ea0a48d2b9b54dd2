"""Products as files: ranked tables (JSON, CSV, VOTable), event reports, sky plots.

Tables keep their units (VOTable ``unit`` attributes open in TOPCAT);
provenance (sky-map sha256, levels, catalogue name and version, gwfollow
version) travels in the table metadata / VOTable INFO elements / JSON.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GwfollowError

FORMATS = ("json", "csv", "votable")


class ReportError(GwfollowError, ValueError):
    """A report cannot be written (bad format, bad path)."""


def format_for(path: str | os.PathLike[str] | None, fmt: str | None) -> str:
    """The table format from ``--format`` or the file extension."""
    if fmt:
        if fmt not in FORMATS:
            raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    if path is None:
        return "json"
    ext = Path(path).suffix.lower()
    guess = {".json": "json", ".csv": "csv", ".xml": "votable", ".vot": "votable", ".votable": "votable"}.get(ext)
    if guess is None:
        raise ReportError(f"cannot tell the table format of {str(path)!r}", hint="use --format json|csv|votable")
    return guess


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (np.str_, bytes)):
        return str(v)
    return v


def table_bytes(table: Any, fmt: str) -> bytes:
    """Serialise an astropy Table as JSON, CSV or VOTable bytes."""
    if fmt == "json":
        cols = table.colnames
        rows = [{c: _jsonable(table[c][i].value if hasattr(table[c][i], "value") else table[c][i]) for c in cols}
                for i in range(len(table))]
        units = {c: str(table[c].unit) for c in cols if getattr(table[c], "unit", None) is not None}
        meta = {k: _jsonable(v) for k, v in table.meta.items()}
        return (json.dumps({"columns": cols, "units": units, "provenance": meta, "rows": rows}, indent=1) + "\n").encode()
    buf = io.BytesIO()
    if fmt == "csv":
        s = io.StringIO()
        table.write(s, format="ascii.csv", overwrite=True)
        return s.getvalue().encode()
    if fmt == "votable":
        from astropy.io.votable import from_table

        vt = from_table(table)
        res = vt.resources[0]
        from astropy.io.votable.tree import Info

        for k, v in table.meta.items():
            res.infos.append(Info(name=str(k), value=str(v)))
        vt.to_xml(buf)
        return buf.getvalue()
    raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def write_table(table: Any, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write a ranked table; the format from ``fmt`` or the extension."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(table_bytes(table, format_for(p, fmt)))
    return p
