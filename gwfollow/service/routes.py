"""HTTP routes under ``/api/v1`` (thin: the work is in the pipeline and store).

Errors are RFC 9457 problem details (``application/problem+json``) with a
stable ``code``; a stack trace never reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from gwfollow.pipeline.intake import RejectedAlert, submit_checked
from gwfollow.service.auth import token_matches

log = logging.getLogger("gwfollow.service")
PROBLEM = "application/problem+json"


class Problem(web.HTTPException):
    """An HTTP error rendered as RFC 9457 problem details."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        self.status_code = status
        super().__init__(content_type=PROBLEM)
        body = {"type": f"https://gwfollow.invalid/problems/{code}", "title": code.replace("-", " "),
                "status": status, "code": code, "detail": detail, **extra}
        import json

        self.text = json.dumps(body)


@web.middleware
async def error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except Problem:
        raise
    except web.HTTPException as exc:
        if exc.status >= 400:
            raise Problem(exc.status, exc.reason.lower().replace(" ", "-"), exc.reason) from None
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        raise Problem(500, "internal-error", "the server failed; the error is in its log") from None


@web.middleware
async def cors_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """CORS for the configured origins (``service.cors_origins``)."""
    from gwfollow.service.app import CONFIG

    origins = request.app[CONFIG].service.cors_origins
    origin = request.headers.get("Origin")
    allowed = origin is not None and ("*" in origins or origin in origins)
    if request.method == "OPTIONS" and allowed:
        resp: web.StreamResponse = web.Response(status=204)
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-None-Match, If-Modified-Since"
        resp.headers["Access-Control-Max-Age"] = "600"
    else:
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            resp = exc
            if allowed:
                exc.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            raise
    if allowed:
        resp.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin  # type: ignore[assignment]
        resp.headers["Access-Control-Expose-Headers"] = "ETag, Last-Modified"
        resp.headers["Vary"] = "Origin"
    return resp


def _bearer(request: web.Request) -> str | None:
    h = request.headers.get("Authorization", "")
    if h.lower().startswith("bearer "):
        return h[7:].strip()
    return None


def _unauthorized(detail: str, error: str | None = None) -> Problem:
    """401 with the ``WWW-Authenticate`` challenge of RFC 6750."""
    p = Problem(401, "unauthorized", detail)
    p.headers["WWW-Authenticate"] = 'Bearer realm="gwfollow"' + (f', error="{error}"' if error else "")
    return p


def require_write(request: web.Request) -> None:
    """401 without a token or with an unknown one; 403 for a known token without write scope."""
    from gwfollow.service.app import CONFIG

    cfg = request.app[CONFIG].service
    tok = _bearer(request)
    if tok is None:
        raise _unauthorized("a bearer token with write scope is required")
    if token_matches(tok, cfg.write_tokens_sha256):
        return
    if token_matches(tok, cfg.read_tokens_sha256):
        raise Problem(403, "forbidden", "this token may not write")
    raise _unauthorized("unknown token", "invalid_token")


def require_read(request: web.Request) -> None:
    """Nothing when ``read_open``; else 401 without a token or with an unknown one."""
    from gwfollow.service.app import CONFIG

    cfg = request.app[CONFIG].service
    if cfg.read_open:
        return
    tok = _bearer(request)
    if tok is None:
        raise _unauthorized("a bearer token is required")
    if not (token_matches(tok, cfg.read_tokens_sha256) or token_matches(tok, cfg.write_tokens_sha256)):
        raise _unauthorized("unknown token", "invalid_token")


async def health(request: web.Request) -> web.Response:
    from gwfollow.service.app import LISTENERS, PIPELINE, STORE

    pipe = request.app[PIPELINE]
    counts = await pipe.db(request.app[STORE].counts)
    listeners = []
    for lst in request.app[LISTENERS]:
        listeners.append({"kind": type(lst).__name__,
                          "connected": getattr(lst, "connected", True)})
    return web.json_response({"status": "ok", "queue_depth": pipe.queue_depth, "stats": dict(pipe.stats),
                              "store": counts, "listeners": listeners})


async def post_alert(request: web.Request) -> web.Response:
    from gwfollow.service.app import CONFIG, PIPELINE

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
    from gwfollow.service.openapi import spec

    require_read(request)
    return web.json_response(spec())


def add_routes(app: web.Application) -> None:
    from gwfollow.service import deadletters, views

    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/deadletters", deadletters.list_dead_letters)
    app.router.add_post("/api/v1/deadletters/requeue", deadletters.requeue_dead_letters)
    app.router.add_post("/api/v1/alerts", post_alert)
    app.router.add_get("/api/v1/events", views.list_events)
    app.router.add_get("/api/v1/events/{id}", views.get_event)
    app.router.add_get("/api/v1/events/{id}/moc", views.get_moc)
    app.router.add_get("/api/v1/events/{id}/targets", views.get_targets)
    app.router.add_get("/api/v1/events/{id}/observability", views.get_observability)
    app.router.add_get("/api/v1/events/{id}/coverage", views.get_coverage)
    app.router.add_get("/api/v1/events/{id}/report", views.get_report)
    app.router.add_get("/api/v1/events/{id}/report.png", views.get_report)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/metrics", views.metrics)
