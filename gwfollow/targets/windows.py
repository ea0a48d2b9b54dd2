"""Targets seen from sites: observable windows added to ranked tables, and
the per-site observability summary stored as a product.

Times are UTC; windows are ``start/end`` ISO 8601 intervals joined by ``;``
(readable in CSV and VOTable, parsed back by :func:`parse_windows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gwfollow.config import SiteConfig
from gwfollow.targets.observability import Site, observability, mask_runs, target_observable


def site_of(sc: SiteConfig) -> Site:
    """A :class:`~gwfollow.targets.observability.Site` from a ``[sites.NAME]`` table."""
    s = Site(sc.name, float(sc.lat_deg), float(sc.lon_deg), float(sc.height_m), float(sc.max_airmass),
             float(sc.max_sun_alt_deg))
    s.validate()
    return s


def _iso(t: Any) -> str:
    return t.utc.isot[:19] + "Z"


def _isos(t: Any) -> list[str]:
    """:func:`_iso` of every instant of an array, in one conversion."""
    return [s[:19] + "Z" for s in t.utc.isot]


def windows_text(windows: list[tuple[Any, Any]]) -> str:
    """``[(t0, t1), ...]`` -> ``"t0/t1;..."`` (ISO 8601 intervals)."""
    return ";".join(f"{_iso(a)}/{_iso(b)}" for a, b in windows)


def parse_windows(text: str) -> list[tuple[str, str]]:
    """Inverse of :func:`windows_text`."""
    return [tuple(w.split("/", 1)) for w in text.split(";") if w]  # type: ignore[misc]


def add_windows(table: Any, sites: tuple[SiteConfig, ...], start: Any) -> Any:
    """Add a ``windows_<site>`` column for every site to a table with ra/dec (deg)."""
    if len(table) == 0:
        for sc in sites:
            table[f"windows_{sc.name}"] = np.array([], dtype=str)
        return table
    ra = np.asarray(table["ra"], dtype=float)
    dec = np.asarray(table["dec"], dtype=float)
    for sc in sites:
        # target_windows, with each slice edge written once rather than once per window
        edges, mask = target_observable(ra, dec, site_of(sc), start, hours=sc.hours, step_minutes=sc.step_minutes)
        iso = _isos(edges)
        text: list[list[str]] = [[] for _ in range(mask.shape[0])]
        for r, a, b in zip(*(x.tolist() for x in mask_runs(mask))):
            text[r].append(f"{iso[a]}/{iso[b]}")
        table[f"windows_{sc.name}"] = [";".join(t) for t in text]
    return table


def site_summary(skymap: Any, sc: SiteConfig, start: Any, region: Any = None) -> dict[str, Any]:
    """Observable probability vs time for one site, JSON-ready.

    Probabilities are fractions of the map; ``region`` (depth-29 ranges)
    restricts ``total_in_region`` to a credible region.
    """
    res = observability(skymap, site_of(sc), start, hours=sc.hours, step_minutes=sc.step_minutes)
    best = res.best_slice()
    starts, ends = _isos(res.slice_start), _isos(res.slice_end)
    return {
        "site": sc.name,
        "max_airmass": sc.max_airmass,
        "max_sun_alt_deg": sc.max_sun_alt_deg,
        "start": starts[0],
        "hours": sc.hours,
        "step_minutes": sc.step_minutes,
        "slices": [
            {"start": a, "end": b, "sun_alt_deg": float(s), "probability": float(p)}
            for a, b, s, p in zip(starts, ends, res.sun_alt_deg.tolist(), res.probability.tolist())
        ],
        "total_observable_probability": float(res.total_observable_probability()),
        "total_in_region": float(res.total_observable_probability(region)) if region is not None else None,
        "best_slice": None if best is None else {"start": starts[best],
                                                 "probability": float(res.probability[best])},
    }
