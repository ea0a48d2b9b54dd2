"""What an event's products say, as files and summaries: ``summary.json``, ``summary.txt``, ``report.html``,
``sky.png`` and the product files of its latest sky map.

Used by ``gwfollow replay --out/--report`` and by the HTTP API alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astropy.table import Table

from gwfollow.config import Config
from gwfollow.products.facts import event_facts, revision_changes, summary_text
from gwfollow.products.report import event_report_html
from gwfollow.products.skyplot import sky_plot_png
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.store import Store
from gwfollow.targets.fields import telescope_from_config
from gwfollow.version import __version__


def event_summary(store: Store, superevent_id: str, config: Config) -> dict[str, Any]:
    """A deterministic description of an event (no wall-clock timestamps)."""
    ev = store.event(superevent_id)
    state = ev.state if ev is not None else "unknown"
    alerts = store.alerts_of(superevent_id)
    maps = store.skymaps_of(superevent_id)
    products = store.products_of(superevent_id)
    latest = store.latest_skymap(superevent_id)
    latest_products = [p for p in products if latest and p["skymap_id"] == latest["id"] and p["kind"] == "moc"]
    targets = [{"kind": p["kind"], "name": p["name"], "count": p["n_cells"]}
               for p in products if latest and p["skymap_id"] == latest["id"] and p["kind"] != "moc"]
    return {
        "superevent_id": superevent_id,
        "state": state,
        "retracted": state == "retracted",
        "alerts": [
            {"alert_type": a["alert_type"], "time_created": a["time_created"], "kind": a["kind"],
             "content_hash": a["content_hash"], "acted": bool(a["acted"]), "note": a["note"]}
            for a in alerts
        ],
        "skymap_versions": [
            {"sha256": m["sha256"], "role": m["role"], "alert_type": m["alert_type"],
             "time_created": m["time_created"], "object_id": m["meta"]["object_id"],
             "creator": m["meta"]["creator"], "cells": m["meta"]["cells"],
             "areas_deg2": m["meta"]["areas_deg2"]}
            for m in maps
        ],
        "latest_skymap": latest["sha256"] if latest else None,
        "areas_deg2": {f"{p['level']:g}": p["area_deg2"] for p in latest_products},
        "probabilities": {f"{p['level']:g}": p["probability"] for p in latest_products},
        "targets": targets,
        "products_withdrawn": bool(products) and all(p["withdrawn"] for p in products),
        **_facts_and_revisions(store, alerts, maps, products),
        "provenance": {"gwfollow": __version__, "levels": list(config.skymap.levels),
                       "boundary": config.skymap.boundary},
    }


def _facts_and_revisions(store: Store, alerts: list[dict[str, Any]], maps: list[dict[str, Any]],
                         products: list[dict[str, Any]]) -> dict[str, Any]:
    """``facts`` of the latest sky-map revision and the ``revisions`` (facts, top targets, changes)."""
    by_id = {a["id"]: a for a in alerts}
    revisions = []
    for m in (m for m in maps if m["role"] == "gw"):
        alert = by_id.get(m["alert_id"], {}).get("summary") or {}
        targets: dict[str, list[Any]] = {}
        for p in products:
            if p["skymap_id"] == m["id"] and p["kind"] in ("galaxies", "fields"):
                rows = json.loads(store.product_data(p["id"])).get("rows", [])
                if p["kind"] == "galaxies":
                    targets[f"galaxies {p['name']}"] = [r["id"] for r in rows[:10]]
                else:
                    targets[f"fields {p['name']}"] = [r["field_id"] for r in rows if r.get("selected")]
        revisions.append({"facts": event_facts(alert, m["meta"]), "targets": targets})
    latest_alert = next((a["summary"] for a in reversed(alerts) if a["acted"] and a["summary"].get("event")), None)
    facts = revisions[-1]["facts"] if revisions else event_facts(latest_alert or {})
    return {"facts": facts,
            "revisions": [{"alert_type": r["facts"]["alert_type"], "time_created": r["facts"]["time_created"],
                           "facts": r["facts"], "top_targets": r["targets"]} for r in revisions],
            "changes": revision_changes(revisions, top=10)}


@dataclass(frozen=True)
class ReportInputs:
    """What an event report is made from, read from the store (see :func:`report_inputs`).

    Attributes
    ----------
    summary : dict
        :func:`event_summary` of the event.
    galaxies : dict of str -> list of dict
        Ranked galaxies of the latest sky map, by catalogue.
    fields : list of dict
        Selected fields of the first telescope for the latest sky map.
    skymap_fits : bytes or None
        The latest sky map (None: none yet, so no plot).
    alert_type : str or None
        The type of the alert that brought it.
    """

    summary: dict[str, Any]
    galaxies: dict[str, list[dict[str, Any]]]
    fields: list[dict[str, Any]]
    skymap_fits: bytes | None
    alert_type: str | None


def report_inputs(store: Store, sid: str, config: Config) -> ReportInputs:
    """Read what the report of ``sid`` needs (store reads only: run it where the store is used)."""
    summary = event_summary(store, sid, config)
    latest = store.latest_skymap(sid)
    galaxies: dict[str, list[dict[str, Any]]] = {}
    fields: list[dict[str, Any]] = []
    if latest is None:
        return ReportInputs(summary, galaxies, fields, None, None)
    for p in store.products_of(sid):
        if p["skymap_id"] != latest["id"]:
            continue
        if p["kind"] == "galaxies":
            galaxies[p["name"]] = json.loads(store.product_data(p["id"])).get("rows", [])
        elif p["kind"] == "fields" and not fields:
            fields = [r for r in json.loads(store.product_data(p["id"]))["rows"] if r.get("selected")]
    return ReportInputs(summary, galaxies, fields, store.skymap_bytes(latest["id"]), latest["alert_type"])


def render_report(inputs: ReportInputs, config: Config, image_src: str = "sky.png") -> tuple[bytes, bytes | None]:
    """The report page (UTF-8 HTML) and its sky plot (PNG, None without a sky map), in memory.

    CPU-heavy (decodes the sky map, draws it): never on the event loop.
    ``image_src`` is where the page finds the plot.
    """
    sid = inputs.summary["superevent_id"]
    png = None
    if inputs.skymap_fits is not None:
        sm = read_skymap(inputs.skymap_fits, name=f"{sid} sky map", config=config.skymap)
        first = next(iter(inputs.galaxies.values()), [])[:20]
        targets = Table(rows=[(r["ra"], r["dec"]) for r in first], names=("ra", "dec")) if first else None
        ftab = Table(rows=[(r["ra"], r["dec"]) for r in inputs.fields], names=("ra", "dec")) if inputs.fields else None
        fov = None
        if inputs.fields and config.telescopes:
            fov = telescope_from_config(config.telescopes[0]).fov
        png = sky_plot_png(sm, levels=tuple(config.skymap.levels), targets=targets, fields=ftab, fov=fov,
                           title=f"{sid} ({inputs.alert_type})" + (" RETRACTED" if inputs.summary["retracted"] else ""))
    html = event_report_html(inputs.summary, inputs.galaxies, image_src if png is not None else None)
    return html.encode(), png


def write_event_report(store: Store, sid: str, d: Path, config: Config,
                       image_src: str | None = None) -> list[Path]:
    """``report.html`` and ``sky.png`` of an event's latest sky map.

    ``image_src`` is where the page finds the plot (default: ``sky.png`` beside it).
    """
    html, png = render_report(report_inputs(store, sid, config), config, image_src or "sky.png")
    written = []
    d.mkdir(parents=True, exist_ok=True)
    if png is not None:
        (d / "sky.png").write_bytes(png)
        written.append(d / "sky.png")
    f = d / "report.html"
    f.write_bytes(html)
    written.append(f)
    return written


def write_outputs(store: Store, out: Path, config: Config, reports: bool = False) -> list[Path]:
    """One directory per event: ``moc-<level>.fits`` (latest sky map), ``galaxies-<catalogue>.json``,
    ``summary.json``, and with ``reports`` also ``report.html`` and ``sky.png``."""
    written = []
    for ev in store.events():
        sid = ev.superevent_id
        d = out / sid
        d.mkdir(parents=True, exist_ok=True)
        summary = event_summary(store, sid, config)
        latest = store.latest_skymap(sid)
        for old in [*d.glob("moc-*.fits"), *d.glob("galaxies-*.json"), *d.glob("fields-*.json"),
                    *d.glob("plan-*.json")]:
            old.unlink()
        if latest is not None and not summary["retracted"]:
            for p in store.products_of(sid, include_withdrawn=False):
                if p["skymap_id"] != latest["id"]:
                    continue
                if p["kind"] == "moc":
                    f = d / f"moc-{p['level']:g}.fits"
                elif p["kind"] in ("galaxies", "fields", "plan"):
                    f = d / f"{p['kind']}-{p['name']}.json"
                else:
                    continue
                f.write_bytes(store.product_data(p["id"]))
                written.append(f)
        f = d / "summary.json"
        f.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        written.append(f)
        f = d / "summary.txt"
        f.write_text(summary_text(summary))
        written.append(f)
        if reports:
            written.extend(write_event_report(store, sid, d, config))
    return written
