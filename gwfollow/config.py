"""Configuration: ``config/default.toml`` read once into frozen dataclasses.

A deployment file overrides the defaults key by key, and environment
variables ``GWFOLLOW_<SECTION>_<KEY>`` override both.  Unknown sections or
keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import ipaddress
import os
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from gwfollow.errors import ConfigError


@dataclass(frozen=True)
class SkyMapConfig:
    """Reading sky maps and the credible levels derived from them."""

    levels: tuple[float, ...]
    boundary: str
    norm_tolerance: float
    norm_warning: float
    max_size_mib: float

    def validate(self) -> None:
        for lv in self.levels:
            if not 0.0 < lv <= 1.0:
                raise ConfigError(f"skymap.levels: {lv!r} is not in (0, 1]")
        if self.boundary not in ("split", "exclude", "include"):
            raise ConfigError(
                f"skymap.boundary: {self.boundary!r} is not one of split, exclude, include"
            )
        if not 0 <= self.norm_warning <= self.norm_tolerance:
            raise ConfigError("skymap: need 0 <= norm_warning <= norm_tolerance")
        if self.max_size_mib <= 0:
            raise ConfigError("skymap.max_size_mib must be positive")


@dataclass(frozen=True)
class MocConfig:
    """Space-time MOC settings."""

    stmoc_duration_s: float
    stmoc_time_order: int

    def validate(self) -> None:
        if self.stmoc_duration_s <= 0:
            raise ConfigError("moc.stmoc_duration_s must be positive")
        if not 0 <= self.stmoc_time_order <= 61:
            raise ConfigError("moc.stmoc_time_order must be in 0..61")


@dataclass(frozen=True)
class FiltersConfig:
    """Which alerts are acted on (the others are stored, not processed)."""

    significant_only: bool
    mock_events: bool
    groups: tuple[str, ...]
    max_far_hz: float

    def validate(self) -> None:
        if self.max_far_hz < 0:
            raise ConfigError("filters.max_far_hz must be >= 0 (0 disables the cut)")


@dataclass(frozen=True)
class StoreConfig:
    """The SQLite database."""

    path: str

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("store.path must not be empty")


@dataclass(frozen=True)
class ServiceConfig:
    """The HTTP service and its worker pool."""

    host: str
    port: int
    workers: int
    queue_size: int
    max_body_mib: float
    body_timeout_s: float
    crash_retries: int
    defer_slow_products: bool
    deferred_workers: int
    deferred_nice: int
    uvloop: bool
    write_tokens_sha256: tuple[str, ...]
    read_tokens_sha256: tuple[str, ...]
    read_open: bool
    cors_origins: tuple[str, ...]
    webhook_urls: tuple[str, ...]
    webhook_secret: str
    webhook_retries: int
    webhook_backoff_s: float
    webhook_timeout_s: float
    response_cache_mib: float
    report_cache_mib: float
    requeue_poll_s: float
    degraded_intake_errors: int
    degraded_window_s: float

    def validate(self) -> None:
        if self.response_cache_mib < 0 or self.report_cache_mib < 0:
            raise ConfigError("service.response_cache_mib and service.report_cache_mib must be >= 0")
        if self.requeue_poll_s < 0:
            raise ConfigError("service.requeue_poll_s must be >= 0 (0 turns the poll off)")
        if self.degraded_intake_errors < 1 or self.degraded_window_s <= 0:
            raise ConfigError("service.degraded_intake_errors must be >= 1 and service.degraded_window_s > 0")
        if self.webhook_urls and not self.webhook_secret:
            raise ConfigError("service.webhook_urls need service.webhook_secret to sign deliveries",
                              hint="set GWFOLLOW_SERVICE_WEBHOOK_SECRET")
        if self.webhook_retries < 0 or self.webhook_backoff_s < 0 or self.webhook_timeout_s <= 0:
            raise ConfigError("service.webhook_retries/backoff_s must be >= 0 and timeout_s > 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"service.port {self.port} is not a TCP port")
        if self.workers < 1:
            raise ConfigError("service.workers must be >= 1")
        if self.queue_size < 1:
            raise ConfigError("service.queue_size must be >= 1")
        if self.crash_retries < 0:
            raise ConfigError("service.crash_retries must be >= 0")
        if self.deferred_workers < 1:
            raise ConfigError("service.deferred_workers must be >= 1")
        if not 0 <= self.deferred_nice <= 19:
            raise ConfigError(f"service.deferred_nice {self.deferred_nice} is not in 0..19")
        if self.body_timeout_s <= 0:
            raise ConfigError("service.body_timeout_s must be positive")
        for t in self.write_tokens_sha256 + self.read_tokens_sha256:
            if len(t) != 64 or any(c not in "0123456789abcdef" for c in t):
                raise ConfigError("service tokens must be given as lower-case sha256 hex digests",
                                  hint="use: gwfollow token")


@dataclass(frozen=True)
class KafkaConfig:
    """GCN Kafka (or any Kafka-protocol broker) listener."""

    enabled: bool
    bootstrap: str
    topics: tuple[str, ...]
    group_id: str
    auto_offset_reset: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    security_protocol: str
    sasl_mechanism: str
    client_id: str
    client_secret: str
    token_url: str

    def validate(self) -> None:
        if self.security_protocol not in ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"):
            raise ConfigError(f"kafka.security_protocol {self.security_protocol!r} is not supported")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigError("kafka.auto_offset_reset must be earliest or latest")
        if self.enabled and self.security_protocol.startswith("SASL") and not (self.client_id and self.client_secret):
            raise ConfigError("kafka: SASL needs kafka.client_id and kafka.client_secret",
                              hint="set GWFOLLOW_KAFKA_CLIENT_ID / GWFOLLOW_KAFKA_CLIENT_SECRET")


@dataclass(frozen=True)
class SpoolConfig:
    """A directory watched for alert files."""

    enabled: bool
    directory: str
    poll_s: float

    def validate(self) -> None:
        if self.poll_s <= 0:
            raise ConfigError("spool.poll_s must be positive")


@dataclass(frozen=True)
class FetchConfig:
    """Downloading sky maps that VOEvents point to."""

    timeout_s: float
    retries: int
    backoff_s: float
    max_mib: float
    total_s: float
    max_redirects: int
    allowed_hosts: tuple[str, ...]
    allowed_networks: tuple[str, ...]
    local_dir: str

    def validate(self) -> None:
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0 or self.max_mib <= 0:
            raise ConfigError("fetch: timeout_s and max_mib must be positive, retries and backoff_s >= 0")
        if self.total_s <= 0 or self.max_redirects < 0:
            raise ConfigError("fetch: total_s must be positive and max_redirects >= 0")
        for net in self.allowed_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"fetch.allowed_networks: {net!r} is not an address or CIDR network",
                                  hint='write e.g. "10.1.2.0/24"') from None


@dataclass(frozen=True)
class TargetsConfig:
    """Ranked targets computed for every accepted alert."""

    catalogs: tuple[str, ...]
    galaxy_limit: int
    galaxy_level: float
    weighting: str
    footprint_cache: str

    def validate(self) -> None:
        if self.galaxy_limit < 0:
            raise ConfigError("targets.galaxy_limit must be >= 0")
        if not 0 < self.galaxy_level <= 1:
            raise ConfigError("targets.galaxy_level must be in (0, 1]")
        if self.weighting not in ("", "B", "K"):
            raise ConfigError("targets.weighting must be '', 'B' or 'K'")


@dataclass(frozen=True)
class TelescopeConfig:
    """``[telescopes.<name>]``: a tile grid and a field of view."""

    name: str
    grid: str
    fov_shape: str
    fov_width_deg: float
    fov_height_deg: float
    fov_radius_deg: float
    rotation_deg: float
    target: float
    order: int

    def validate(self) -> None:
        where = f"telescopes.{self.name}"
        if self.fov_shape not in ("square", "rectangle", "circle"):
            raise ConfigError(f"{where}.fov_shape {self.fov_shape!r} is not square, rectangle or circle")
        if self.fov_shape == "circle" and not self.fov_radius_deg > 0:
            raise ConfigError(f"{where}: a circular field needs fov_radius_deg > 0")
        if self.fov_shape != "circle" and not self.fov_width_deg > 0:
            raise ConfigError(f"{where}: fov_width_deg must be > 0")
        if not 0 < self.target <= 1:
            raise ConfigError(f"{where}.target must be in (0, 1]")
        if not 4 <= self.order <= 16:
            raise ConfigError(f"{where}.order must be in 4..16")


@dataclass(frozen=True)
class SiteConfig:
    """``[sites.<name>]``: where and under which limits targets are observable."""

    name: str
    lat_deg: float
    lon_deg: float
    height_m: float
    max_airmass: float
    max_sun_alt_deg: float
    min_moon_sep_deg: float
    hours: float
    step_minutes: float

    def validate(self) -> None:
        where = f"sites.{self.name}"
        if not -90 <= self.lat_deg <= 90 or not -180 <= self.lon_deg <= 360:
            raise ConfigError(f"{where}: latitude/longitude out of range")
        if self.max_airmass <= 1:
            raise ConfigError(f"{where}.max_airmass must be > 1")
        if self.hours <= 0 or self.step_minutes <= 0:
            raise ConfigError(f"{where}: hours and step_minutes must be positive")
        if not 0 <= self.min_moon_sep_deg <= 180:
            raise ConfigError(f"{where}.min_moon_sep_deg must be in [0, 180] (0: no Moon limit)")


@dataclass(frozen=True)
class PlanConfig:
    """``[plan]``: observation plans (see :class:`gwfollow.targets.plan.PlanParameters`)."""

    enabled: bool
    hours: float
    exposure_s: float
    overhead_s: float
    readout_s: float
    slew_rate_deg_s: float
    settle_s: float
    visits: int
    visit_gap_s: float
    filters: tuple[str, ...]
    strategy: str
    level: float
    min_gain: float
    margin_deg: float

    def validate(self) -> None:
        if self.strategy not in ("coverage", "greedy"):
            raise ConfigError(f"plan.strategy {self.strategy!r} is not coverage or greedy")
        if self.hours <= 0 or self.exposure_s <= 0 or self.slew_rate_deg_s <= 0:
            raise ConfigError("plan.hours, plan.exposure_s and plan.slew_rate_deg_s must be positive")
        if min(self.overhead_s, self.readout_s, self.settle_s, self.visit_gap_s, self.min_gain,
               self.margin_deg) < 0:
            raise ConfigError("plan: overheads, visit_gap_s, min_gain and margin_deg must be >= 0")
        if not 1 <= self.visits <= 100:
            raise ConfigError("plan.visits must be in 1..100")
        if not self.filters:
            raise ConfigError("plan.filters must name at least one filter")
        if not 0 < self.level <= 1:
            raise ConfigError("plan.level must be in (0, 1]")


@dataclass(frozen=True)
class CoverageConfig:
    """``[coverages.<name>]``: a survey or catalogue coverage.

    Exactly one of ``path`` (a MOC 2.0 file: space, time or space-time),
    ``mocserver_id`` (CDS MOCServer, fetched when online and cached) or
    ``pointings`` (a CSV of executed exposures, with ``telescope`` naming
    the ``[telescopes.NAME]`` whose grid and field of view they used).
    """

    name: str
    path: str
    mocserver_id: str
    pointings: str
    telescope: str
    window_s: float

    def validate(self) -> None:
        if sum(bool(x) for x in (self.path, self.mocserver_id, self.pointings)) != 1:
            raise ConfigError(f"coverages.{self.name}: give exactly one of path, mocserver_id or pointings")
        if self.pointings and not self.telescope:
            raise ConfigError(f"coverages.{self.name}: pointings need telescope = NAME of [telescopes.NAME]")
        if self.window_s <= 0:
            raise ConfigError(f"coverages.{self.name}.window_s must be positive")


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    skymap: SkyMapConfig
    moc: MocConfig
    filters: FiltersConfig
    store: StoreConfig
    service: ServiceConfig
    kafka: KafkaConfig
    spool: SpoolConfig
    fetch: FetchConfig
    targets: TargetsConfig
    plan: PlanConfig
    telescopes: tuple[TelescopeConfig, ...]
    sites: tuple[SiteConfig, ...]
    coverages: tuple[CoverageConfig, ...]
    coverage_cache: str

    def updated(self, **sections: Any) -> Config:
        """A copy with some keys changed: ``cfg.updated(fetch={"timeout_s": 5}, sites=())``.

        A section given as a dict changes only those keys of that section; any other value
        (a tuple of telescopes, a path) replaces the field.  The result is validated.
        """
        changes = {name: dataclasses.replace(getattr(self, name), **value) if isinstance(value, dict) else value
                   for name, value in sections.items()}
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                for item in v:
                    item.validate()
            elif hasattr(v, "validate"):
                v.validate()


_N = TypeVar("_N", TelescopeConfig, SiteConfig, CoverageConfig)
_NAMED = {"telescopes": TelescopeConfig, "sites": SiteConfig, "coverages": CoverageConfig}
# What a [telescopes.NAME] (...) table leaves out comes from [telescope_defaults] (...).
_TEMPLATES = {"telescopes": "telescope_defaults", "sites": "site_defaults", "coverages": "coverage_defaults"}

_SECTIONS = {
    "skymap": SkyMapConfig,
    "moc": MocConfig,
    "filters": FiltersConfig,
    "store": StoreConfig,
    "service": ServiceConfig,
    "kafka": KafkaConfig,
    "spool": SpoolConfig,
    "fetch": FetchConfig,
    "targets": TargetsConfig,
    "plan": PlanConfig,
}


_SCALARS = {"str": str, "int": int, "float": float, "bool": bool}


def _coerce(section: str, key: str, typ: str, value: Any) -> Any:
    """``value`` (from TOML or the environment) as the field's declared type."""
    try:
        if typ.startswith("tuple["):
            item = _SCALARS[typ[len("tuple["):].split(",")[0].strip()]
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split()]
            if not isinstance(value, (list, tuple)):
                raise TypeError("expected a list")
            return tuple(item(v) for v in value)
        if typ == "bool":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        return _SCALARS[typ](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}.{key}: cannot use {value!r} ({exc})") from None


def _types(cls: type) -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(cls)}


def _build(cls: type, section: str, values: dict[str, Any], **fixed: Any) -> Any:
    """``cls`` from ``values``; every field must have a value (the defaults file gives them all)."""
    types = _types(cls)
    missing = sorted(set(types) - set(values) - set(fixed))
    if missing:
        raise ConfigError(f"[{section}]: no value for {', '.join(missing)}",
                          hint="config/default.toml must give every key a default")
    return cls(**fixed, **{k: _coerce(section, k, types[k], v) for k, v in values.items()})


def _merge(base: dict[str, dict[str, Any]], override: dict[str, Any], origin: str,
           replace_named: bool = False) -> None:
    """Merge ``override`` into ``base``; a deployment's [telescopes], [sites] or
    [coverages] replaces the defaults' whole section (``replace_named``)."""
    for section, values in override.items():
        if section in _NAMED:
            if replace_named:
                base[section] = {}
            if not isinstance(values, dict):
                raise ConfigError(f"{origin}: [{section}] must hold named tables, e.g. [{section}.NAME]")
            known = {f.name for f in fields(_NAMED[section])} - {"name"}
            for name, table in values.items():
                if not isinstance(table, dict):
                    raise ConfigError(f"{origin}: [{section}.{name}] must be a table")
                bad = sorted(set(table) - known)
                if bad:
                    raise ConfigError(f"{origin}: unknown key(s) {', '.join(bad)} in [{section}.{name}]",
                                      hint=f"known: {', '.join(sorted(known))}")
                base.setdefault(section, {})[name] = dict(table)
            continue
        if section == "coverage_cache":
            base["coverage_cache"] = values  # type: ignore[assignment]
            continue
        if section in _TEMPLATES.values():
            ncls = next(_NAMED[k] for k, v in _TEMPLATES.items() if v == section)
            if not isinstance(values, dict):
                raise ConfigError(f"{origin}: [{section}] must be a table")
            known = {f.name for f in fields(ncls)} - {"name"}
            bad = sorted(set(values) - known)
            if bad:
                raise ConfigError(f"{origin}: unknown key(s) {', '.join(bad)} in [{section}]")
            base.setdefault(section, {}).update(values)
            continue
        if section not in _SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        known = {f.name for f in fields(_SECTIONS[section])}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            base.setdefault(section, {})[key] = value


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: {exc}", hint="fix the TOML syntax") from None


def default_toml_text() -> str:
    """Text of the packaged ``config/default.toml``."""
    return resources.files("gwfollow.defaults").joinpath("default.toml").read_text()


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Read the defaults, then ``path`` (if given), then environment overrides.

    Parameters
    ----------
    path : path-like, optional
        A deployment TOML file.
    env : dict, optional
        Environment to read ``GWFOLLOW_*`` variables from (default ``os.environ``).

    Returns
    -------
    Config
        Frozen and validated.
    """
    merged = copy.deepcopy(_packaged_tables())
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
        _merge(merged, _read_toml(text, str(p)), str(p), replace_named=True)
    env = os.environ if env is None else env
    for name, value in env.items():
        if not name.startswith("GWFOLLOW_"):
            continue
        rest = name[len("GWFOLLOW_"):].lower()
        section, _, key = rest.partition("_")
        if section in _SECTIONS and key in {f.name for f in fields(_SECTIONS[section])}:
            merged.setdefault(section, {})[key] = value
    built: dict[str, Any] = {}
    for section, ncls in _NAMED.items():
        template = merged.get(_TEMPLATES[section], {})
        built[section] = tuple(_build(ncls, f"{section}.{name}", {**template, **table}, name=name)
                               for name, table in merged.get(section, {}).items())
    built["coverage_cache"] = str(merged["coverage_cache"])
    for section, cls in _SECTIONS.items():
        built[section] = _build(cls, section, merged.get(section, {}))
    cfg = Config(**built)
    cfg.validate()
    return cfg


def named_config(cls: type[_N], name: str, **values: Any) -> _N:
    """A ``[telescopes.NAME]``, ``[sites.NAME]`` or ``[coverages.NAME]`` table built in code:
    ``values`` over the packaged ``[telescope_defaults]`` / ``[site_defaults]`` /
    ``[coverage_defaults]``.

    >>> named_config(SiteConfig, "La Silla", lat_deg=-29.26, lon_deg=-70.73, height_m=2400.0).max_airmass
    2.0
    """
    section = next(k for k, v in _NAMED.items() if v is cls)
    template = _packaged_tables().get(_TEMPLATES[section], {})
    item = _build(cls, f"{section}.{name}", {**template, **values}, name=name)
    item.validate()
    return item


@functools.cache
def _packaged_tables() -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {}
    _merge(merged, _read_toml(default_toml_text(), "config/default.toml"), "config/default.toml")
    return merged


@functools.cache
def packaged_defaults() -> Config:
    """``config/default.toml`` alone (no deployment file, no environment), read once per
    process: what a library call uses when no configuration is passed."""
    return load_config(env={})
