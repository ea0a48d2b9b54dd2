"""``/api/v1/health``: each listener's real state and the intake errors, not a constant "ok".

A listener reports ``state`` (``starting``, ``ok`` or ``failing``), its last
error and how many inputs it could not take in.  The service is

* ``failing`` (HTTP 503) when a listener is failing (the Kafka broker cannot
  be reached, the spool directory cannot be listed): alerts are being missed;
* ``degraded`` (HTTP 200) when a listener is still starting;
* ``ok`` otherwise.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gwfollow.service.keys import LISTENERS, PIPELINE, STORE


def listener_health(listener: Any) -> dict[str, Any]:
    """What one listener says about itself."""
    return {"kind": type(listener).__name__,
            "state": getattr(listener, "state", "ok"),
            "connected": getattr(listener, "connected", getattr(listener, "state", "ok") == "ok"),
            "last_error": getattr(listener, "last_error", None),
            "intake_errors": getattr(listener, "intake_errors", 0)}


def overall(listeners: list[dict[str, Any]]) -> str:
    """``failing``, ``degraded`` or ``ok`` from the listeners' states."""
    states = {entry["state"] for entry in listeners}
    if "failing" in states:
        return "failing"
    if states - {"ok"}:
        return "degraded"
    return "ok"


async def health(request: web.Request) -> web.Response:
    """The health document; 503 when the service is failing."""
    pipe = request.app[PIPELINE]
    counts = await pipe.db(request.app[STORE].counts)
    listeners = [listener_health(lst) for lst in request.app[LISTENERS]]
    status = overall(listeners)
    intake = {"dead_letters": counts.get("dead_letters", 0),
              "listener_errors": sum(entry["intake_errors"] for entry in listeners)}
    return web.json_response({"status": status, "queue_depth": pipe.queue_depth, "stats": dict(pipe.stats),
                              "store": counts, "listeners": listeners, "intake": intake},
                             status=503 if status == "failing" else 200)
