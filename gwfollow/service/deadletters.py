"""``/api/v1/deadletters``: list and requeue dead letters (write scope)."""

from __future__ import annotations

import json

from aiohttp import web

from gwfollow.pipeline.deadletters import requeue_dead
from gwfollow.service.keys import PIPELINE, STORE
from gwfollow.service.middleware import Problem, require_write


async def list_dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/deadletters?all=true``: open dead letters (or all with ``all=true``)."""
    require_write(request)
    only_open = request.query.get("all", "false") != "true"
    rows = await request.app[PIPELINE].db(request.app[STORE].dead_letters, only_open)
    for r in rows:
        r["transient"] = bool(r["transient"])
    return web.json_response({"dead_letters": rows, "total": len(rows)})


async def requeue_dead_letters(request: web.Request) -> web.Response:
    """``POST /api/v1/deadletters/requeue`` with ``{"ids": [..]}``, ``{"transient": true}`` or ``{}`` (all)."""
    require_write(request)
    raw = await request.read()
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Problem(422, "bad-body", "the body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise Problem(422, "bad-body", "the body must be a JSON object")
    ids = doc.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                                              for i in ids)):
        raise Problem(422, "bad-body", "ids must be a list of dead-letter ids (integers)")
    requeued = await requeue_dead(request.app[PIPELINE], ids, bool(doc.get("transient", False)))
    return web.json_response({"requeued_raw_ids": requeued}, status=202)
