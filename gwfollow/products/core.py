"""The CPU-heavy step of the pipeline, as one pure function.

:func:`process_message` turns a raw message (and, for VOEvents, the sky map
fetched for it) into everything the store keeps: the parsed alert, each
sky-map version and its credible-region MOCs serialised as MOC 2.0 FITS.
It runs in a worker process (:class:`concurrent.futures.ProcessPoolExecutor`)
so that the event loop never waits for it; its inputs and outputs are plain,
picklable data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gwfollow.config import Config
from gwfollow.errors import AlertSchemaError, GwfollowError

log = logging.getLogger("gwfollow.products.core")


@dataclass(frozen=True)
class Product:
    """One stored product: a credible-region MOC (``kind="moc"``), a ranked
    galaxy list (``"galaxies"``, ``name`` = catalogue), ...

    Areas in square degrees; ``probability`` is the enclosed probability.
    """

    kind: str
    level: float | None
    boundary: str | None
    format: str
    data: bytes
    area_deg2: float | None
    probability: float | None
    n_cells: int | None
    provenance: dict[str, Any]
    name: str = ""


@dataclass(frozen=True)
class ProcessedSkyMap:
    """A sky-map version and its products."""

    role: str  # "gw" or "combined"
    sha256: str
    data: bytes
    meta: dict[str, Any]
    products: list[Product]


@dataclass(frozen=True)
class ProcessedAlert:
    """What :func:`process_message` returns."""

    alert: dict[str, Any]
    skymaps: list[ProcessedSkyMap] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    acted: bool = True
    note: str | None = None


@dataclass(frozen=True)
class NeedsFetch:
    """The message points to a sky map that must be downloaded first."""

    url: str
    alert: dict[str, Any]


def filter_reason(alert_summary: dict[str, Any], config: Config) -> str | None:
    """Why the configured filters reject an alert (None: accepted)."""
    f = config.filters
    sid = alert_summary["superevent_id"]
    if alert_summary["alert_type"] == "RETRACTION":
        return None
    event = alert_summary.get("event") or {}
    if not f.mock_events and sid.startswith("M"):
        return "filtered: mock event (filters.mock_events = false)"
    if f.significant_only and event.get("significant") is False:
        return "filtered: not significant (filters.significant_only = true)"
    grp = event.get("group")
    if f.groups and grp is not None and grp not in f.groups:
        return f"filtered: group {grp} not in filters.groups"
    far = event.get("far")
    if f.max_far_hz > 0 and far is not None and far > f.max_far_hz:
        return f"filtered: FAR {far:.3g} Hz above filters.max_far_hz"
    return None


def _skymap_products(data: bytes, role: str, name: str, config: Config) -> tuple[ProcessedSkyMap, dict[str, float]]:
    from gwfollow.version import __version__
    from gwfollow.kernels import ranges as kr
    from gwfollow.regions.mocio import space_moc_fits_bytes
    from gwfollow.regions.moc import credible_ranges, probability_in_ranges, ranges_area_deg2
    from gwfollow.skymaps.skymap import read_skymap

    t0 = time.perf_counter()
    sm = read_skymap(data, name=name, config=config.skymap)
    t1 = time.perf_counter()
    levels = list(config.skymap.levels)
    boundary = config.skymap.boundary
    products = []
    for level, r in zip(levels, credible_ranges(sm, levels, boundary)):
        prov = {
            "skymap_sha256": sm.sha256,
            "level": level,
            "boundary": boundary,
            "gwfollow": __version__,
            "moc_order": sm.meta.moc_order,
        }
        fits_bytes = space_moc_fits_bytes(
            r, sm.meta.moc_order,
            extra={"OBJECT": sm.meta.object_id or "", "CREDLEV": level, "SKYMAPSH": sm.sha256[:64]},
        )
        products.append(Product(
            kind="moc", level=level, boundary=boundary, format="fits", data=fits_bytes,
            area_deg2=ranges_area_deg2(r), probability=probability_in_ranges(sm, r),
            n_cells=int(kr.to_uniq(r).shape[0]), provenance=prov,
        ))
    t2 = time.perf_counter()
    # Every sky map of an alert (the GW map and a combined GW+GRB map) gets every product.
    start = _start_time(sm)
    region90 = credible_ranges(sm, [0.9], "include")[0]
    products.extend(_galaxy_products(sm, config, start))
    products.extend(_field_products(sm, config, start))
    products.extend(_site_products(sm, config, start, region90))
    products.extend(_coverage_products(sm, config, start, region90))
    products.extend(_plan_products(sm, config, start))
    t3 = time.perf_counter()
    m = sm.meta
    meta = {
        "object_id": m.object_id, "event_time": m.event_time, "instruments": list(m.instruments),
        "creator": m.creator, "ordering": m.ordering, "cells": len(sm), "moc_order": m.moc_order,
        "distmean": m.distmean, "diststd": m.diststd, "has_distance": sm.has_distance,
        "prob_sum": m.prob_sum, "warnings": list(m.warnings),
        "areas_deg2": {f"{p.level:g}": p.area_deg2 for p in products if p.kind == "moc"},
    }
    return (ProcessedSkyMap(role=role, sha256=sm.sha256, data=data, meta=meta, products=products),
            {f"{role}_skymap_read": t1 - t0, f"{role}_mocs": t2 - t1, f"{role}_targets": t3 - t2})


def _version() -> str:
    from gwfollow.version import __version__

    return __version__


_CATALOGS: dict[str, Any] = {}


def _catalog(name: str):
    """Catalogues are loaded and indexed once per worker process."""
    from gwfollow.targets.catalogues import load_catalog

    if name not in _CATALOGS:
        cat = load_catalog(name)
        cat.index()
        _CATALOGS[name] = cat
    return _CATALOGS[name]


def _partitioned(path: str):
    """Partitioned catalogues are opened once per worker process (metadata only)."""
    from gwfollow.targets.partitioned import PartitionedCatalog

    key = f"partitioned:{path}"  # the same path may hold a table in another configuration
    if key not in _CATALOGS:
        _CATALOGS[key] = PartitionedCatalog(path)
    return _CATALOGS[key]


def _start_time(sm):
    """The observing window starts at the event time (DATE-OBS), else now."""
    from astropy.time import Time

    return sm.event_t0 or Time.now()


_COVERAGES: dict[Any, Any] = {}


def load_configured_coverage(cc, config: Config):
    """A :class:`~gwfollow.regions.coverage.Coverage` from a ``[coverages.NAME]`` table (cached per process)."""
    import os

    from gwfollow.regions.coverage import load_coverage
    from gwfollow.targets.fields import pointings_to_stmoc
    from gwfollow.regions.mocserver import coverage_from_mocserver

    if cc in _COVERAGES:
        return _COVERAGES[cc]
    if cc.path:
        cov = load_coverage(os.path.expanduser(cc.path), name=cc.name)
    elif cc.mocserver_id:
        cov = coverage_from_mocserver(cc.mocserver_id, os.path.expanduser(config.coverage_cache))
    else:
        from gwfollow.targets.fields import telescope_from_config
        from gwfollow.errors import ConfigError

        tcs = {t.name: t for t in config.telescopes}
        if cc.telescope not in tcs:
            raise ConfigError(f"coverages.{cc.name}: telescope {cc.telescope!r} is not configured")
        tel = telescope_from_config(tcs[cc.telescope])
        grid = {int(i): (float(r), float(d)) for i, r, d in zip(tel.ids, tel.ra, tel.dec)}
        cov = pointings_to_stmoc(os.path.expanduser(cc.pointings), grid, tel.fov, name=cc.name)
    _COVERAGES[cc] = cov
    return cov


def _coverage_products(sm, config: Config, start, region) -> list[Product]:
    """One product per configured coverage; a coverage that cannot be had is
    recorded with its error, and the others go on."""
    import dataclasses
    import json

    from gwfollow.regions.coverage import coverage_probability

    out = []
    if not config.coverages:
        return out
    for cc in config.coverages:
        try:
            cov = load_configured_coverage(cc, config)
            from astropy import units as u

            end = start + cc.window_s * u.s
            res = coverage_probability(sm, cov, start, end, region=region)
            body = dataclasses.asdict(res)
            if res.probability is not None:
                body["remaining_probability"] = max(0.0, sm.meta.prob_sum - res.probability)
            body["source"] = cov.source
            prob = res.probability
        except GwfollowError as exc:
            body = {"name": cc.name, "error": str(exc)}
            prob = None
        out.append(Product(kind="coverage", name=cc.name, level=None, boundary=None, format="json",
                           data=json.dumps(body).encode(), area_deg2=body.get("coverage_area_deg2"),
                           probability=prob, n_cells=None,
                           provenance={"skymap_sha256": sm.sha256, "coverage": cc.name,
                                       "source": body.get("source"), "gwfollow": _version()}))
    return out


def _site_products(sm, config: Config, start, region) -> list[Product]:
    import json

    from gwfollow.targets.windows import site_summary

    out = []
    if not config.sites:
        return out
    for sc in config.sites:
        summary = site_summary(sm, sc, start, region)
        out.append(Product(kind="observability", name=sc.name, level=None, boundary=None, format="json",
                           data=json.dumps(summary).encode(), area_deg2=None,
                           probability=summary["total_observable_probability"], n_cells=len(summary["slices"]),
                           provenance={"skymap_sha256": sm.sha256, "site": sc.name, "start": summary["start"],
                                       "gwfollow": _version()}))
    return out


def parse_tap_spec(spec: str) -> tuple[str, str] | None:
    """``tap:URL#TABLE`` -> (URL, TABLE); None for other catalogue names."""
    if not spec.startswith("tap:"):
        return None
    body = spec[4:]
    if "#" not in body:
        from gwfollow.errors import ConfigError

        raise ConfigError(f"TAP catalogue {spec!r} must be tap:URL#TABLE", hint="e.g. tap:http://host/tap#gal.glade")
    url, table = body.rsplit("#", 1)
    return url, table


def _galaxy_products(sm, config: Config, start=None) -> list[Product]:
    """One ranked list per configured catalogue.  A TAP catalogue is queried
    per alert (coarse ADQL constraint, exact MOC filter locally); a catalogue
    that fails is recorded with its error and the others go on."""
    import json

    from gwfollow.regions.moc import credible_ranges
    from gwfollow.targets.partitioned import is_partitioned, rank_partitioned
    from gwfollow.targets.rank import rank_galaxies
    from gwfollow.products.report import table_bytes
    from gwfollow.targets.windows import add_windows

    t = config.targets
    out = []
    region = credible_ranges(sm, [t.galaxy_level], "include")[0]
    for name in t.catalogs:
        try:
            tap = parse_tap_spec(name)
            if tap is not None:
                from gwfollow.targets.tap import TapCatalogSource

                cat = TapCatalogSource(tap[0], tap[1]).query_region(region)
                r = rank_galaxies(sm, cat, region=region, weighting=t.weighting or None,
                                  limit=t.galaxy_limit or None)
            elif is_partitioned(name):
                # Partitions pruned by the region, ranked one by one and merged.
                cat = _partitioned(name)
                r = rank_partitioned(sm, cat, region=region, weighting=t.weighting or None,
                                     limit=t.galaxy_limit or None)
            else:
                cat = _catalog(name)
                r = rank_galaxies(sm, cat, region=region, weighting=t.weighting or None,
                                  limit=t.galaxy_limit or None)
        except GwfollowError as exc:
            out.append(Product(kind="galaxies", name=name, level=t.galaxy_level, boundary=None, format="json",
                               data=json.dumps({"columns": [], "rows": [], "error": str(exc),
                                                "provenance": {"catalog": name}}).encode(),
                               area_deg2=None, probability=None, n_cells=0,
                               provenance={"skymap_sha256": sm.sha256, "catalog": name, "error": str(exc),
                                           "gwfollow": _version()}))
            continue
        table = r.table()
        if config.sites and start is not None:
            add_windows(table, config.sites, start)
        out.append(Product(kind="galaxies", name=cat.name, level=t.galaxy_level, boundary=None, format="json",
                           data=table_bytes(table, "json"), area_deg2=None, probability=None,
                           n_cells=len(r), provenance=r.provenance))
    return out


_TELESCOPES: dict[Any, Any] = {}


def warm_worker(config: Config) -> None:
    """Prepare a worker process before its first alert: import the heavy
    modules and build each configured telescope with the footprints of all
    its fields (computed together, about 0.5 s for ZTF's 1,778 fields)."""
    import astropy.coordinates  # noqa: F401
    import mocpy  # noqa: F401

    from gwfollow.targets.fields import field_footprints, telescope_from_config

    for tc in config.telescopes:
        try:
            if tc not in _TELESCOPES:
                _TELESCOPES[tc] = telescope_from_config(tc)
            tel = _TELESCOPES[tc]
            field_footprints(tel.ra, tel.dec, tel.fov, tc.order)
        except Exception as exc:  # noqa: BLE001 -- a failing initializer would break the whole pool;
            # the error is reported again, per alert, where the telescope is used.
            log.warning("telescope %s not prepared: %s: %s", tc.name, type(exc).__name__, exc)


def _field_products(sm, config: Config, start=None) -> list[Product]:
    from gwfollow.targets.fields import telescope_from_config
    from gwfollow.targets.fields import rank_fields
    from gwfollow.products.report import table_bytes
    from gwfollow.targets.windows import add_windows

    out = []
    for tc in config.telescopes:
        if tc not in _TELESCOPES:
            _TELESCOPES[tc] = telescope_from_config(tc)
        r = rank_fields(sm, _TELESCOPES[tc], target=tc.target, order=tc.order)
        sel = r.cumprob[r.selected]
        table = r.table()
        if config.sites and start is not None:
            add_windows(table, config.sites, start)
        out.append(Product(kind="fields", name=tc.name, level=tc.target, boundary=None, format="json",
                           data=table_bytes(table, "json"), area_deg2=None,
                           probability=float(sel[-1]) if sel.size else 0.0, n_cells=int(r.selected.sum()),
                           provenance=r.provenance))
    return out


def _telescope(tc):
    """A configured telescope, built once per worker process."""
    from gwfollow.targets.fields import telescope_from_config

    if tc not in _TELESCOPES:
        _TELESCOPES[tc] = telescope_from_config(tc)
    return _TELESCOPES[tc]


def _plan_products(sm, config: Config, start) -> list[Product]:
    """One plan per configured telescope/site pair (and a joint one); executed pointings subtracted."""
    from gwfollow.products.plans import executed_ranges, plan_documents

    done = []
    for cc in config.coverages:
        if cc.pointings:
            try:
                done.append(load_configured_coverage(cc, config))
            except GwfollowError as exc:
                log.warning("executed pointings %s not used in plans: %s", cc.name, exc)
    docs = plan_documents(sm, config, start, _telescope, executed_ranges(done))
    return [Product(kind="plan", name=d.name, level=None, boundary=None, format="json", data=d.data,
                    area_deg2=None, probability=d.probability, n_cells=d.n_exposures,
                    provenance={**d.provenance, "skymap_sha256": sm.sha256, "gwfollow": _version()})
            for d in docs]


def process_message(body: bytes, source: str, config: Config, fetched_skymap: bytes | None = None,
                    apply_filters: bool = True) -> ProcessedAlert | NeedsFetch:
    """Parse a message and compute its products.

    Parameters
    ----------
    body : bytes
        The raw message.
    source : str
        Where it came from, for messages.
    config : Config
    fetched_skymap : bytes, optional
        The sky map downloaded for a VOEvent (see :class:`NeedsFetch`).
    apply_filters : bool
        Apply ``config.filters``; a rejected alert is returned with
        ``acted=False`` and the reason in ``note``.

    Raises
    ------
    AlertError, SkyMapError
        The message or its sky map is unusable (it goes to dead letters).
    """
    from gwfollow.ingest.parse import parse_alert

    t0 = time.perf_counter()
    alert = parse_alert(body, source)
    summary = alert.summary()
    timings = {"parse": time.perf_counter() - t0}
    if apply_filters:
        reason = filter_reason(summary, config)
        if reason:
            return ProcessedAlert(alert=summary, timings=timings, acted=False, note=reason)
    if alert.is_retraction:
        return ProcessedAlert(alert=summary, timings=timings)
    skymap = alert.skymap if alert.skymap is not None else fetched_skymap
    if skymap is None:
        if alert.skymap_url:
            return NeedsFetch(url=alert.skymap_url, alert=summary)
        raise AlertSchemaError(f"{alert.alert_type} alert without a sky map", source=source)
    maps = []
    sm, t = _skymap_products(skymap, "gw", f"{source} (sky map)", config)
    maps.append(sm)
    timings.update(t)
    if alert.combined_skymap is not None:
        sm, t = _skymap_products(alert.combined_skymap, "combined", f"{source} (combined sky map)", config)
        maps.append(sm)
        timings.update(t)
    return ProcessedAlert(alert=summary, skymaps=maps, timings=timings)
