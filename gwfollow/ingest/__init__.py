"""Alerts in: messages parsed into :class:`Alert` and the sky maps they point to fetched.

:mod:`gwfollow.ingest.parse` is pure (bytes -> Alert); the listeners in
:mod:`gwfollow.pipeline.listeners` bring bytes in from GCN Kafka, HTTP pushes
and a spool directory; :mod:`gwfollow.ingest.fetch` downloads sky maps that
VOEvents point to.
"""

from gwfollow.ingest.model import ALERT_TYPES, Alert
from gwfollow.ingest.parse import (
    parse_alert,
    parse_fits_alert,
    parse_json_alert,
    parse_voevent,
)

__all__ = ["ALERT_TYPES", "Alert", "parse_alert", "parse_fits_alert", "parse_json_alert", "parse_voevent"]
