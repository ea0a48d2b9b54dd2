"""The facts a follow-up team reads first, and what changed between sky-map revisions.

:func:`event_facts` gathers, from an alert's parsed ``event`` block (IGWN
alert schema: ``time``, ``far``, ``significant``, ``classification``,
``properties``) and the sky map's metadata, the event time, false-alarm
rate (per Hz and as "one per N years"), significance, the most probable
source class (BNS, NSBH, BBH, Terrestrial) and the probabilities of each,
HasNS / HasRemnant / HasMassGap, and the distance.

:func:`revision_changes` compares consecutive revisions (Preliminary,
Initial, Update ...) of one event: the credible areas, the distance, the
classification, and the top targets that came into or went out of the
lists.  Inputs and outputs are plain JSON-ready dicts: the store is read by
the caller (:func:`gwfollow.pipeline.replay.event_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

SECONDS_PER_YEAR = 365.25 * 86400.0
CLASSES = ("BNS", "NSBH", "BBH", "Terrestrial")
PROPERTIES = ("HasNS", "HasRemnant", "HasMassGap")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def event_facts(alert: Mapping[str, Any], skymap_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The first facts of an event from one alert's summary and its sky map's metadata.

    Parameters
    ----------
    alert : mapping
        :meth:`gwfollow.ingest.model.Alert.summary` (``event`` holds the
        IGWN ``event`` block, possibly empty for VOEvents without it).
    skymap_meta : mapping, optional
        The stored sky-map metadata (``event_time``, ``distmean``,
        ``diststd``, ``instruments``, ``areas_deg2``).

    Returns
    -------
    dict
        ``alert_type``, ``event_time`` (UTC ISO 8601), ``far_hz``,
        ``far_per_year``, ``far_one_per_years`` (the inverse, years),
        ``significant``, ``group``, ``pipeline``, ``search``, ``instruments``,
        ``classification`` (class -> probability), ``most_probable_class``,
        ``properties`` (HasNS/HasRemnant/HasMassGap -> probability),
        ``distance_mpc`` and ``distance_std_mpc`` (luminosity distance, Mpc),
        ``areas_deg2`` (level -> square degrees).  Missing values are None.
    """
    ev = dict(alert.get("event") or {})
    meta = dict(skymap_meta or {})
    far = _num(ev.get("far"))
    cls = {k: _num(v) for k, v in (ev.get("classification") or {}).items() if _num(v) is not None}
    props = {k: _num(v) for k, v in (ev.get("properties") or {}).items() if _num(v) is not None}
    best = max(cls.items(), key=lambda kv: kv[1])[0] if cls else None
    return {
        "superevent_id": alert.get("superevent_id"),
        "alert_type": alert.get("alert_type"),
        "time_created": alert.get("time_created"),
        "event_time": ev.get("time") or meta.get("event_time"),
        "far_hz": far,
        "far_per_year": None if far is None else far * SECONDS_PER_YEAR,
        "far_one_per_years": None if not far else 1.0 / (far * SECONDS_PER_YEAR),
        "significant": ev.get("significant"),
        "group": ev.get("group"),
        "pipeline": ev.get("pipeline"),
        "search": ev.get("search"),
        "instruments": list(ev.get("instruments") or meta.get("instruments") or []),
        "classification": {k: cls[k] for k in (*CLASSES, *sorted(set(cls) - set(CLASSES))) if k in cls},
        "most_probable_class": best,
        "properties": {k: props[k] for k in (*PROPERTIES, *sorted(set(props) - set(PROPERTIES))) if k in props},
        "distance_mpc": _num(meta.get("distmean")),
        "distance_std_mpc": _num(meta.get("diststd")),
        "areas_deg2": dict(meta.get("areas_deg2") or {}),
    }


def revision_changes(revisions: Sequence[Mapping[str, Any]], top: int = 10) -> list[dict[str, Any]]:
    """What changed from each revision to the next.

    Parameters
    ----------
    revisions : sequence of mapping
        In time order, each ``{"facts": event_facts(...), "targets": {list name: [ids in rank order]}}``.
    top : int
        Targets compared: the first ``top`` of each list.

    Returns
    -------
    list of dict
        One per revision after the first: ``from`` / ``to`` (alert types),
        ``areas_deg2`` (level -> {before, after, ratio}), ``distance_mpc``
        ({before, after, change}), ``classification`` ({before, after} most
        probable class, ``changed``, per-class probability change),
        ``targets`` (list name -> {came: [...], went: [...], kept}).
    """
    out = []
    for prev, cur in zip(revisions, revisions[1:]):
        pf, cf = prev["facts"], cur["facts"]
        areas = {}
        for lv in sorted(set(pf.get("areas_deg2") or {}) | set(cf.get("areas_deg2") or {}), key=float):
            a, b = _num((pf.get("areas_deg2") or {}).get(lv)), _num((cf.get("areas_deg2") or {}).get(lv))
            areas[lv] = {"before": a, "after": b, "ratio": None if not a or b is None else b / a}
        da, db = pf.get("distance_mpc"), cf.get("distance_mpc")
        pc, cc = pf.get("classification") or {}, cf.get("classification") or {}
        targets = {}
        for name in sorted(set(prev.get("targets") or {}) | set(cur.get("targets") or {})):
            before = [str(x) for x in (prev.get("targets") or {}).get(name, [])[:top]]
            after = [str(x) for x in (cur.get("targets") or {}).get(name, [])[:top]]
            targets[name] = {"came": [x for x in after if x not in before],
                             "went": [x for x in before if x not in after],
                             "kept": sum(1 for x in after if x in before)}
        out.append({
            "from": pf.get("alert_type"), "to": cf.get("alert_type"),
            "from_time_created": pf.get("time_created"), "to_time_created": cf.get("time_created"),
            "areas_deg2": areas,
            "distance_mpc": {"before": da, "after": db,
                             "change": None if da is None or db is None else db - da},
            "classification": {
                "before": pf.get("most_probable_class"), "after": cf.get("most_probable_class"),
                "changed": pf.get("most_probable_class") != cf.get("most_probable_class"),
                "delta": {k: (cc.get(k) or 0.0) - (pc.get(k) or 0.0) for k in sorted(set(pc) | set(cc))},
            },
            "targets": targets,
        })
    return out


def _pct(p: float | None) -> str:
    if p is None:
        return "-"
    if p == 0 or p >= 0.01:
        return f"{100 * p:.0f} %"
    return f"{100 * p:.2f} %" if p >= 1e-4 else "< 0.01 %"


def facts_lines(facts: Mapping[str, Any]) -> list[str]:
    """The facts as short human-readable lines (for the summary and the reports)."""
    lines = [f"event time {facts.get('event_time') or '-'} UTC"]
    if facts.get("far_hz") is not None:
        inv = facts.get("far_one_per_years")
        lines.append(f"FAR {facts['far_hz']:.3g} Hz" + (f" (one per {inv:.3g} years)" if inv else ""))
    if facts.get("significant") is not None:
        lines.append("significant" if facts["significant"] else "low significance")
    cls = facts.get("classification") or {}
    if cls:
        lines.append("classification " + ", ".join(f"{k} {_pct(v)}" for k, v in cls.items()))
    props = facts.get("properties") or {}
    if props:
        lines.append(", ".join(f"{k} {_pct(v)}" for k, v in props.items()))
    if facts.get("distance_mpc") is not None:
        std = facts.get("distance_std_mpc")
        lines.append(f"distance {facts['distance_mpc']:.0f}" + (f" ± {std:.0f}" if std is not None else "") + " Mpc")
    areas = facts.get("areas_deg2") or {}
    if areas:
        lines.append("area " + ", ".join(f"{float(k) * 100:g} % {v:.0f} deg²" for k, v in areas.items() if v is not None))
    return lines


def change_lines(change: Mapping[str, Any]) -> list[str]:
    """One revision change as short human-readable lines."""
    lines = [f"{change.get('from')} -> {change.get('to')}"]
    for lv, a in (change.get("areas_deg2") or {}).items():
        if a["before"] is not None and a["after"] is not None:
            lines.append(f"  {float(lv) * 100:g} % area {a['before']:.0f} -> {a['after']:.0f} deg²")
    d = change.get("distance_mpc") or {}
    if d.get("before") is not None and d.get("after") is not None:
        lines.append(f"  distance {d['before']:.0f} -> {d['after']:.0f} Mpc")
    c = change.get("classification") or {}
    if c.get("before") or c.get("after"):
        lines.append(f"  most probable class {c.get('before')} -> {c.get('after')}"
                     + (" (changed)" if c.get("changed") else ""))
    for name, t in (change.get("targets") or {}).items():
        if t["came"] or t["went"]:
            lines.append(f"  {name}: came {', '.join(t['came']) or '-'}; went {', '.join(t['went']) or '-'}")
    return lines


def summary_text(summary: Mapping[str, Any]) -> str:
    """A plain-text summary of an event (:func:`gwfollow.pipeline.replay.event_summary`)."""
    lines = [f"{summary.get('superevent_id')} ({summary.get('state')})"]
    facts = summary.get("facts") or {}
    if facts.get("alert_type"):
        lines[0] += f", latest sky map from the {facts['alert_type']} alert"
    lines += ["  " + ln for ln in facts_lines(facts)]
    for ch in summary.get("changes") or []:
        lines += change_lines(ch)
    return "\n".join(lines) + "\n"
