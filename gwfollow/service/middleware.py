"""Middleware and request checks: RFC 9457 problem details, CORS, bearer-token scopes.

Errors are problem details (``application/problem+json``) with a stable
``code``; a stack trace never reaches the client.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from gwfollow.service.auth import READ_COOKIE, token_matches
from gwfollow.service.keys import CONFIG

log = logging.getLogger("gwfollow.service")
PROBLEM = "application/problem+json"


class Problem(web.HTTPException):
    """An HTTP error rendered as RFC 9457 problem details."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        self.status_code = status
        super().__init__(content_type=PROBLEM)
        body = {"type": f"https://gwfollow.invalid/problems/{code}", "title": code.replace("-", " "),
                "status": status, "code": code, "detail": detail, **extra}
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
    """Nothing when ``read_open``; else 401 without a token or with an unknown one.

    The token is the ``Authorization: Bearer`` one or, from a browser that
    signed in on the web pages, the ``HttpOnly`` read cookie.
    """
    cfg = request.app[CONFIG].service
    if cfg.read_open:
        return
    tok = _bearer(request)
    if tok is None:
        tok = request.cookies.get(READ_COOKIE)
    if tok is None:
        raise _unauthorized("a bearer token is required")
    if not (token_matches(tok, cfg.read_tokens_sha256) or token_matches(tok, cfg.write_tokens_sha256)):
        raise _unauthorized("unknown token", "invalid_token")
