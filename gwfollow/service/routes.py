"""The URL table: every HTTP route of the service and the view that answers it."""

from __future__ import annotations

from aiohttp import web

from gwfollow.service import deadletters, health, views
from gwfollow.service.pages import add_page_routes


def add_routes(app: web.Application) -> None:
    """Register the API under ``/api/v1``, ``/metrics`` and the web pages."""
    app.router.add_get("/api/v1/health", health.health)
    app.router.add_post("/api/v1/alerts", views.post_alert)
    app.router.add_get("/api/v1/deadletters", deadletters.list_dead_letters)
    app.router.add_post("/api/v1/deadletters/requeue", deadletters.requeue_dead_letters)
    app.router.add_get("/api/v1/events", views.list_events)
    app.router.add_get("/api/v1/events/{id}", views.get_event)
    app.router.add_get("/api/v1/events/{id}/moc", views.get_moc)
    app.router.add_get("/api/v1/events/{id}/targets", views.get_targets)
    app.router.add_get("/api/v1/events/{id}/observability", views.get_observability)
    app.router.add_get("/api/v1/events/{id}/plan", views.get_plan)
    app.router.add_get("/api/v1/events/{id}/coverage", views.get_coverage)
    app.router.add_get("/api/v1/events/{id}/report", views.get_report)
    app.router.add_get("/api/v1/events/{id}/report.png", views.get_report)
    app.router.add_get("/api/v1/openapi.json", views.openapi)
    app.router.add_get("/metrics", views.metrics)
    add_page_routes(app)  # web pages: /, /events/{id}, /static/
