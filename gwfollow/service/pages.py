"""Web pages for people: the event list (``/``) and one page per event (``/events/{id}``).

The event page shows the sky in Aladin Lite v3 (the npm package
``aladin-lite``, installed by ``make static`` and served from
``/static/vendor/aladin-lite/aladin.js``: no CDN at run time) with the
50/90 % MOCs, the ranked galaxies (a catalogue layer, details on click) and
the selected fields (their ``s_region`` footprints), the observation plans
(footprints coloured by time, a time-ordered table), the configured spatial
coverage MOCs cut to the event's region; the facts; the
revision timeline with what changed; the observability chart (inline SVG);
download links; and "send to TOPCAT / Aladin" through the SAMP Web Profile.
The data come from the REST API (``/api/v1``), fetched by the page's own
scripts.

Pages are Jinja2 templates with autoescaping; every page is served with a
Content-Security-Policy that allows scripts only from the service itself
(plus WebAssembly compilation, which Aladin Lite needs), survey tiles from
``https:`` hosts, and the SAMP Web Profile hub on ``localhost:21012``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from gwfollow.products.facts import change_lines, facts_lines
from gwfollow.kernels import ranges as kr
from gwfollow.products.resources import Resources
from gwfollow.products.summary import event_summary
from gwfollow.regions.frame import ranges_frame
from gwfollow.regions.moc import moc_from_ranges
from gwfollow.regions.mocio import moc_bytes, read_space_moc_fits
from gwfollow.service.auth import READ_COOKIE, token_matches
from gwfollow.service.keys import CONFIG, PIPELINE, STORE
from gwfollow.service.middleware import Problem, require_read

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
ALADIN_JS = STATIC / "vendor" / "aladin-lite" / "aladin.js"
#: The pages' own catalogue/telescope/coverage resources (coverages are loaded once per process).
PAGE_RESOURCES = web.AppKey("page_resources", Resources)

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",  # Aladin Lite sets element styles
    "img-src 'self' data: blob: https:",
    "connect-src 'self' data: https: http://localhost:21012 http://127.0.0.1:21012",  # data: Aladin's WebAssembly
    "worker-src 'self' blob:",
    "font-src 'self' data:",
    "form-action 'self'",  # the sign-in form only
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])

TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                          autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)


def _page(name: str, status: int = 200, **context: Any) -> web.Response:
    body = TEMPLATES.get_template(name).render(**{"signed_in": False, **context})
    return web.Response(text=body, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"})


def _signin_page(next_path: str, error: str | None = None) -> web.Response:
    """401 with the sign-in form (what to do, not a bare error)."""
    resp = _page("signin.html", status=401, next=_safe_next(next_path), error=error)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="gwfollow"'
    return resp


def _safe_next(path: str) -> str:
    """Where to go after signing in: a path on this service only (no ``//host`` or scheme)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _reader(request: web.Request) -> web.Response | None:
    """None when the request may read; else the sign-in page for it."""
    try:
        require_read(request)
    except Problem as exc:
        if exc.status != 401:
            raise
        return _signin_page(request.path_qs,
                            "that token is not accepted any more" if READ_COOKIE in request.cookies else None)
    return None


def _signed_in(request: web.Request) -> bool:
    return not request.app[CONFIG].service.read_open


def _same_origin(request: web.Request) -> None:
    """403 for a form posted from another site's page (its ``Origin`` is not this service's)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Problem(403, "cross-site-form", "sign in and out from this service's own pages")


async def signin(request: web.Request) -> web.Response:
    """``POST /signin`` (form ``token``, ``next``): keep a valid read token in an ``HttpOnly`` cookie.

    The cookie is ``SameSite=Strict`` (and ``Secure`` over HTTPS) and grants
    reading only.  A form posted from another site's page is refused (its
    ``Origin`` is not this service's).
    """
    _same_origin(request)
    form = await request.post()
    token, next_path = str(form.get("token", "")).strip(), _safe_next(str(form.get("next", "/")))
    cfg = request.app[CONFIG].service
    if not token or not (token_matches(token, cfg.read_tokens_sha256) or token_matches(token, cfg.write_tokens_sha256)):
        return _signin_page(next_path, "unknown token: ask the service's operator for a read token")
    resp = web.HTTPSeeOther(next_path)
    resp.set_cookie(READ_COOKIE, token, path="/", httponly=True, samesite="Strict", secure=request.secure)
    resp.headers["Cache-Control"] = "no-store"
    raise resp


async def signout(request: web.Request) -> web.Response:
    """``POST /signout``: forget the browser's read token."""
    _same_origin(request)
    resp = web.HTTPSeeOther("/")
    resp.del_cookie(READ_COOKIE, path="/")
    raise resp


async def index(request: web.Request) -> web.Response:
    """``GET /``: events, newest first; the page polls the API for new ones."""
    if (need := _reader(request)) is not None:
        return need
    store = request.app[STORE]
    events = await request.app[PIPELINE].db(store.events)
    events = sorted(events, key=lambda e: (e.updated_at, e.superevent_id), reverse=True)
    return _page("index.html", events=events, signed_in=_signed_in(request))


def observability_bars(summary: dict[str, Any], width: int = 720, height: int = 160) -> dict[str, Any]:
    """Geometry of the observability bar chart (SVG units) from a site summary."""
    slices = summary.get("slices") or []
    n = max(len(slices), 1)
    bw = width / n
    top = max([s["probability"] for s in slices] + [1e-12])
    bars = [{"x": round(i * bw, 2), "w": round(max(bw - 1, 0.5), 2),
             "h": round(height * s["probability"] / top, 2), "y": round(height - height * s["probability"] / top, 2),
             "title": f"{s['start']} probability {s['probability']:.3f}, Sun {s['sun_alt_deg']:.0f} deg"}
            for i, s in enumerate(slices)]
    ticks = [{"x": round(i * bw, 2), "label": s["start"][5:16].replace("T", " ")}
             for i, s in enumerate(slices) if i % max(n // 6, 1) == 0]
    return {"site": summary.get("site"), "width": width, "height": height, "bars": bars, "ticks": ticks,
            "top": top, "total": summary.get("total_observable_probability")}


def _plan_view(product: dict[str, Any], store: Any, base: str) -> dict[str, Any]:
    """A stored plan as the page shows it: its URL, covered probability and time-ordered exposures."""
    name = product["name"]
    prov = product["provenance"]
    if name == "joint":
        query = "telescope=joint"
    else:
        tel, _, site = name.partition("@")
        query = f"telescope={quote(tel)}&site={quote(site)}"
    rows: list[dict[str, Any]] = []
    if not prov.get("error"):
        rows = json.loads(store.product_data(product["id"])).get("rows", [])
    return {"name": name, "url": f"{base}/plan?{query}", "error": prov.get("error"),
            "probability": prov.get("probability"), "rows": rows,
            "telescopes": sorted({r.get("telescope", "") for r in rows})}


def _event_context(store: Any, sid: str, config: Any) -> dict[str, Any]:
    """Everything the event page shows (runs in a worker thread: store reads and a MOC decode)."""
    summary = event_summary(store, sid, config)
    latest = store.latest_skymap(sid)
    prods = [p for p in store.products_of(sid, False) if latest and p["skymap_id"] == latest["id"]]
    base = f"/api/v1/events/{sid}"
    mocs = sorted((p for p in prods if p["kind"] == "moc"), key=lambda p: p["level"])
    frame = (0.0, 0.0, 180.0)
    if mocs:
        ranges, _ = read_space_moc_fits(store.product_data(mocs[-1]["id"]))
        frame = ranges_frame(ranges)
    tables = [{"kind": p["kind"], "name": p["name"],
               "url": f"{base}/targets?kind={p['kind']}&{'catalog' if p['kind'] == 'galaxies' else 'telescope'}="
                      f"{p['name']}"} for p in prods if p["kind"] in ("galaxies", "fields")]
    charts = [observability_bars(json.loads(store.product_data(p["id"])))
              for p in prods if p["kind"] == "observability"]
    plans = [_plan_view(p, store, base) for p in sorted((p for p in prods if p["kind"] == "plan"),
                                                        key=lambda p: (p["name"] == "joint", p["name"]))]
    layers = {"event": base, "mocs": [{"level": p["level"], "url": f"{base}/moc?level={p['level']:g}&format=json"} for p in mocs],
              "galaxies": [t["url"] + "&limit=200" for t in tables if t["kind"] == "galaxies"],
              "fields": [t["url"] for t in tables if t["kind"] == "fields"],
              "plans": [{"name": p["name"], "url": p["url"]} for p in plans if not p["error"]],
              "coverages": [{"name": c.name, "url": f"/events/{sid}/coverage/{c.name}.json"}
                            for c in config.coverages],
              "ra": frame[0], "dec": frame[1], "fov": min(180.0, max(2.5 * frame[2], 1.0)),
              "samp": [{"mtype": "coverage.load.moc.fits", "url": f"{base}/moc?level={p['level']:g}",
                        "name": f"{sid} {p['level']:.0%} region"} for p in mocs]
              + [{"mtype": "table.load.votable", "url": t["url"] + "&format=votable",
                  "name": f"{sid} {t['kind']} ({t['name']})"} for t in tables]
              + [{"mtype": "table.load.votable", "url": p["url"] + "&format=votable",
                  "name": f"{sid} plan ({p['name']})"} for p in plans if not p["error"]]}
    return {"sid": sid, "summary": summary, "facts": facts_lines(summary.get("facts") or {}),
            "changes": [change_lines(c) for c in summary.get("changes") or []], "mocs": mocs, "tables": tables,
            "plans": plans,
            "charts": charts, "base": base, "layers": json.dumps(layers), "retracted": summary["retracted"]}


async def event_page(request: web.Request) -> web.Response:
    """``GET /events/{id}``: the event in Aladin Lite, its facts, revisions and products."""
    if (need := _reader(request)) is not None:
        return need
    store = request.app[STORE]
    sid = request.match_info["id"]
    ev = await request.app[PIPELINE].db(store.event, sid)
    if ev is None:
        raise Problem(404, "unknown-event", f"no event {sid}")
    ctx = await request.app[PIPELINE].db(_event_context, store, sid, request.app[CONFIG])
    return _page("event.html", aladin=ALADIN_JS.is_file(), signed_in=_signed_in(request), **ctx)


def coverage_in_region(store: Any, sid: str, config: Any, name: str, resources: Resources) -> bytes:
    """A configured spatial coverage cut to the event's widest credible region, as MOC 2.0 JSON.

    Raises
    ------
    Problem
        404 when the coverage is not configured, is not a spatial MOC, or the
        event has no region yet.
    """
    ccs = {c.name: c for c in config.coverages}
    if name not in ccs:
        raise Problem(404, "unknown-coverage", f"no coverage {name!r}; configured: {', '.join(ccs) or '-'}")
    cov = resources.coverage(ccs[name])
    if cov.ranges is None:
        raise Problem(404, "not-spatial", f"coverage {name!r} is a {cov.kind} MOC; the page draws spatial ones")
    latest = store.latest_skymap(sid)
    mocs = [p for p in store.products_of(sid, False) if latest and p["skymap_id"] == latest["id"]
            and p["kind"] == "moc"]
    if not mocs:
        raise Problem(404, "no-products", f"{sid} has no credible region yet")
    region, order = read_space_moc_fits(store.product_data(max(mocs, key=lambda p: p["level"])["id"]))
    return moc_bytes(moc_from_ranges(kr.intersection(cov.ranges, region), min(29, max(order, cov.max_order))),
                     "json")


async def coverage_moc(request: web.Request) -> web.Response:
    """``GET /events/{id}/coverage/{name}.json``: a coverage MOC within the event's region (for the viewer)."""
    require_read(request)
    sid = request.match_info["id"]
    if await request.app[PIPELINE].db(request.app[STORE].event, sid) is None:
        raise Problem(404, "unknown-event", f"no event {sid}")
    resources = request.app.setdefault(PAGE_RESOURCES, Resources(request.app[CONFIG]))
    body = await request.app[PIPELINE].db(coverage_in_region, request.app[STORE], sid, request.app[CONFIG],
                                          request.match_info["name"], resources)
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-cache"})


def add_page_routes(app: web.Application) -> None:
    """The pages and their static files (scripts, styles, the vendored Aladin Lite)."""
    app.router.add_get("/", index)
    app.router.add_get("/events/{id}", event_page)
    app.router.add_get("/events/{id}/coverage/{name}.json", coverage_moc)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
