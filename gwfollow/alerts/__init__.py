"""Alerts: parsing messages into :class:`Alert` and listening for them.

:mod:`gwfollow.alerts.parse` is pure (bytes -> Alert); the listeners in
:mod:`gwfollow.alerts.listeners` bring bytes in from GCN Kafka, HTTP pushes
and a spool directory; :mod:`gwfollow.alerts.fetch` downloads sky maps that
VOEvents point to.
"""

from .model import ALERT_TYPES, Alert
from .parse import parse_alert, parse_fits_alert, parse_json_alert, parse_voevent

__all__ = ["ALERT_TYPES", "Alert", "parse_alert", "parse_fits_alert", "parse_json_alert", "parse_voevent"]
