"""Product endpoints for observatories and follow-up teams (polling-friendly).

Every GET answers with a strong ``ETag`` (the SHA-256 of the body) and, for
event resources, ``Last-Modified``; ``If-None-Match`` / ``If-Modified-Since``
give ``304 Not Modified``.  Products of a retracted event answer ``410 Gone``
with a JSON problem body.  Conversions (MOC formats, table formats) are
cached in memory, keyed by the stored product.
"""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from aiohttp import web
from astropy.time import Time

from gwfollow.products.ondemand import moc_fits_at_level
from gwfollow.products.report import convert_observability, convert_table
from gwfollow.products.summary import event_summary, render_report, report_inputs
from gwfollow.records import EventRecord
from gwfollow.regions.mocio import convert_space_moc
from gwfollow.service.caching import cached, conditional
from gwfollow.service.health import listener_metrics
from gwfollow.service.keys import CONFIG, LISTENERS, PIPELINE, REPORTS, STORE
from gwfollow.service.middleware import Problem, require_read, require_write
from gwfollow.service.reports import revision_key
from gwfollow.service.openapi import spec
from gwfollow.pipeline.intake import RejectedAlert, submit_checked
from gwfollow.service.safety import content_disposition
from gwfollow.units import parse_duration_s

#: Longest space-time MOC window served (a century; also rules out inf).
MAX_DURATION_S = 100 * 365.25 * 86400.0
MOC_FORMATS = {"fits": "application/fits", "json": "application/json", "ascii": "text/plain"}
TABLE_FORMATS = {"json": "application/json", "csv": "text/csv",
                 "votable": "application/x-votable+xml"}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, default=str).encode()


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise Problem(400, "bad-parameter", f"{name}={raw!r} is not an integer", parameter=name) from None
    if not lo <= v <= hi:
        raise Problem(400, "bad-parameter", f"{name}={v} is not in [{lo}, {hi}]", parameter=name)
    return v


def _choice(request: web.Request, name: str, choices: Any, default: str | None) -> str | None:
    v = request.query.get(name, default)
    if v is not None and v not in choices:
        raise Problem(400, "bad-parameter", f"{name}={v!r} is not one of {', '.join(choices)}", parameter=name)
    return v


async def _db(request: web.Request, fn, *args):  # type: ignore[no-untyped-def]

    return await request.app[PIPELINE].db(fn, *args)


async def _event_or_404(request: web.Request) -> EventRecord:
    sid = request.match_info["id"]
    ev = await _db(request, request.app[STORE].event, sid)
    if ev is None:
        raise Problem(404, "unknown-event", f"no event {sid}")
    return ev


#: ``Retry-After`` of a product still being computed by the second step, seconds.
RETRY_AFTER_S = 2


async def _second_step_problem(request: web.Request, ev: EventRecord, alert_id: int | None, part: str,
                               what: str) -> Problem | None:
    """503 + ``Retry-After`` while the alert's second step (``part``: ``gw`` or ``combined``)
    is pending, 409 when it failed; None when it is done or there is none
    (``alert_id`` None: the event's latest alert)."""
    works = await _db(request, request.app[STORE].deferred_of, ev.superevent_id)
    work = next((w for w in works if w.alert_id == alert_id), None) if alert_id is not None else \
        (works[-1] if works else None)
    if work is None or part not in work.parts.parts or work.state == "done":
        return None
    if work.state == "failed":
        return Problem(409, "products-failed", f"the {what} of {ev.superevent_id} could not be made: {work.error}",
                       processing=work.as_json())
    p = Problem(503, "products-pending", f"the {what} of {ev.superevent_id} is being computed (second step, "
                f"queued {work.created_at}); try again shortly", processing=work.as_json())
    p.headers["Retry-After"] = str(RETRY_AFTER_S)
    return p


def _gone_if_retracted(ev: EventRecord) -> None:
    if ev.retracted:
        raise Problem(410, "event-retracted", f"{ev.superevent_id} was retracted; its products are withdrawn",
                      retracted_at=ev.retracted_at)


@cached
async def list_events(request: web.Request) -> web.Response:
    """``GET /api/v1/events?state=&significant=&group=&since=&limit=&offset=``."""

    state = _choice(request, "state", ("active", "retracted"), None)
    group = request.query.get("group")
    sig = _choice(request, "significant", ("true", "false"), None)
    since = request.query.get("since")
    if since is not None:
        try:
            since_dt = datetime.fromisoformat(since.replace("Z", "+00:00"))
            if since_dt.tzinfo is None:
                since_dt = since_dt.replace(tzinfo=timezone.utc)
        except ValueError:
            raise Problem(400, "bad-parameter", f"since={since!r} is not an ISO 8601 time",
                          parameter="since") from None
    limit = _int_param(request, "limit", 100, 1, 1000)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    events = await _db(request, request.app[STORE].events)
    out = []
    for e in events:
        if state and e.state != state:
            continue
        if group and e.group != group:
            continue
        if sig is not None and bool(e.significant) != (sig == "true"):
            continue
        if since is not None and datetime.fromisoformat(e.updated_at) <= since_dt:
            continue
        out.append(e)
    out.sort(key=lambda e: (e.updated_at, e.superevent_id))
    page = out[offset: offset + limit]
    base = "/api/v1/events/"
    body = {
        "events": [{**e.as_json(), "href": base + e.superevent_id} for e in page],
        "total": len(out), "offset": offset, "limit": limit,
        "next": (f"/api/v1/events?offset={offset + limit}&limit={limit}" if offset + limit < len(out) else None),
    }
    last = max((e.updated_at for e in page), default=None)
    return conditional(request, _json(body), "application/json", last_modified=last)


@cached
async def get_event(request: web.Request) -> web.Response:
    """``GET /api/v1/events/{id}``: alert history, sky-map versions, areas, product links."""

    ev = await _event_or_404(request)
    store = request.app[STORE]
    sid = ev.superevent_id
    summary = await _db(request, event_summary, store, sid, request.app[CONFIG])
    products = await _db(request, store.products_of, sid)
    base = f"/api/v1/events/{sid}"
    links = {"moc": [f"{base}/moc?level={lv:g}" for lv in request.app[CONFIG].skymap.levels],
             "report": f"{base}/report", "report_png": f"{base}/report.png", "coverage": f"{base}/coverage"}
    kinds = sorted({(p["kind"], p["name"]) for p in products if p["kind"] in ("galaxies", "fields")})
    links["targets"] = [f"{base}/targets?kind={k}&{'catalog' if k == 'galaxies' else 'telescope'}={n}"
                        for k, n in kinds]
    links["plan"] = [f"{base}/plan?" + ("telescope=joint" if n == "joint" else "telescope={}&site={}".format(
        *n.split("@", 1))) for n in sorted({p["name"] for p in products if p["kind"] == "plan" and "@" in p["name"]
                                            or p["kind"] == "plan" and p["name"] == "joint"})]
    works = await _db(request, store.deferred_of, sid)
    states = {w.state for w in works}
    body = {**summary, "updated_at": ev.updated_at, "links": links,
            "processing": {"state": "pending" if "pending" in states else "failed" if "failed" in states
                           else "complete",
                           "second_steps": [{"alert_id": w.alert_id, **w.as_json()} for w in works]}}
    return conditional(request, _json(body), "application/json", last_modified=ev.updated_at)


async def _latest_map(request: web.Request, ev: EventRecord) -> dict[str, Any]:
    """The latest sky map of the ``role`` asked for (``gw`` by default, or ``combined``)."""
    maps = await _db(request, request.app[STORE].skymaps_of, ev.superevent_id)
    role = request.query.get("role", "gw")
    latest = next((m for m in reversed(maps) if m["role"] == role), None)
    if latest is None:
        if not maps:
            raise Problem(404, "no-products", f"{ev.superevent_id} has no sky map yet")
        pending = await _second_step_problem(request, ev, None, role, f"{role} sky map")
        if pending is not None:
            raise pending
        roles = sorted({m["role"] for m in maps})
        raise Problem(404, "no-such-map", f"{ev.superevent_id} has no {role!r} sky map; it has: "
                      + ", ".join(roles), parameter="role", available=roles)
    return latest


async def _latest_products(request: web.Request, ev: EventRecord) -> list[dict[str, Any]]:
    latest = await _latest_map(request, ev)
    prods = await _db(request, request.app[STORE].products_of, ev.superevent_id, False)
    return [p for p in prods if p["skymap_id"] == latest["id"]]


@functools.lru_cache(maxsize=512)
def _moc_bytes(fits_bytes: bytes, fmt: str, duration: float | None, event_mjd: float | None,
               time_order: int) -> bytes:
    return convert_space_moc(fits_bytes, fmt, event_mjd, duration, time_order)


@cached
async def get_moc(request: web.Request) -> web.Response:
    """``GET /api/v1/events/{id}/moc?level=0.9&format=fits|json|ascii[&duration=1d]``."""

    ev = await _event_or_404(request)
    _gone_if_retracted(ev)
    raw_level = request.query.get("level", "0.9")
    try:
        level = float(raw_level)
    except ValueError:
        raise Problem(400, "bad-parameter", f"level={raw_level!r} is not a number", parameter="level") from None
    fmt = _choice(request, "format", tuple(MOC_FORMATS), "fits")
    duration = None
    if "duration" in request.query:
        try:
            duration = parse_duration_s(request.query["duration"])
        except ValueError as exc:
            raise Problem(400, "bad-parameter", str(exc), parameter="duration") from None
        if not duration <= MAX_DURATION_S:
            raise Problem(400, "bad-parameter", f"duration={request.query['duration']!r} is longer than "
                          f"{MAX_DURATION_S / 86400 / 365.25:g} years", parameter="duration")
    if not 0.0 < level <= 1.0:
        raise Problem(400, "bad-parameter", f"level={raw_level!r} is not in (0, 1]", parameter="level")
    prods = [p for p in await _latest_products(request, ev) if p["kind"] == "moc"]
    match = next((p for p in prods if abs(p["level"] - level) < 1e-9), None)
    if match is not None:
        data = await _db(request, request.app[STORE].product_data, match["id"])
        created = match["created_at"]
    else:  # a level that is not configured: computed once from the stored map, then cached
        data, created = await _moc_on_request(request, ev, level)
    event_mjd = None
    if duration is not None:
        latest = await _latest_map(request, ev)  # the event time of the map of the role asked for
        meta = latest["meta"]
        et = meta.get("event_time")
        if meta.get("event_mjd") is None and not et:
            raise Problem(409, "no-event-time", "the sky map has no event time for a space-time MOC")
        # The sky map's own event MJD (as `gwfollow moc --duration` uses): the same window to the microsecond.
        event_mjd = meta["event_mjd"] if meta.get("event_mjd") is not None else Time(et, scale="utc").mjd
    body = await asyncio.to_thread(_moc_bytes, data, fmt, duration, event_mjd,
                                   request.app[CONFIG].moc.stmoc_time_order)
    return conditional(request, body, MOC_FORMATS[fmt], last_modified=created,
                       headers={"Content-Disposition": content_disposition(
                           f'{ev.superevent_id}-moc-{level:g}.{"txt" if fmt == "ascii" else fmt}')})


async def _moc_on_request(request: web.Request, ev: EventRecord, level: float) -> tuple[bytes, str]:
    latest = await _latest_map(request, ev)
    raw = await _db(request, request.app[STORE].skymap_bytes, latest["id"])
    cfg = request.app[CONFIG].skymap
    data = await asyncio.to_thread(moc_fits_at_level, latest["sha256"], raw, level, cfg.boundary, cfg)
    return data, latest["stored_at"]


@functools.lru_cache(maxsize=1024)
def _table_bytes(json_bytes: bytes, fmt: str, limit: int | None, site: str | None = None,
                 provenance: tuple[tuple[str, str], ...] = ()) -> bytes:
    return convert_table(json_bytes, fmt, limit, site, dict(provenance))


async def _alert_provenance(request: web.Request, ev: EventRecord, skymap_id: int) -> tuple[tuple[str, str], ...]:
    """``alert_id`` and the ``alert_type`` of the sky map a table was made from (a table's provenance)."""
    maps = await _db(request, request.app[STORE].skymaps_of, ev.superevent_id)
    alert_type = next((m["alert_type"] for m in maps if m["id"] == skymap_id), None)
    return (("alert_id", ev.superevent_id),) + ((("alert_type", alert_type),) if alert_type else ())


@cached
async def get_targets(request: web.Request) -> web.Response:
    """``GET /api/v1/events/{id}/targets?kind=galaxies|fields&catalog=&telescope=&site=&limit=&format=``.

    ``site`` keeps only that site's observing windows.
    """

    ev = await _event_or_404(request)
    _gone_if_retracted(ev)
    kind = _choice(request, "kind", ("galaxies", "fields"), "galaxies")
    fmt = _choice(request, "format", tuple(TABLE_FORMATS), "json")
    limit = _int_param(request, "limit", 0, 0, 100000) or None
    name = request.query.get("catalog" if kind == "galaxies" else "telescope")
    prods = [p for p in await _latest_products(request, ev) if p["kind"] == kind]
    if not prods:
        raise Problem(404, "no-targets", f"no {kind} for {ev.superevent_id}")
    match = prods[0] if name is None else next((p for p in prods if p["name"] == name), None)
    if match is None:
        raise Problem(404, "no-targets", f"no {kind} list named {name!r}; available: "
                      + ", ".join(p["name"] for p in prods))
    data = await _db(request, request.app[STORE].product_data, match["id"])
    site = request.query.get("site")
    if site is not None and f'"windows_{site}"'.encode() not in data[:4096]:
        raise Problem(404, "unknown-site", f"no observing windows for site {site!r}", parameter="site")
    prov = await _alert_provenance(request, ev, match["skymap_id"])
    body = await asyncio.to_thread(_table_bytes, data, fmt, limit, site, prov)
    return conditional(request, body, TABLE_FORMATS[fmt], last_modified=match["created_at"])


@cached
async def get_plan(request: web.Request) -> web.Response:
    """``GET /api/v1/events/{id}/plan?telescope=&site=&format=json|csv|votable&role=``.

    One row per exposure, time-ordered.  ``telescope`` and ``site`` pick a
    configured pair (the first by default); ``telescope=joint`` gives the
    joint plan of all pairs.
    """
    ev = await _event_or_404(request)
    _gone_if_retracted(ev)
    fmt = _choice(request, "format", tuple(TABLE_FORMATS), "json")
    limit = _int_param(request, "limit", 0, 0, 1_000_000) or None
    tel, site = request.query.get("telescope"), request.query.get("site")
    latest = await _latest_map(request, ev)
    prods = [p for p in await _latest_products(request, ev) if p["kind"] == "plan"]
    if not prods:
        pending = await _second_step_problem(request, ev, latest["alert_id"], latest["role"], "observation plan")
        if pending is not None:
            raise pending
        raise Problem(404, "no-plan", f"no observation plan for {ev.superevent_id}",
                      hint="configure [telescopes.NAME] and [sites.NAME] with [plan] enabled = true")

    def fits(p: dict[str, Any]) -> bool:
        t, _, s = p["name"].partition("@")
        if tel is not None and tel == "joint":
            return p["name"] == "joint"
        return (tel is None or t.lower() == tel.lower()) and (site is None or s.lower() == site.lower()) \
            and p["name"] != "joint"

    match = next((p for p in prods if fits(p)), None)
    if match is None:
        raise Problem(404, "no-plan", f"no plan for telescope={tel!r} site={site!r}; available: "
                      + ", ".join(p["name"] for p in prods), available=[p["name"] for p in prods])
    if match["provenance"].get("error"):
        raise Problem(409, "plan-failed", f"the plan {match['name']} could not be made: {match['provenance']['error']}")
    data = await _db(request, request.app[STORE].product_data, match["id"])
    prov = await _alert_provenance(request, ev, match["skymap_id"])
    body = await asyncio.to_thread(_table_bytes, data, fmt, limit, None, prov)
    return conditional(request, body, TABLE_FORMATS[fmt], last_modified=match["created_at"])


@cached
async def get_coverage(request: web.Request) -> web.Response:
    """``GET /api/v1/events/{id}/coverage``: GW probability covered by each configured coverage."""

    ev = await _event_or_404(request)
    _gone_if_retracted(ev)
    latest = await _latest_map(request, ev)
    prods = [p for p in await _latest_products(request, ev) if p["kind"] == "coverage"]
    if not prods and request.app[CONFIG].coverages:
        pending = await _second_step_problem(request, ev, latest["alert_id"], latest["role"], "coverages")
        if pending is not None:
            raise pending
    items = []
    for p in prods:
        items.append(json.loads(await _db(request, request.app[STORE].product_data, p["id"])))
    last = max((p["created_at"] for p in prods), default=ev.updated_at)
    return conditional(request, _json({"superevent_id": ev.superevent_id, "coverages": items}),
                       "application/json", last_modified=last)


@cached
async def get_observability(request: web.Request) -> web.Response:
    """``GET /api/v1/events/{id}/observability?site=&format=json|csv|votable``: probability per time slice."""

    ev = await _event_or_404(request)
    _gone_if_retracted(ev)
    latest = await _latest_map(request, ev)
    prods = [p for p in await _latest_products(request, ev) if p["kind"] == "observability"]
    if not prods:
        pending = await _second_step_problem(request, ev, latest["alert_id"], latest["role"], "observability")
        if pending is not None:
            raise pending
    site = request.query.get("site")
    match = prods[0] if prods and site is None else next((p for p in prods if p["name"] == site), None)
    if match is None:
        raise Problem(404, "no-observability", f"no observability for site {site!r}; available: "
                      + ", ".join(p["name"] for p in prods))
    data = await _db(request, request.app[STORE].product_data, match["id"])
    fmt = _choice(request, "format", tuple(TABLE_FORMATS), "json")
    if fmt != "json":
        data = convert_observability(data, fmt, {"alert_id": ev.superevent_id,
                                                 "skymap_sha256": match["provenance"].get("skymap_sha256")})
    return conditional(request, data, TABLE_FORMATS[fmt], last_modified=match["created_at"])


async def get_report(request: web.Request) -> web.Response:
    """``GET /api/v1/events/{id}/report`` (HTML) and ``/report.png``: rendered once per sky-map
    revision of the event (see :mod:`gwfollow.service.reports`), 410 once it is retracted."""

    require_read(request)
    ev = await _event_or_404(request)
    reports = request.app[REPORTS]
    if ev.retracted:
        reports.drop_event(ev.superevent_id)
        _gone_if_retracted(ev)
    store, config = request.app[STORE], request.app[CONFIG]
    key = await _db(request, revision_key, store, ev)

    async def render() -> tuple[bytes, bytes | None]:
        inputs = await _db(request, report_inputs, store, ev.superevent_id, config)
        return await asyncio.to_thread(render_report, inputs, config,
                                       f"/api/v1/events/{quote(ev.superevent_id)}/report.png")

    html, png = await reports.get(key, render)
    if request.path.endswith(".png"):
        if png is None:
            raise Problem(404, "no-report", f"no sky map for {ev.superevent_id} yet")
        return conditional(request, png, "image/png", last_modified=ev.updated_at)
    return conditional(request, html, "text/html", last_modified=ev.updated_at)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""

    require_read(request)
    pipe = request.app[PIPELINE]
    counts = await pipe.db(request.app[STORE].counts)
    lines = ["# HELP gwfollow_messages_total Messages by outcome.", "# TYPE gwfollow_messages_total counter"]
    for k, v in sorted(pipe.stats.items()):
        if not k.startswith("type."):
            lines.append(f'gwfollow_messages_total{{outcome="{k}"}} {v}')
    lines += ["# HELP gwfollow_alerts_total Processed alerts by type.", "# TYPE gwfollow_alerts_total counter"]
    for k, v in sorted(pipe.stats.items()):
        if k.startswith("type."):
            lines.append(f'gwfollow_alerts_total{{alert_type="{k[5:]}"}} {v}')
    lines += ["# HELP gwfollow_stage_seconds_total Time spent per pipeline stage.",
              "# TYPE gwfollow_stage_seconds_total counter"]
    for k, v in sorted(pipe.stage_seconds.items()):
        lines.append(f'gwfollow_stage_seconds_total{{stage="{k}"}} {v:.6f}')
    lines += ["# HELP gwfollow_queue_depth Messages waiting for a worker.", "# TYPE gwfollow_queue_depth gauge",
              f"gwfollow_queue_depth {pipe.queue_depth}",
              "# HELP gwfollow_store_rows Rows per table.", "# TYPE gwfollow_store_rows gauge"]
    for k, v in sorted(counts.items()):
        lines.append(f'gwfollow_store_rows{{table="{k}"}} {v}')
    lines += listener_metrics(request.app[LISTENERS])
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def post_alert(request: web.Request) -> web.Response:

    require_write(request)
    limit_s = request.app[CONFIG].service.body_timeout_s
    try:
        async with asyncio.timeout(limit_s):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Problem(413, "payload-too-large", "the alert is larger than service.max_body_mib") from None
    except TimeoutError:
        raise Problem(408, "request-timeout", f"the body did not arrive within {limit_s:g} s "
                      "(service.body_timeout_s)") from None
    if not body:
        raise Problem(400, "empty-body", "POST the alert message (JSON, VOEvent XML or FITS) as the body")
    pipe = request.app[PIPELINE]
    try:
        acc = await submit_checked(pipe, body, f"http:{request.remote or '?'}")
    except RejectedAlert as exc:
        raise Problem(422, "invalid-alert", exc.reason, raw_id=exc.raw_id) from None
    return web.json_response({"raw_id": acc.raw_id, "new": acc.new, "status": acc.status}, status=202)


async def openapi(request: web.Request) -> web.Response:
    require_read(request)
    return web.json_response(spec())
