"""The OpenAPI 3.1 description of the HTTP API (served at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from gwfollow.version import __version__


def _problem(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _q(name: str, desc: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": desc, "schema": schema}


_ID = {"name": "id", "in": "path", "required": True, "description": "Superevent id, e.g. S241102br",
       "schema": {"type": "string"}}
_ROLE = {"name": "role", "in": "query", "required": False,
         "description": "which sky map of the alert: gw (default) or combined (GW+GRB); 404 when the event has none",
         "schema": {"type": "string", "enum": ["gw", "combined"]}}
_COND = {"304": {"description": "Not modified (If-None-Match / If-Modified-Since)"}}
_ERRS = {"400": _problem("Bad parameter"), "401": _problem("Token required"), "403": _problem("Token refused"),
         "404": _problem("Unknown event or product"), "410": _problem("Event retracted: products withdrawn")}


def spec() -> dict[str, Any]:
    """The OpenAPI document."""
    json_any = {"application/json": {"schema": {"type": "object"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gwfollow", "version": __version__,
                 "description": "Gravitational-wave follow-up products: credible-region MOCs, ranked targets."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": {"type": "object", "required": ["status", "code", "detail"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "code": {"type": "string"}, "detail": {"type": "string"}}}},
        },
        "paths": {
            "/api/v1/health": {"get": {"summary": "Service health", "responses": {"200": {
                "description": "ok or degraded: each listener's state and intake errors", "content": json_any},
                "503": {"description": "failing: a listener cannot reach its source", "content": json_any}}}},
            "/api/v1/alerts": {"post": {
                "summary": "Push an alert (IGWN JSON, VOEvent XML or FITS)", "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {
                    "type": "string", "format": "binary"}}}},
                "responses": {"202": {"description": "Accepted and stored", "content": json_any},
                              "400": _problem("Empty body"), "401": _problem("Token required"),
                              "403": _problem("No write scope"), "408": _problem("Body too slow"),
                              "413": _problem("Too large"), "422": _problem("Not a usable alert (kept)")}}},
            "/api/v1/deadletters": {"get": {
                "summary": "Dead letters still dead (all=true: every one)", "security": [{"bearer": []}],
                "parameters": [_q("all", "true to include requeued ones", {"type": "string", "enum": ["true", "false"]})],
                "responses": {"200": {"description": "Dead letters", "content": json_any},
                              "401": _problem("Token required"), "403": _problem("No write scope")}}},
            "/api/v1/deadletters/requeue": {"post": {
                "summary": "Requeue dead letters: {\"ids\": [...]}, {\"transient\": true} or {} for all",
                "security": [{"bearer": []}],
                "requestBody": {"required": False, "content": json_any},
                "responses": {"202": {"description": "Requeued raw message ids", "content": json_any},
                              "401": _problem("Token required"), "403": _problem("No write scope"),
                              "422": _problem("Bad body")}}},
            "/api/v1/events": {"get": {
                "summary": "Events, oldest change first", "parameters": [
                    _q("state", "active or retracted", {"type": "string", "enum": ["active", "retracted"]}),
                    _q("significant", "true or false", {"type": "string", "enum": ["true", "false"]}),
                    _q("group", "CBC or Burst", {"type": "string"}),
                    _q("since", "only events changed after this ISO 8601 time", {"type": "string"}),
                    _q("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _q("offset", "page start", {"type": "integer", "minimum": 0})],
                "responses": {"200": {"description": "A page of events", "content": json_any}, **_COND, **_ERRS}}},
            "/api/v1/events/{id}": {"get": {
                "summary": "Alert history, sky-map versions, areas and links", "parameters": [_ID],
                "responses": {"200": {"description": "The event", "content": json_any}, **_COND, **_ERRS}}},
            "/api/v1/events/{id}/moc": {"get": {
                "summary": "Credible-region MOC (MOC 2.0), or space-time MOC with duration", "parameters": [
                    _ID, _ROLE, _q("level", "any credible level in (0, 1], e.g. 0.9 or 0.95", {"type": "number"}),
                    _q("format", "fits, json or ascii", {"type": "string", "enum": ["fits", "json", "ascii"]}),
                    _q("duration", "time window after the event, e.g. 1d", {"type": "string"})],
                "responses": {"200": {"description": "The MOC", "content": {
                    "application/fits": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                    "text/plain": {"schema": {"type": "string"}}}}, **_COND, **_ERRS}}},
            "/api/v1/events/{id}/targets": {"get": {
                "summary": "Ranked galaxies or fields", "parameters": [
                    _ID, _ROLE, _q("kind", "galaxies or fields", {"type": "string", "enum": ["galaxies", "fields"]}),
                    _q("catalog", "catalogue name (galaxies)", {"type": "string"}),
                    _q("telescope", "telescope name (fields)", {"type": "string"}),
                    _q("site", "keep only this site's observing windows", {"type": "string"}),
                    _q("limit", "number of rows (0: all)", {"type": "integer", "minimum": 0}),
                    _q("format", "json, csv or votable", {"type": "string", "enum": ["json", "csv", "votable"]})],
                "responses": {"200": {"description": "The table", "content": {
                    "application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}},
                    "application/x-votable+xml": {"schema": {"type": "string"}}}}, **_COND, **_ERRS}}},
            "/api/v1/events/{id}/observability": {"get": {
                "summary": "Observable probability per time slice for a site", "parameters": [
                    _ID, _ROLE, _q("site", "site name", {"type": "string"})],
                "responses": {"200": {"description": "Slices", "content": json_any}, **_COND, **_ERRS}}},
            "/api/v1/events/{id}/plan": {"get": {
                "summary": "Observation plan: time-ordered exposures of a telescope at a site", "parameters": [
                    _ID, _ROLE, _q("telescope", "configured telescope, or joint for all pairs", {"type": "string"}),
                    _q("site", "configured site", {"type": "string"}),
                    _q("limit", "number of rows (0: all)", {"type": "integer", "minimum": 0}),
                    _q("format", "json, csv or votable", {"type": "string", "enum": ["json", "csv", "votable"]})],
                "responses": {"200": {"description": "One row per exposure: field_id, ra, dec, start_utc, end_utc, "
                                                     "filter, visit, airmass, prob, cumprob", "content": {
                    "application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}},
                    "application/x-votable+xml": {"schema": {"type": "string"}}}},
                    "409": _problem("The plan could not be made"), **_COND, **_ERRS}}},
            "/api/v1/events/{id}/coverage": {"get": {
                "summary": "GW probability covered by each configured survey / catalogue coverage",
                "parameters": [_ID, _ROLE],
                "responses": {"200": {"description": "Coverages", "content": json_any}, **_COND, **_ERRS}}},
            "/api/v1/events/{id}/report": {"get": {"summary": "HTML report", "parameters": [_ID], "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                **_COND, **_ERRS}}},
            "/api/v1/events/{id}/report.png": {"get": {"summary": "Sky plot", "parameters": [_ID], "responses": {
                "200": {"description": "PNG", "content": {"image/png": {"schema": {"type": "string",
                                                                                    "format": "binary"}}}},
                **_COND, **_ERRS}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {
                "description": "OpenAPI", "content": json_any}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "Text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
    }
