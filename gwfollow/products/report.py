"""Products as files: ranked tables (JSON, CSV, VOTable), event reports, sky plots.

Tables keep their units (VOTable ``unit`` attributes open in TOPCAT);
provenance (sky-map sha256, levels, catalogue name and version, gwfollow
version) travels in the table metadata / VOTable INFO elements / JSON.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

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


def table_bytes(table: Any, fmt: str, provenance: dict[str, Any] | None = None) -> bytes:
    """Serialise an astropy Table as JSON, CSV or VOTable bytes.

    VOTables are written by :func:`gwfollow.products.votable.votable_bytes`
    (UCDs, units, descriptions, COOSYS/TIMESYS, provenance PARAMs/INFOs);
    ``provenance`` adds keys (alert id and type) to the table's own.  In CSV
    an array column (``s_region``) is written as space-separated numbers.
    """
    if fmt == "json":
        cols = table.colnames
        rows = [{c: _jsonable(table[c][i].value if hasattr(table[c][i], "value") else table[c][i]) for c in cols}
                for i in range(len(table))]
        units = {c: str(table[c].unit) for c in cols if getattr(table[c], "unit", None) is not None}
        meta = {k: _jsonable(v) for k, v in {**table.meta, **(provenance or {})}.items()}
        return (json.dumps({"columns": cols, "units": units, "provenance": meta, "rows": rows}, indent=1) + "\n").encode()
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


def _html_table(rows: list[dict[str, Any]], cols: list[str], limit: int = 20) -> str:

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows[:limit]:
        cells = []
        for c in cols:
            v = r.get(c)
            if isinstance(v, float):
                v = f"{v:.4g}"
            cells.append(f"<td>{html.escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def event_report_html(summary: dict[str, Any], galaxies: dict[str, list[dict[str, Any]]] | None = None,
                      image: str | None = "sky.png") -> str:
    """A readable one-page HTML report of an event (``summary`` as in replay)."""

    sid = html.escape(summary["superevent_id"])
    state = "RETRACTED" if summary.get("retracted") else summary.get("state", "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{sid}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}.retracted{color:#b00}</style></head><body>",
             f"<h1>{sid} <small class='{'retracted' if summary.get('retracted') else ''}'>{html.escape(state)}</small></h1>"]
    if summary.get("retracted"):
        parts.append("<p class='retracted'>This event was retracted: its products are withdrawn.</p>")
    facts = summary.get("facts") or {}
    if facts:
        parts.append("<h2>Facts</h2><ul>" + "".join(f"<li>{html.escape(ln)}</li>" for ln in facts_lines(facts))
                     + "</ul>")
    if summary.get("changes"):
        parts.append("<h2>What changed between revisions</h2>")
        for ch in summary["changes"]:
            lines = change_lines(ch)
            parts.append(f"<h3>{html.escape(lines[0])}</h3><ul>"
                         + "".join(f"<li>{html.escape(ln.strip())}</li>" for ln in lines[1:]) + "</ul>")
    areas = summary.get("areas_deg2") or {}
    probs = summary.get("probabilities") or {}
    if areas:
        parts.append("<h2>Credible regions (latest sky map)</h2>")
        parts.append(_html_table([{"level": k, "area_deg2": v, "probability": probs.get(k)} for k, v in areas.items()],
                                 ["level", "area_deg2", "probability"]))
    if image:
        parts.append(f"<p><img src='{html.escape(image)}' alt='sky map' style='max-width:100%'></p>")
    parts.append("<h2>Alerts</h2>")
    parts.append(_html_table(summary.get("alerts", []), ["alert_type", "time_created", "kind", "acted", "note"], 100))
    parts.append("<h2>Sky-map versions</h2>")
    parts.append(_html_table(summary.get("skymap_versions", []),
                             ["alert_type", "time_created", "role", "object_id", "creator", "cells", "sha256"], 100))
    for name, rows in (galaxies or {}).items():
        parts.append(f"<h2>Top galaxies: {html.escape(name)}</h2>")
        parts.append(_html_table(rows, ["rank", "id", "ra", "dec", "dist_mpc", "probdensity_3d", "score", "cumscore"]))
    prov = summary.get("provenance", {})
    parts.append(f"<p><small>gwfollow {html.escape(str(prov.get('gwfollow', '')))}; levels "
                 f"{html.escape(str(prov.get('levels', '')))}, boundary {html.escape(str(prov.get('boundary', '')))}"
                 f"; sky map {html.escape(str(summary.get('latest_skymap') or ''))}</small></p></body></html>")
    return "\n".join(parts)


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
