"""Typed records that travel between the stages: what one alert became, and what happened to it.

Ground floor: the core (:mod:`gwfollow.products.core`) makes them, the store
(:mod:`gwfollow.store`) keeps them, the pipelines (:mod:`gwfollow.pipeline`)
report them.  They are plain, picklable data (they cross process boundaries).
All areas are in square degrees; probabilities are fractions of the map's total.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class ProductKind(str, Enum):
    """What a stored product is (its value is what the store and the API show)."""

    MOC = "moc"
    """A credible-region MOC (MOC 2.0 FITS), one per configured level."""
    GALAXIES = "galaxies"
    """Galaxies of one catalogue ranked by 3-D posterior density (a JSON table)."""
    FIELDS = "fields"
    """Fields of one telescope ranked by enclosed probability (a JSON table)."""
    OBSERVABILITY = "observability"
    """Probability observable from one site, per time slice (JSON)."""
    COVERAGE = "coverage"
    """GW probability inside one survey / catalogue coverage (JSON)."""
    PLAN = "plan"
    """Time-ordered exposures of one telescope at one site, or the joint plan (a JSON table)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class AlertSummary:
    """A parsed alert without its sky-map bytes.

    Attributes
    ----------
    superevent_id : str
    alert_type : str
        EARLYWARNING, PRELIMINARY, INITIAL, UPDATE or RETRACTION.
    time_created : str
        ISO 8601, UTC.
    kind : str
        Message format: ``json``, ``voevent`` or ``fits``.
    content_hash : str
        SHA-256 (hex) of the raw message.
    event : dict or None
        The alert's ``event`` block (time, far in Hz, significant, group, classification, ...).
    skymap_url : str or None
    has_skymap, has_combined_skymap : bool
    external_coinc : dict or None
    urls : dict
    """

    superevent_id: str
    alert_type: str
    time_created: str
    kind: str
    content_hash: str
    event: dict[str, Any] | None = None
    skymap_url: str | None = None
    has_skymap: bool = False
    has_combined_skymap: bool = False
    external_coinc: dict[str, Any] | None = None
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def is_retraction(self) -> bool:
        return self.alert_type == "RETRACTION"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class Product:
    """One stored product of one sky-map version.

    Attributes
    ----------
    kind : ProductKind
    level : float or None
        Credible level (MOCs; the search level of target lists; the selection target of fields).
    boundary : str or None
        How the cell crossing the level was treated (MOCs): split, exclude or include.
    format : str
        Serialisation of ``data``: ``fits`` or ``json``.
    data : bytes
    area_deg2 : float or None
        Area, square degrees.
    probability : float or None
        Enclosed (MOC), covered (coverage, fields) or observable probability.
    n_cells : int or None
        NUNIQ cells (MOC), rows (target lists) or time slices (observability).
    provenance : dict
        Sky-map sha256, levels, catalogue and version, gwfollow version, ...
    name : str
        The catalogue, telescope, site or coverage it is about ("" for MOCs).
    """

    kind: ProductKind
    level: float | None
    boundary: str | None
    format: str
    data: bytes
    area_deg2: float | None
    probability: float | None
    n_cells: int | None
    provenance: dict[str, Any]
    name: str = ""


@dataclass(frozen=True)
class ProcessedSkyMap:
    """A sky-map version of an alert and its products.

    Attributes
    ----------
    role : str
        ``gw`` (the GW map) or ``combined`` (GW x external, for coincidences).
    sha256 : str
        Of the sky-map bytes.
    data : bytes
        The sky map as received.
    meta : dict
        Object id, event time, instruments, creator, ordering, cells, MOC order,
        distance mean / std (Mpc), probability sum, warnings, ``areas_deg2`` per level.
    products : list of Product
    """

    role: str
    sha256: str
    data: bytes
    meta: dict[str, Any]
    products: list[Product]


@dataclass(frozen=True)
class ProcessedAlert:
    """What the core made of one alert.

    Attributes
    ----------
    alert : AlertSummary
    skymaps : list of ProcessedSkyMap
        Empty for retractions and alerts not acted on.
    timings : dict
        Seconds per stage (``parse``, ``gw_skymap_read``, ``gw_mocs``, ``gw_targets``, ...).
    acted : bool
        False when the configured filters rejected the alert (it is stored, not acted on).
    note : str or None
        Why it was not acted on.
    deferred : DeferredParts or None
        What the second step still has to compute (see
        :func:`gwfollow.products.core.process_deferred`); None when nothing is left.
    """

    alert: AlertSummary
    skymaps: list[ProcessedSkyMap] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    acted: bool = True
    note: str | None = None
    deferred: DeferredParts | None = None


@dataclass(frozen=True)
class DeferredParts:
    """The slow products of an alert, left for the second processing step.

    Attributes
    ----------
    parts : tuple of str
        ``gw`` (observability, coverages and plans of the GW sky map) and/or
        ``combined`` (every product of the combined GW+GRB sky map).
    start : str
        ISO 8601 UTC start of the observing window the first step used (the
        event time, or the processing time for a map without one), so both
        steps plan over the same window.
    """

    parts: tuple[str, ...]
    start: str


@dataclass(frozen=True)
class ProcessedDeferred:
    """What the second step made of an alert (see :class:`DeferredParts`).

    Attributes
    ----------
    skymaps : list of ProcessedSkyMap
        The GW map with only its slow products (the map itself is stored by
        the first step), and the combined map with every product.
    timings : dict
        Seconds per stage.
    """

    skymaps: list[ProcessedSkyMap]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What happened to one message.

    Attributes
    ----------
    raw_id : int
        The stored raw message.
    status : str
        ``processed``, ``ignored`` (stored, not acted on), ``dead`` (dead letter) or ``duplicate``.
    superevent_id, alert_type : str or None
    alert_id : int or None
        The stored alert (None for dead letters and duplicates).
    reason : str or None
    seconds : float
        Wall time from intake to stored.
    deferred_id : int or None
        The pending second-step work of this alert (see ``Store.deferred``), if any.
    """

    raw_id: int
    status: str
    superevent_id: str | None = None
    alert_type: str | None = None
    alert_id: int | None = None
    reason: str | None = None
    seconds: float = 0.0
    deferred_id: int | None = None


@dataclass(frozen=True)
class EventRecord:
    """A superevent as the store knows it.

    Attributes
    ----------
    superevent_id : str
    state : str
        ``active`` or ``retracted``.
    group : str or None
        ``CBC`` or ``Burst``.
    significant : bool or None
        The LVK's significance flag of its latest alert (None when not said).
    is_mock : bool
        A mock (MDC) event, whose id starts with ``M``.
    first_seen, updated_at : str
        ISO 8601, UTC: first alert stored, last change.
    retracted_at : str or None
    """

    superevent_id: str
    state: str
    group: str | None
    significant: bool | None
    is_mock: bool
    first_seen: str
    updated_at: str
    retracted_at: str | None = None

    @property
    def retracted(self) -> bool:
        return self.state == "retracted"

    def as_json(self) -> dict[str, Any]:
        """The event as the HTTP API shows it (``grp`` is the group, a name the API has always used)."""
        d = asdict(self)
        d["grp"] = d.pop("group")
        return d
