"""Products as files: ranked tables (JSON, CSV, VOTable), event reports, sky plots.

Tables keep their units (VOTable ``unit`` attributes open in TOPCAT);
provenance (sky-map sha256, levels, catalogue name and version, gwfollow
version) travels in the table metadata / VOTable INFO elements / JSON.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from astropy.table import Table

from gwfollow.errors import ReportError
from gwfollow.products.facts import change_lines, facts_lines
from gwfollow.products.skyplot import sky_plot  # noqa: F401  (the sky plot has its own module)
from gwfollow.products.votable import observability_table, votable_bytes

FORMATS = ("json", "csv", "votable")


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
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (np.str_, bytes)):
        return str(v)
    return v


def _json_column(col: Any) -> list[Any]:
    """A table column as JSON-ready Python values (what :func:`_jsonable` gives cell by cell),
    converted as one array: NaN and infinities become None."""
    if np.any(getattr(col, "mask", False)):  # masked cells: the cell-by-cell path
        return [_jsonable(x.value if hasattr(x, "value") else x) for x in col]
    v = np.asarray(col)
    if v.ndim == 1 and v.dtype.kind in "biu":
        return v.tolist()
    if v.ndim == 1 and v.dtype.kind == "f":
        out = v.tolist()
        bad = ~np.isfinite(v)
        if bad.any():
            for i in np.flatnonzero(bad).tolist():
                out[i] = None
        return out
    if v.ndim == 1 and v.dtype.kind == "U":
        return v.tolist()
    return [_jsonable(x) for x in v]


def table_bytes(table: Any, fmt: str, provenance: dict[str, Any] | None = None) -> bytes:
    """Serialise an astropy Table as JSON, CSV or VOTable bytes.

    VOTables are written by :func:`gwfollow.products.votable.votable_bytes`
    (UCDs, units, descriptions, COOSYS/TIMESYS, provenance PARAMs/INFOs);
    ``provenance`` adds keys (alert id and type) to the table's own.  In CSV
    an array column (``s_region``) is written as space-separated numbers.
    """
    if fmt == "json":
        cols = table.colnames
        values = [_json_column(table[c]) for c in cols]
        rows = [dict(zip(cols, r)) for r in zip(*values)] if cols else [{} for _ in range(len(table))]
        units = {c: str(table[c].unit) for c in cols if getattr(table[c], "unit", None) is not None}
        meta = {k: _jsonable(v) for k, v in {**table.meta, **(provenance or {})}.items()}
        return (json.dumps({"columns": cols, "units": units, "provenance": meta, "rows": rows}) + "\n").encode()
    if fmt == "csv":
        t = table.copy(copy_data=False)
        for c in t.colnames:
            if t[c].ndim > 1:
                t[c] = [" ".join(f"{x:.7f}" for x in np.asarray(v, dtype=float)) for v in np.asarray(t[c])]
        s = io.StringIO()
        t.write(s, format="ascii.csv", overwrite=True)
        return s.getvalue().encode()
    if fmt == "votable":
        return votable_bytes(table, provenance=provenance)
    raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def write_table(table: Any, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write a ranked table; the format from ``fmt`` or the extension."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(table_bytes(table, format_for(p, fmt)))
    return p


def _cell(v: Any) -> str:
    """A table cell's text: floats to 4 significant digits, None empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("gwfollow.products", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["cell"] = _cell
    return env


def event_report_html(summary: dict[str, Any], galaxies: dict[str, list[dict[str, Any]]] | None = None,
                      image: str | None = "sky.png") -> str:
    """A readable one-page HTML report of an event (``summary`` as in replay).

    Rendered by Jinja2 with autoescape (``templates/report.html``): every
    value an alert carried is escaped, whatever it holds.
    """
    facts = summary.get("facts") or {}
    areas = summary.get("areas_deg2") or {}
    probs = summary.get("probabilities") or {}
    return _templates().get_template("report.html").render(
        sid=summary["superevent_id"],
        retracted=bool(summary.get("retracted")),
        state="RETRACTED" if summary.get("retracted") else summary.get("state", ""),
        areas=[{"level": k, "area_deg2": v, "probability": probs.get(k)} for k, v in areas.items()],
        image=image,
        alerts=summary.get("alerts", []),
        skymap_versions=summary.get("skymap_versions", []),
        galaxies=galaxies or {},
        prov=summary.get("provenance", {}),
        latest_skymap=summary.get("latest_skymap") or "",
        facts=facts_lines(facts) if facts else [],
        changes=[change_lines(ch) for ch in summary.get("changes") or []],
    )


def convert_table(json_bytes: bytes, fmt: str, limit: int | None = None, site: str | None = None,
                  provenance: dict[str, Any] | None = None) -> bytes:
    """A stored target table (JSON) in ``fmt`` (json, csv, votable): the first ``limit``
    rows, and with ``site`` only that site's observing windows; ``provenance``
    (alert id and type) is added to the table's own."""
    doc = json.loads(json_bytes)
    rows = doc["rows"][:limit] if limit else doc["rows"]
    if site is not None:
        drop = [c for c in doc["columns"] if c.startswith("windows_") and c != f"windows_{site}"]
        doc["columns"] = [c for c in doc["columns"] if c not in drop]
        rows = [{k: v for k, v in r.items() if k not in drop} for r in rows]
    elif fmt == "json" and limit is None and not provenance:
        return json_bytes
    if fmt == "json":
        return json.dumps({**doc, "provenance": {**doc.get("provenance", {}), **(provenance or {})},
                           "rows": rows}, indent=1).encode()
    cols = doc["columns"]
    t = Table(rows=[[r[c] for c in cols] for r in rows], names=cols) if rows else Table(names=cols)
    for c, unit in doc.get("units", {}).items():
        if c in t.colnames:
            t[c].unit = unit
    t.meta.update(doc.get("provenance", {}))
    return table_bytes(t, fmt, provenance)


def convert_observability(json_bytes: bytes, fmt: str, provenance: dict[str, Any] | None = None) -> bytes:
    """A stored observability summary (JSON) as a table of its slices in ``fmt``."""
    if fmt == "json":
        return json_bytes
    return table_bytes(observability_table(json.loads(json_bytes)), fmt, provenance)
