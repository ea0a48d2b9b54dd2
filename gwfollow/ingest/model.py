"""The Alert record: one message about one superevent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ALERT_TYPES = ("EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", "RETRACTION")
"""Alert types of the IGWN alert schema, in the order they are issued."""


@dataclass(frozen=True, eq=False)
class Alert:
    """A parsed LVK alert (IGWN alert JSON, GCN classic VOEvent or bare FITS).

    Attributes
    ----------
    superevent_id : str
        ``S241102br``; mock events start with ``M`` (``MS181101ab``).
    alert_type : str
        One of :data:`ALERT_TYPES`.
    time_created : datetime
        When the alert was issued (UTC, timezone-aware).
    kind : str
        ``json``, ``voevent`` or ``fits``: the message format.
    raw : bytes
        The message exactly as received.
    event : dict or None
        The ``event`` object of the IGWN schema (time, far, significant,
        instruments, group, pipeline, search, classification, properties)
        without the sky map; None for retractions.
    skymap : bytes or None
        The sky map FITS bytes carried by the message (decoded base64).
    skymap_url : str or None
        Where to fetch the sky map (VOEvents).
    combined_skymap : bytes or None
        ``external_coinc.combined_skymap`` (GW + GRB), kept as a second map.
    external_coinc : dict or None
        The ``external_coinc`` object without its sky map.
    urls : dict
        ``urls`` of the alert (GraceDB page).
    """

    superevent_id: str
    alert_type: str
    time_created: datetime
    kind: str
    raw: bytes = field(repr=False)
    event: dict[str, Any] | None = None
    skymap: bytes | None = field(default=None, repr=False)
    skymap_url: str | None = None
    combined_skymap: bytes | None = field(default=None, repr=False)
    external_coinc: dict[str, Any] | None = None
    urls: dict[str, str] = field(default_factory=dict)
    decoded_skymap: Any = field(default=None, repr=False, compare=False)
    """The :class:`~gwfollow.skymaps.skymap.SkyMap` already read from ``skymap`` while parsing
    (bare FITS alerts), so that it is not decoded twice."""

    @property
    def content_hash(self) -> str:
        """SHA-256 of the raw message."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def idempotency_key(self) -> tuple[str, str, str, str]:
        """(superevent id, alert type, time created, content hash): one processing each."""
        return (self.superevent_id, self.alert_type, self.time_created.isoformat(), self.content_hash)

    @property
    def is_mock(self) -> bool:
        """Mock (MDC) events have ids starting with ``M``."""
        return self.superevent_id.startswith("M")

    @property
    def is_retraction(self) -> bool:
        return self.alert_type == "RETRACTION"

    @property
    def group(self) -> str | None:
        """``CBC`` or ``Burst`` (None for retractions)."""
        return (self.event or {}).get("group")

    @property
    def significant(self) -> bool | None:
        return (self.event or {}).get("significant")

    @property
    def far(self) -> float | None:
        """False-alarm rate in Hz."""
        v = (self.event or {}).get("far")
        return float(v) if v is not None else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (no sky-map bytes)."""
        return {
            "superevent_id": self.superevent_id,
            "alert_type": self.alert_type,
            "time_created": self.time_created.isoformat(),
            "kind": self.kind,
            "content_hash": self.content_hash,
            "event": self.event,
            "skymap_url": self.skymap_url,
            "has_skymap": self.skymap is not None,
            "has_combined_skymap": self.combined_skymap is not None,
            "external_coinc": self.external_coinc,
            "urls": self.urls,
        }
