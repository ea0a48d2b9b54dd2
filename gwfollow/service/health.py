"""``/api/v1/health``: each listener's real state and the intake errors, not a constant "ok".

A listener reports ``state`` (``starting``, ``ok``, ``degraded`` or ``failing``),
its last error, how many inputs it could not take in (``intake_errors``) and
how many of those fell within the window of the degraded rule
(``recent_intake_errors``; see :mod:`gwfollow.pipeline.intakeerrors`).  The
service is

* ``failing`` (HTTP 503) when a listener is failing (the Kafka broker cannot
  be reached, the spool directory cannot be listed): alerts are being missed;
* ``degraded`` (HTTP 200) when a listener is still starting, or is degraded
  (at least ``service.degraded_intake_errors`` intake errors within the last
  ``service.degraded_window_s`` seconds);
* ``ok`` otherwise.

:func:`listener_metrics` gives the same per listener for ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gwfollow.service.keys import LISTENERS, PIPELINE, STORE


def listener_health(listener: Any) -> dict[str, Any]:
    """What one listener says about itself."""
    return {"kind": type(listener).__name__,
            "state": getattr(listener, "state", "ok"),
            "connected": getattr(listener, "connected", getattr(listener, "link", "ok") == "ok"),
            "last_error": getattr(listener, "last_error", None),
            "intake_errors": getattr(listener, "intake_errors", 0),
            "recent_intake_errors": getattr(listener, "recent_intake_errors", 0)}


STATES = ("starting", "ok", "degraded", "failing")


def listener_metrics(listeners: list[Any]) -> list[str]:
    """Prometheus lines: intake errors and state of each listener (labelled by kind and index)."""
    lines = ["# HELP gwfollow_listener_intake_errors_total Inputs a listener could not take in.",
             "# TYPE gwfollow_listener_intake_errors_total counter"]
    entries = [(f'listener="{h["kind"]}",index="{i}"', h) for i, h in enumerate(map(listener_health, listeners))]
    lines += [f"gwfollow_listener_intake_errors_total{{{lab}}} {h['intake_errors']}" for lab, h in entries]
    lines += ["# HELP gwfollow_listener_state The state of each listener (1 for the current one).",
              "# TYPE gwfollow_listener_state gauge"]
    lines += [f'gwfollow_listener_state{{{lab},state="{s}"}} {int(h["state"] == s)}'
              for lab, h in entries for s in STATES]
    return lines


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
