"""The per-alert core: one alert in, every product out.

parse -> (the sky map fetched by the caller when a VOEvent only points to it)
-> each sky map read once -> its credible regions ranked once
(:class:`~gwfollow.regions.moc.CredibleRegions`: one sort serves every level)
-> every product from those regions: MOCs per configured level, galaxies per
catalogue, fields per telescope, observability per site, probability per
coverage -> a :class:`~gwfollow.records.ProcessedAlert`.

The service's pipeline, ``gwfollow replay`` and the Dask replay all call
:func:`process_message` / :func:`process_alert`; it runs in a worker
process (CPU-heavy), and its inputs and outputs are plain, picklable data.
What it needs besides the alert (catalogues, telescopes, coverages) comes in
one :class:`~gwfollow.products.resources.Resources` object.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass

from astropy import units as u
from astropy.time import Time

from gwfollow.config import Config
from gwfollow.errors import AlertSchemaError, GwfollowError
from gwfollow.ingest.model import Alert
from gwfollow.ingest.parse import parse_alert
from gwfollow.kernels import ranges as kr
from gwfollow.products.plans import executed_ranges, plan_documents
from gwfollow.products.report import table_bytes
from gwfollow.products.resources import Resources, resources_for
from gwfollow.records import (
    AlertSummary,
    DeferredParts,
    ProcessedAlert,
    ProcessedDeferred,
    ProcessedSkyMap,
    Product,
    ProductKind,
)
from gwfollow.regions.coverage import coverage_probability
from gwfollow.regions.moc import (
    CredibleRegions,
    probability_in_ranges,
    ranges_area_deg2,
)
from gwfollow.regions.mocio import credible_moc_fits_bytes
from gwfollow.skymaps.skymap import SkyMap, read_skymap
from gwfollow.targets.fields import rank_fields
from gwfollow.targets.observable_fields import rank_observable_fields
from gwfollow.targets.plan import params_from_config
from gwfollow.targets.sites import site_from_config
from gwfollow.targets.windows import add_windows, site_summary
from gwfollow.version import __version__

log = logging.getLogger("gwfollow.products.core")

FIELDS_LEVEL = 0.999
"""Fields are searched around the credible region at this level (see :func:`rank_fields`)."""
SITES_LEVEL = 0.9
"""Observability and coverages are computed over the 90 % region (``include`` boundary)."""


@dataclass(frozen=True)
class NeedsFetch:
    """The alert (a VOEvent) points to a sky map that the caller must download first,
    then hand back to :func:`process_alert` with the parsed alert."""

    url: str
    alert: Alert


def summary_of(alert: Alert) -> AlertSummary:
    """The alert without its sky-map bytes."""
    return AlertSummary(**alert.summary())


def filter_reason(alert: AlertSummary, config: Config) -> str | None:
    """Why the configured filters reject an alert (None: accepted)."""
    f = config.filters
    sid = alert.superevent_id
    if alert.is_retraction:
        return None
    event = alert.event or {}
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


def process_message(body: bytes, source: str, config: Config, fetched_skymap: bytes | None = None,
                    apply_filters: bool = True, resources: Resources | None = None,
                    defer: bool = False) -> ProcessedAlert | NeedsFetch:
    """Parse a raw message and compute its products (see :func:`process_alert`)."""
    t0 = time.perf_counter()
    alert = parse_alert(body, source, config.skymap)
    return process_alert(alert, source, config, fetched_skymap, apply_filters, resources,
                         parse_seconds=time.perf_counter() - t0, defer=defer)


def process_alert(alert: Alert, source: str, config: Config, fetched_skymap: bytes | None = None,
                  apply_filters: bool = True, resources: Resources | None = None,
                  parse_seconds: float = 0.0, defer: bool = False) -> ProcessedAlert | NeedsFetch:
    """Compute every product of a parsed alert (or, with ``defer``, the first step's).

    Parameters
    ----------
    alert : Alert
    source : str
        Where the message came from, for messages.
    config : Config
    fetched_skymap : bytes, optional
        The sky map downloaded for a VOEvent (see :class:`NeedsFetch`).
    apply_filters : bool
        Apply ``config.filters``; a rejected alert is returned with
        ``acted=False`` and the reason in ``note``.
    resources : Resources, optional
        Catalogues, telescopes, coverages of ``config``, prepared once per worker;
        made for this call when omitted.
    parse_seconds : float
        Time the caller spent parsing, for ``timings``.
    defer : bool
        Only the first step: the GW sky map, its MOCs and ranked targets (what
        a follow-up team needs at once); observability, coverages, plans and
        the combined map's products are named in ``ProcessedAlert.deferred``
        for :func:`process_deferred`.

    Raises
    ------
    AlertError, SkyMapError
        The message or its sky map is unusable (it goes to dead letters).
    """
    summary = summary_of(alert)
    timings = {"parse": parse_seconds}
    if apply_filters:
        reason = filter_reason(summary, config)
        if reason:
            return ProcessedAlert(alert=summary, timings=timings, acted=False, note=reason)
    if alert.is_retraction:
        return ProcessedAlert(alert=summary, timings=timings)
    data = alert.skymap if alert.skymap is not None else fetched_skymap
    if data is None:
        if alert.skymap_url:
            return NeedsFetch(url=alert.skymap_url, alert=alert)
        raise AlertSchemaError(f"{alert.alert_type} alert without a sky map", source=source)
    res = resources_for(config, resources)
    sm = alert.decoded_skymap or read_skymap(data, name=f"{source} (sky map)", config=config.skymap)
    start = sm.event_t0 or Time.now()  # the observing window starts at the event time
    maps = [_skymap_products(data, sm, "gw", config, res, timings, start, FAST if defer else ALL)]
    if alert.combined_skymap is not None and not defer:
        maps.append(_skymap_products(alert.combined_skymap, None, "combined", config, res, timings, start, ALL,
                                     f"{source} (combined sky map)"))
    deferred = None
    if defer:
        parts = ("gw",) if _has_slow_products(config) else ()
        parts += ("combined",) if alert.combined_skymap is not None else ()
        deferred = DeferredParts(parts, start.utc.isot + "Z") if parts else None
    return ProcessedAlert(alert=summary, skymaps=maps, timings=timings, deferred=deferred)


def process_deferred(body: bytes, source: str, config: Config, gw_skymap: bytes, deferred: DeferredParts,
                     resources: Resources | None = None) -> ProcessedDeferred:
    """The second step of an alert processed with ``defer=True``: its slow products.

    Parameters
    ----------
    body : bytes
        The raw message (parsed again for a combined sky map).
    source : str
    config : Config
    gw_skymap : bytes
        The GW sky map stored by the first step.
    deferred : DeferredParts
        What the first step left (``ProcessedAlert.deferred``).
    resources : Resources, optional

    Returns
    -------
    ProcessedDeferred
    """
    t0 = time.perf_counter()
    alert = parse_alert(body, source, config.skymap) if "combined" in deferred.parts else None
    timings = {"parse": time.perf_counter() - t0}
    res = resources_for(config, resources)
    start = Time(deferred.start.removesuffix("Z"), scale="utc")
    maps = []
    if "gw" in deferred.parts:
        sm = read_skymap(gw_skymap, name=f"{source} (sky map)", config=config.skymap)
        maps.append(_skymap_products(gw_skymap, sm, "gw", config, res, timings, sm.event_t0 or start, SLOW))
    if alert is not None and alert.combined_skymap is not None:
        maps.append(_skymap_products(alert.combined_skymap, None, "combined", config, res, timings, start, ALL,
                                     f"{source} (combined sky map)"))
    return ProcessedDeferred(skymaps=maps, timings=timings)


FAST = ("moc", "galaxies", "fields")
"""Products of the first step: what a follow-up team acts on at once."""
SLOW = ("observability", "coverage", "plan")
"""Products of the second step (``defer=True``)."""
ALL = FAST + SLOW


def _has_slow_products(config: Config) -> bool:
    return bool(config.sites or config.coverages or (config.plan.enabled and config.telescopes and config.sites))


def _skymap_products(data: bytes, decoded: SkyMap | None, role: str, config: Config, res: Resources,
                     timings: dict[str, float], start: Time, kinds: tuple[str, ...],
                     name: str = "") -> ProcessedSkyMap:
    """One sky-map version: read once, ranked once, the products of ``kinds`` from its regions."""
    t0 = time.perf_counter()
    sm = decoded if decoded is not None else read_skymap(data, name=name, config=config.skymap)
    t1 = time.perf_counter()
    levels = list(config.skymap.levels)
    regions = CredibleRegions(sm, max(levels + [FIELDS_LEVEL, SITES_LEVEL, config.targets.galaxy_level]))
    products = [_moc_product(sm, regions, level, config.skymap.boundary) for level in levels] \
        if "moc" in kinds else []
    t2 = time.perf_counter()
    # Every sky map of an alert (the GW map and a combined GW+GRB map) gets every product.
    if role == "combined":
        start = sm.event_t0 or start
    region90 = regions.ranges(SITES_LEVEL, "include")
    if "galaxies" in kinds:
        products.extend(_galaxy_products(sm, regions, config, res, start))
    if "fields" in kinds:
        products.extend(_field_products(sm, regions, config, res, start))
    if "observability" in kinds:
        products.extend(_site_products(sm, config, start, region90))
    if "coverage" in kinds:
        products.extend(_coverage_products(sm, config, res, start, region90))
    if "plan" in kinds:
        products.extend(_plan_products(sm, config, res, start))
    t3 = time.perf_counter()
    m = sm.meta
    meta = {
        "object_id": m.object_id, "event_time": m.event_time, "event_mjd": m.event_mjd, "instruments": list(m.instruments),
        "creator": m.creator, "ordering": m.ordering, "cells": len(sm), "moc_order": m.moc_order,
        "distmean": m.distmean, "diststd": m.diststd, "has_distance": sm.has_distance,
        "prob_sum": m.prob_sum, "warnings": list(m.warnings),
        "areas_deg2": {f"{p.level:g}": p.area_deg2 for p in products if p.kind is ProductKind.MOC},
    }
    timings.update({f"{role}_skymap_read": t1 - t0, f"{role}_mocs": t2 - t1, f"{role}_targets": t3 - t2})
    return ProcessedSkyMap(role=role, sha256=sm.sha256, data=data, meta=meta, products=products)


def _moc_product(sm: SkyMap, regions: CredibleRegions, level: float, boundary: str) -> Product:
    r = regions.ranges(level, boundary)
    prov = {"skymap_sha256": sm.sha256, "level": level, "boundary": boundary, "gwfollow": __version__,
            "moc_order": sm.meta.moc_order}
    fits_bytes = credible_moc_fits_bytes(r, sm.meta.moc_order, object_id=sm.meta.object_id, level=level,
                                         boundary=boundary, skymap_sha256=sm.sha256, version=__version__)
    return Product(kind=ProductKind.MOC, level=level, boundary=boundary, format="fits", data=fits_bytes,
                   area_deg2=ranges_area_deg2(r), probability=probability_in_ranges(sm, r),
                   n_cells=int(kr.to_uniq(r).shape[0]), provenance=prov)


def _galaxy_products(sm: SkyMap, regions: CredibleRegions, config: Config, res: Resources,
                     start: Time) -> list[Product]:
    """One ranked list per configured catalogue; a catalogue that fails is
    recorded with its error and the others go on."""
    t = config.targets
    out = []
    region = regions.ranges(t.galaxy_level, "include")
    for spec in t.catalogs:
        try:
            src = res.catalog(spec)
            r = src.rank(sm, region, weighting=t.weighting or None, limit=t.galaxy_limit or None)
        except GwfollowError as exc:
            out.append(Product(kind=ProductKind.GALAXIES, name=spec, level=t.galaxy_level, boundary=None,
                               format="json",
                               data=json.dumps({"columns": [], "rows": [], "error": str(exc),
                                                "provenance": {"catalog": spec}}).encode(),
                               area_deg2=None, probability=None, n_cells=0,
                               provenance={"skymap_sha256": sm.sha256, "catalog": spec, "error": str(exc),
                                           "gwfollow": __version__}))
            continue
        table = r.table()
        if config.sites:
            add_windows(table, config.sites, start)
        out.append(Product(kind=ProductKind.GALAXIES, name=src.name, level=t.galaxy_level, boundary=None,
                           format="json", data=table_bytes(table, "json"), area_deg2=None, probability=None,
                           n_cells=len(r), provenance=r.provenance))
    return out


def _field_products(sm: SkyMap, regions: CredibleRegions, config: Config, res: Resources,
                    start: Time) -> list[Product]:
    """One ranked list per telescope: with sites configured, only the fields observable
    from them in the plan window (with ``site`` and ``windows_<site>`` columns)."""
    out = []
    sites = [site_from_config(sc) for sc in config.sites]
    for tc in config.telescopes:
        region = regions.ranges(FIELDS_LEVEL, "include")
        if sites:
            o = rank_observable_fields(sm, res.telescope(tc), sites, start, params_from_config(config.plan, tc.order),
                                       target=tc.target, level=FIELDS_LEVEL, region=region)
            r, table = o.ranked, o.table()
        else:
            r = rank_fields(sm, res.telescope(tc), target=tc.target, order=tc.order, level=FIELDS_LEVEL,
                            region=region)
            table = r.table()
        sel = r.cumprob[r.selected]
        out.append(Product(kind=ProductKind.FIELDS, name=tc.name, level=tc.target, boundary=None, format="json",
                           data=table_bytes(table, "json"), area_deg2=None,
                           probability=float(sel[-1]) if sel.size else 0.0, n_cells=int(r.selected.sum()),
                           provenance=r.provenance))
    return out


def _site_products(sm: SkyMap, config: Config, start: Time, region: object) -> list[Product]:
    out = []
    for sc in config.sites:
        summary = site_summary(sm, sc, start, region)
        out.append(Product(kind=ProductKind.OBSERVABILITY, name=sc.name, level=None, boundary=None, format="json",
                           data=json.dumps(summary).encode(), area_deg2=None,
                           probability=summary["total_observable_probability"], n_cells=len(summary["slices"]),
                           provenance={"skymap_sha256": sm.sha256, "site": sc.name, "start": summary["start"],
                                       "gwfollow": __version__}))
    return out


def _coverage_products(sm: SkyMap, config: Config, res: Resources, start: Time, region: object) -> list[Product]:
    """One product per configured coverage; a coverage that cannot be had is
    recorded with its error, and the others go on."""
    out = []
    for cc in config.coverages:
        try:
            cov = res.coverage(cc)
            result = coverage_probability(sm, cov, start, start + cc.window_s * u.s, region=region)
            body = dataclasses.asdict(result)
            if result.probability is not None:
                body["remaining_probability"] = max(0.0, sm.meta.prob_sum - result.probability)
            body["source"] = cov.source
            prob = result.probability
        except GwfollowError as exc:
            body = {"name": cc.name, "error": str(exc)}
            prob = None
        out.append(Product(kind=ProductKind.COVERAGE, name=cc.name, level=None, boundary=None, format="json",
                           data=json.dumps(body).encode(), area_deg2=body.get("coverage_area_deg2"),
                           probability=prob, n_cells=None,
                           provenance={"skymap_sha256": sm.sha256, "coverage": cc.name,
                                       "source": body.get("source"), "gwfollow": __version__}))
    return out


def _plan_products(sm: SkyMap, config: Config, res: Resources, start: Time) -> list[Product]:
    """One plan per configured telescope/site pair (and a joint one), executed pointings subtracted."""
    done = []
    for cc in config.coverages:
        if cc.pointings:
            try:
                done.append(res.coverage(cc))
            except GwfollowError as exc:
                log.warning("executed pointings %s not used in plans: %s", cc.name, exc)
    docs = plan_documents(sm, config, start, res.telescope, executed_ranges(done))
    return [Product(kind=ProductKind.PLAN, name=d.name, level=None, boundary=None, format="json", data=d.data,
                    area_deg2=None, probability=d.probability, n_cells=d.n_exposures,
                    provenance={**d.provenance, "skymap_sha256": sm.sha256, "gwfollow": __version__})
            for d in docs]
