"""Observation plans: time-ordered exposures a telescope at a site can execute.

The window (``hours`` from ``start``) is cut into equal **slots**, each one
exposure plus the per-exposure overhead (read-out and a typical slew).  A
field is a candidate only when its footprint touches the sky map's search
region (the coarse filter of :func:`~gwfollow.targets.fields.candidate_fields`)
and it is observable for a whole exposure: at the exposure's start **and**
end its centre has airmass ``<= site.max_airmass``, the Sun is at or below
``site.max_sun_alt_deg`` and (when set) the Moon is more than
``site.min_moon_sep_deg`` away, each limit tightened by ``margin_deg`` so
that astropy's ``AltAz`` (which differs from gwfollow's ICRS zenith by up
to about 21 arcsec, see :mod:`gwfollow.targets.observability`) agrees.

A field's value is the probability its footprint adds to what is already
covered (executed pointings, other telescopes, fields already planned):
probability coverage is monotone submodular, so greedy choices by marginal
gain are evaluated lazily (Minoux 1978).

Two strategies:

``greedy``
    Walks the slots in time order and, in each, observes the observable
    field that adds the most probability (the baseline used by most
    schedulers, e.g. gwemopt's ``greedy``).
``coverage`` (default)
    Maximum coverage with time windows.  Each field's exposures (one per
    visit) are unit jobs whose windows are sub-intervals of the field's
    longest observable run; the sets of fields whose jobs all fit in
    distinct slots are the independent sets of a transversal matroid, so
    greedy selection by marginal gain under that constraint is within a
    factor 1/2 of the optimal coverage (Fisher, Nemhauser & Wolsey 1978).
    Whether a set fits is decided exactly by earliest-deadline-first
    (:func:`gwfollow.kernels.schedule.edf_assign`); the chosen exposures are
    then placed at the lowest total airmass among all feasible placements
    (an assignment problem, solved by ``scipy.optimize.linear_sum_assignment``).

Visits: ``visits`` exposures of each field whose starts are at least
``visit_gap_s`` apart (the field's run is split into ``visits`` windows
separated by the gap), cycling through ``filters``.

Slews: exposures are laid out in time order; when the slew from the
previous field (``settle_s`` plus distance over ``slew_rate_deg_s``, or the
read-out if longer) exceeds the slot's overhead, the exposure starts later,
is checked again at its real start and end, and is dropped if it is no
longer observable.  Exposures never overlap.

All times UTC; angles degrees; probabilities fractions of the map's total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta
from scipy.optimize import linear_sum_assignment

from gwfollow.config import PlanConfig, packaged_defaults
from gwfollow.errors import PlanError
from gwfollow.kernels import footprints as kfp
from gwfollow.kernels import ranges as kr
from gwfollow.kernels.schedule import edf_assign, longest_run
from gwfollow.regions.moc import credible_ranges
from gwfollow.skymaps.skymap import SkyMap
from gwfollow.targets.fields import FieldOfView, Telescope, candidate_fields, field_footprints, footprint_polygons
from gwfollow.targets.footprints import FootprintGrid
from gwfollow.targets.observability import Site, sky_states
from gwfollow.version import __version__

STRATEGIES = ("coverage", "greedy")


@dataclass(frozen=True)
class PlanParameters(PlanConfig):
    """How a telescope observes: the ``[plan]`` table (:class:`~gwfollow.config.PlanConfig`,
    defaults in ``config/default.toml``) and the footprints' order.

    Attributes
    ----------
    hours : float
        Length of the window, hours.
    exposure_s : float
        Exposure time, seconds.
    overhead_s : float
        Time between two exposures in the slot grid (read-out and a
        typical slew), seconds.
    readout_s : float
        Detector read-out, seconds (the slew runs meanwhile).
    slew_rate_deg_s, settle_s : float
        Slew speed (deg/s) and settling time (s) of the mount.
    visits : int
        Exposures of each field.
    visit_gap_s : float
        Least time between the starts of two visits of a field, seconds.
    filters : tuple of str
        Filter of each visit, cycled.
    strategy : {"coverage", "greedy"}
    level : float
        Fields are searched around the credible region at this level.
    min_gain : float
        A field must add more than this probability to be observed.
    margin_deg : float
        Safety margin on the altitude, Sun and Moon limits, degrees.
    order : int
        HEALPix order of the footprints' border cells (the telescope's ``order``).
    """

    order: int = 10

    @classmethod
    def defaults(cls, **overrides: Any) -> PlanParameters:
        """The packaged ``[plan]`` defaults (``config/default.toml``) with ``overrides``.

        Examples
        --------
        >>> PlanParameters.defaults(visits=2).slot_s
        45.0
        """
        return params_from_config(packaged_defaults().plan).replace(**overrides)

    def replace(self, **changes: Any) -> PlanParameters:
        """A validated copy with some fields changed."""
        return replace(self, **changes).validate()

    @property
    def slot_s(self) -> float:
        """Length of one slot (exposure + overhead), seconds."""
        return self.exposure_s + self.overhead_s

    def validate(self) -> PlanParameters:
        """Raise :class:`~gwfollow.errors.PlanError` naming the first bad value; return ``self``."""
        for key in ("hours", "exposure_s", "slew_rate_deg_s"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise PlanError(f"{key} = {v!r} must be a positive number")
        for key in ("overhead_s", "readout_s", "settle_s", "visit_gap_s", "min_gain", "margin_deg"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise PlanError(f"{key} = {v!r} must be a number >= 0")
        if not isinstance(self.visits, int) or not 1 <= self.visits <= 100:
            raise PlanError(f"visits = {self.visits!r} must be an integer in 1..100")
        if not self.filters or not all(isinstance(f, str) and f for f in self.filters):
            raise PlanError(f"filters = {self.filters!r} must be non-empty names")
        if self.strategy not in STRATEGIES:
            raise PlanError(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if not 0 < self.level <= 1:
            raise PlanError(f"level = {self.level!r} is not in (0, 1]")
        if not 4 <= self.order <= 16:
            raise PlanError(f"order = {self.order!r} is not in 4..16")
        if self.hours * 3600.0 < self.slot_s:
            raise PlanError(f"a window of {self.hours} h holds no exposure of {self.slot_s} s with overheads")
        if self.hours * 3600.0 / self.slot_s > 200_000:
            raise PlanError(f"{self.hours} h in slots of {self.slot_s} s is too many slots (at most 200,000)")
        return self


@dataclass(frozen=True, eq=False)
class Plan:
    """Time-ordered exposures of one telescope at one site.

    Attributes
    ----------
    telescope, site, strategy : str
    start : astropy.time.Time
        Start of the window (UTC).
    params : PlanParameters
    field_id : (n,) int64
    ra, dec : (n,) float64
        Field centres, degrees.
    start_utc, end_utc : astropy.time.Time
        Start and end of each exposure (its shutter time only).
    filter : (n,) str
    visit : (n,) int64
        1 for a field's first exposure, 2 for its second...
    airmass : (n,) float64
        Plane-parallel airmass of the field centre at the exposure's middle.
    prob : (n,) float64
        Probability the exposure adds (0 for repeated visits).
    cumprob : (n,) float64
        Probability covered by the plan up to this exposure (without what
        was covered before the plan).
    covered : (m, 2) int64
        Depth-29 ranges covered after the plan, including ``covered_before``.
    n_candidates, n_observable : int
        Fields near the map's region, and of those observable for an exposure.
    n_dropped : int
        Exposures dropped because a long slew made them unobservable.
    """

    telescope: str
    site: str
    strategy: str
    start: Any
    params: PlanParameters
    field_id: npt.NDArray[np.int64]
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]
    start_utc: Any
    end_utc: Any
    filter: npt.NDArray[np.str_]
    visit: npt.NDArray[np.int64]
    airmass: npt.NDArray[np.float64]
    prob: npt.NDArray[np.float64]
    cumprob: npt.NDArray[np.float64]
    covered: npt.NDArray[np.int64] = field(repr=False)
    n_candidates: int = 0
    n_observable: int = 0
    n_dropped: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.field_id.shape[0])

    @property
    def probability(self) -> float:
        """Probability the plan covers (0..1), beyond what was covered before it."""
        return float(self.cumprob[-1]) if len(self) else 0.0

    def table(self):
        """Astropy Table, one row per exposure in time order.

        Columns ``field_id, ra, dec, start_utc, end_utc, filter, visit,
        airmass, prob, cumprob, telescope, site``; ISO 8601 UTC times.
        """
        t = Table()
        t["field_id"] = self.field_id
        t["ra"] = self.ra * u.deg
        t["dec"] = self.dec * u.deg
        t["start_utc"] = _iso(self.start_utc)
        t["end_utc"] = _iso(self.end_utc)
        t["filter"] = self.filter.astype(str) if len(self) else np.array([], dtype=str)
        t["visit"] = self.visit
        t["airmass"] = self.airmass
        t["prob"] = self.prob
        t["cumprob"] = self.cumprob
        t["telescope"] = np.full(len(self), self.telescope) if len(self) else np.array([], dtype=str)
        t["site"] = np.full(len(self), self.site) if len(self) else np.array([], dtype=str)
        t.meta.update({k: v for k, v in self.provenance.items() if isinstance(v, (str, int, float))})
        return t


def _iso(t: Any) -> list[str]:
    if t is None or len(t) == 0:
        return np.array([], dtype=str)  # type: ignore[return-value]
    return [s[:23] + "Z" for s in t.utc.isot]


def _as_time(value: object) -> Any:
    try:
        t = value if isinstance(value, Time) else Time(value, scale="utc")
        t = t.utc
    except Exception as exc:  # astropy raises ValueError, TypeError, ScaleValueError...
        raise PlanError(f"cannot read start {value!r} as a UTC time ({exc})", hint="use ISO 8601, e.g. "
                        "2025-07-20T02:16:55") from None
    if not t.isscalar:
        raise PlanError(f"start must be one instant, got shape {t.shape}")
    return t


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


@dataclass(frozen=True)
class _Visibility:
    ok: npt.NDArray[np.bool_]  # (n, J): observable over the whole exposure of slot j
    airmass: npt.NDArray[np.float64]  # (n, J)


def _visibility(vec: np.ndarray, site: Site, sky: _SkyGrid, begin_s: np.ndarray, exposure_s: float,
                margin: float) -> _Visibility:
    """Observability of unit vectors ``vec`` over exposures [t0 + begin_s[j], + exposure_s]."""
    n = begin_s.shape[0]
    zen, sun, moon = sky.at(np.concatenate([begin_s, begin_s + exposure_s]))
    sin_lim = math.sin(math.radians(site.min_alt_deg + margin))
    dark = np.flatnonzero((sun[:n] <= site.max_sun_alt_deg - margin) & (sun[n:] <= site.max_sun_alt_deg - margin))
    ok = np.zeros((vec.shape[0], n), dtype=bool)
    airmass = np.full((vec.shape[0], n), np.inf)
    if dark.size == 0 or vec.shape[0] == 0:
        return _Visibility(ok, airmass)
    s0 = vec @ zen[dark].T  # only the dark slots: daylight ones are never observable
    s1 = vec @ zen[n + dark].T
    okd = (s0 >= sin_lim) & (s1 >= sin_lim)
    if moon is not None and site.min_moon_sep_deg is not None:
        cos_lim = math.cos(math.radians(site.min_moon_sep_deg + margin))
        okd &= (vec @ moon[dark].T < cos_lim) & (vec @ moon[n + dark].T < cos_lim)
    ok[:, dark] = okd
    airmass[:, dark] = 2.0 / np.clip(s0 + s1, 2e-6, 2.0)
    return _Visibility(ok, airmass)


def _may_rise(dec_deg: np.ndarray, site: Site, margin: float) -> np.ndarray:
    """False where a declination never culminates above the altitude limit.

    The culmination altitude is ``90 - |dec - lat|``; declinations of date
    differ from ICRS ones by the precession since J2000 (0.36 deg in 2026),
    so a degree of slack keeps every field that might rise (the exact test follows).
    """
    return 90.0 - np.abs(dec_deg - site.lat_deg) >= site.min_alt_deg + margin - 1.0


def slot_starts(params: PlanParameters) -> npt.NDArray[np.float64]:
    """Start of every slot of the window, seconds from its start (one exposure plus overhead each)."""
    n_slots = int(math.floor((params.hours * 3600.0 - params.exposure_s) / params.slot_s)) + 1
    return np.arange(n_slots, dtype=np.float64) * params.slot_s


def observable_exposures(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike, site: Site, start: object,
                         params: PlanParameters) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """When fields can be observed for a whole exposure: the plan's notion of observability.

    Parameters
    ----------
    ra_deg, dec_deg : array_like, shape (n,)
        Field centres (ICRS), degrees.
    site : Site
    start : astropy.time.Time or str
        Start of the window (UTC when a string).
    params : PlanParameters
        The window (``hours``), ``exposure_s``, the slot length and ``margin_deg``.

    Returns
    -------
    begin_s : (J,) float64
        Start of each slot's exposure, seconds from ``start`` (:func:`slot_starts`).
    ok : (n, J) bool
        Field ``i`` observable over the whole exposure of slot ``j``: at its
        start and end the airmass is ``<= site.max_airmass``, the Sun at or
        below ``site.max_sun_alt_deg`` and (when set) the Moon farther than
        ``site.min_moon_sep_deg``, each limit tightened by ``margin_deg``.
        :func:`plan_observations` places exposures only in such slots.
    """
    p = params.validate()
    site.validate()
    t0 = _as_time(start)
    offs = slot_starts(p)
    vec = _unit_vectors(np.atleast_1d(np.asarray(ra_deg, dtype=np.float64)),
                        np.atleast_1d(np.asarray(dec_deg, dtype=np.float64)))
    ok = np.zeros((vec.shape[0], offs.shape[0]), dtype=bool)
    rise = np.flatnonzero(_may_rise(np.degrees(np.arcsin(np.clip(vec[:, 2], -1.0, 1.0))), site, p.margin_deg))
    if rise.size:
        sky = _SkyGrid(site, t0, 0.0, float(offs[-1]) + p.exposure_s)
        ok[rise] = _visibility(vec[rise], site, sky, offs, p.exposure_s, p.margin_deg).ok
    return offs, ok


SKY_STEP_S = 1800.0
"""The site's sky is computed exactly every 30 minutes (:func:`~gwfollow.targets.observability.sky_states`)
and interpolated between: the zenith turned about the celestial intermediate pole
by the Earth's rotation from both neighbouring instants (blended), the Sun's and
Moon's directions interpolated linearly (they move by 0.02 and 0.3 deg in 30
minutes).  Against the exact computation the zenith differs by less than 0.1
arcsec, the Sun's altitude by less than 0.001 deg and the Moon by less than 10
arcsec (``tests/test_plan.py``), far inside ``margin_deg``."""

EARTH_RATE_RAD_S = 2.0 * math.pi * 1.00273781191135448 / 86400.0
"""The Earth's rotation angle rate (IERS Conventions 2010, eq. 5.15), per UT1 second."""


def _turn(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (n, 3) about unit ``axis`` (n, 3) by ``angle`` (n,) radians (Rodrigues)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return v * c + np.cross(axis, v) * s + axis * np.einsum("ij,ij->i", axis, v)[:, None] * (1.0 - c)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class _SkyGrid:
    """The site's sky (zenith, Sun altitude, Moon) over ``[lo_s, hi_s]`` from ``t0``:
    computed every :data:`SKY_STEP_S` once and interpolated at any instant;
    instants outside are computed on a grid of their own."""

    def __init__(self, site: Site, t0: Any, lo_s: float, hi_s: float) -> None:
        self.site, self.t0, self.lo = site, t0, float(lo_s)
        n = max(2, int(math.ceil((float(hi_s) - self.lo) / SKY_STEP_S)) + 1)
        self.n = n
        self.hi = self.lo + (n - 1) * SKY_STEP_S
        self.s = sky_states(site, t0 + TimeDelta(self.lo + np.arange(n) * SKY_STEP_S, format="sec"))

    def at(self, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Zenith (ICRS), Sun altitude (deg) and Moon (ICRS) at ``t0 + seconds``."""
        if seconds.size and (float(seconds.min()) < self.lo or float(seconds.max()) > self.hi):
            return _SkyGrid(self.site, self.t0, float(seconds.min()), float(seconds.max())).at(seconds)
        s = self.s
        k = np.clip(((seconds - self.lo) // SKY_STEP_S).astype(np.int64), 0, self.n - 2)
        dt = seconds - (self.lo + k * SKY_STEP_S)
        w = (dt / SKY_STEP_S)[:, None]
        fwd, back = EARTH_RATE_RAD_S * dt, EARTH_RATE_RAD_S * (dt - SKY_STEP_S)

        def turned(v: np.ndarray) -> np.ndarray:
            return _unit_rows(_turn(v[k], s.pole_app[k], fwd) * (1.0 - w)
                              + _turn(v[k + 1], s.pole_app[k + 1], back) * w)

        def lerp(v: np.ndarray) -> np.ndarray:
            return _unit_rows(v[k] * (1.0 - w) + v[k + 1] * w)

        zen_app = turned(s.zenith_app)
        sun_alt = np.degrees(np.arcsin(np.clip(np.einsum("ij,ij->i", zen_app, lerp(s.sun_app)), -1.0, 1.0)))
        return turned(s.zenith), sun_alt, None if s.moon is None else lerp(s.moon)


class _Gains:
    """Marginal probability of footprints against a growing covered region (lazy).

    The footprints and what was covered before are laid on one atom grid
    (:class:`~gwfollow.targets.footprints.FootprintGrid`: the intervals
    between consecutive boundaries), so what a field adds is a sum over its
    atoms not yet covered, with no set algebra; each atom's probability
    comes from one merge with the map (pro rata of depth-29 pixels for cells
    it cuts, as :func:`~gwfollow.regions.moc.probability_in_ranges`).
    """

    def __init__(self, skymap: SkyMap, feet: list[npt.NDArray[np.int64]], covered: npt.NDArray[np.int64]) -> None:
        self.n = len(feet)
        grid = FootprintGrid.from_footprints(list(feet) + [covered], 29)
        self.ia, self.ib, self.off = grid.ia, grid.ib, grid.offsets
        self.atom_prob = kfp.atom_probabilities(*grid.cumulative(skymap))
        self.restart()
        self.bound = np.array([self._exact(i) for i in range(self.n)], dtype=np.float64)
        self.at = np.zeros(self.n, dtype=np.int64)

    def restart(self) -> None:
        """Forget the fields taken: only what was covered before counts as covered."""
        self.done = np.zeros(self.atom_prob.shape[0], dtype=np.bool_)
        kfp.cover(self.done, self.ia, self.ib, int(self.off[self.n]), int(self.off[self.n + 1]))
        self.version = getattr(self, "version", 0) + 1

    def _exact(self, i: int) -> float:
        return float(kfp.uncovered_gain(self.atom_prob, self.done, self.ia, self.ib, int(self.off[i]),
                                        int(self.off[i + 1])))

    def fresh(self, i: int) -> bool:
        """Make ``bound[i]`` exact; True if it already was."""
        if self.at[i] == self.version:
            return True
        self.bound[i] = self._exact(i)
        self.at[i] = self.version
        return False

    def take(self, i: int) -> float:
        """Cover field ``i``; the probability it added."""
        gain = self._exact(i)
        kfp.cover(self.done, self.ia, self.ib, int(self.off[i]), int(self.off[i + 1]))
        self.version += 1
        return gain


def _visit_windows(run: np.ndarray, visits: int, gap_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Per field, the window of each visit (release, deadline: (n, visits)); deadline < release when none."""
    a, b = run[:, 0], run[:, 1]
    length = b - a + 1
    w = (length - (visits - 1) * gap_slots) // visits
    k = np.arange(visits)[None, :]
    rel = a[:, None] + k * (w[:, None] + gap_slots)
    dl = rel + w[:, None] - 1
    bad = (a < 0) | (w < 1)
    dl[bad] = rel[bad] - 1
    return rel.astype(np.int64), dl.astype(np.int64)


def _coverage_strategy(gains: _Gains, vis: _Visibility, p: PlanParameters, gap_slots: int,
                       ) -> tuple[list[int], list[int], list[int]]:
    run = longest_run(vis.ok)
    rel, dl = _visit_windows(run, p.visits, gap_slots)
    schedulable = dl[:, 0] >= rel[:, 0]
    status = np.where(schedulable, 0, -1)
    jobs_r: list[int] = []
    jobs_d: list[int] = []
    job_field: list[int] = []
    job_visit: list[int] = []
    while status.size:
        masked = np.where(status == 0, gains.bound, -np.inf)
        i = int(np.argmax(masked))
        if not masked[i] > p.min_gain:
            break
        if not gains.fresh(i):
            continue
        r = np.array(jobs_r + rel[i].tolist(), dtype=np.int64)
        d = np.array(jobs_d + dl[i].tolist(), dtype=np.int64)
        if edf_assign(r, d)[0] < 0:
            status[i] = -1  # infeasible now, so forever (the constraint only tightens)
            continue
        status[i] = 1
        gains.take(i)
        jobs_r += rel[i].tolist()
        jobs_d += dl[i].tolist()
        job_field += [i] * p.visits
        job_visit += list(range(1, p.visits + 1))
    if not job_field:
        return [], [], []
    slots = _lowest_airmass(np.array(jobs_r), np.array(jobs_d), np.array(job_field), vis.airmass)
    return job_field, job_visit, slots.tolist()


def _lowest_airmass(rel: np.ndarray, dl: np.ndarray, fld: np.ndarray, airmass: np.ndarray) -> np.ndarray:
    """Distinct slots inside the jobs' windows with the least total airmass (EDF's if the solver fails)."""
    edf = edf_assign(rel, dl)
    cols = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(rel, dl)]))
    if cols.shape[0] * rel.shape[0] > 20_000_000:  # keep the dense matrix under ~160 MB
        return edf
    big = 1e9
    inside = (cols[None, :] >= rel[:, None]) & (cols[None, :] <= dl[:, None])
    cost = np.where(inside, airmass[fld][:, cols], big)
    rows, cidx = linear_sum_assignment(cost)
    out = np.empty(rel.shape[0], dtype=np.int64)
    out[rows] = cols[cidx]
    if np.any(cost[rows, cidx] >= big):
        return edf
    return out


def _greedy_strategy(gains: _Gains, vis: _Visibility, p: PlanParameters, gap_slots: int,
                     ) -> tuple[list[int], list[int], list[int]]:
    n, n_slots = vis.ok.shape
    booked = np.zeros(n_slots, dtype=bool)
    taken = np.zeros(n, dtype=bool)
    job_field: list[int] = []
    job_visit: list[int] = []
    job_slot: list[int] = []
    for j in range(n_slots):
        if booked[j]:
            continue
        avail = vis.ok[:, j] & ~taken
        while avail.any():
            masked = np.where(avail, gains.bound, -np.inf)
            i = int(np.argmax(masked))
            if not masked[i] > p.min_gain:
                break
            if not gains.fresh(i):
                continue
            later: list[int] = []
            s = j
            for _ in range(1, p.visits):
                free = np.flatnonzero(vis.ok[i, s + gap_slots + 1:] & ~booked[s + gap_slots + 1:])
                if free.size == 0:
                    break
                s = s + gap_slots + 1 + int(free[0])
                later.append(s)
            if len(later) != p.visits - 1:
                avail[i] = False  # its later visits do not fit: another field for this slot
                continue
            taken[i] = True
            gains.take(i)
            for k, s in enumerate([j] + later):
                booked[s] = True
                job_field.append(i)
                job_visit.append(k + 1)
                job_slot.append(s)
            break
    return job_field, job_visit, job_slot


def plan_observations(skymap: SkyMap, telescope: Telescope, site: Site, start: object,
                      params: PlanParameters | None = None, *,
                      covered_before: npt.NDArray[np.int64] | None = None) -> Plan:
    """Plan one telescope's exposures at one site for a sky map.

    Parameters
    ----------
    skymap : SkyMap
    telescope : Telescope
    site : Site
    start : astropy.time.Time or str
        Start of the window (UTC when a string), e.g. the event time.
    params : PlanParameters, optional
    covered_before : (m, 2) int64, optional
        Depth-29 ranges already covered (executed pointings, other
        telescopes' plans): their probability is not counted again.

    Returns
    -------
    Plan

    Raises
    ------
    PlanError
        On a bad parameter or start time.
    """
    p = (params or PlanParameters.defaults()).validate()
    site.validate()
    t0 = _as_time(start)
    covered = (np.empty((0, 2), dtype=np.int64) if covered_before is None
               else np.ascontiguousarray(covered_before, dtype=np.int64))
    slot = p.slot_s
    offs = slot_starts(p)
    n_slots = offs.shape[0]
    region = credible_ranges(skymap, [p.level], "include")[0]
    cand = candidate_fields(telescope, region)
    n_near = int(cand.size)
    cand = cand[_may_rise(telescope.dec[cand], site, p.margin_deg)]
    vec = _unit_vectors(telescope.ra[cand], telescope.dec[cand])
    # One sky for the whole window (and exposures a slew delays past its end).
    sky = _SkyGrid(site, t0, 0.0, float(offs[-1]) + p.exposure_s + p.slot_s)
    vis = _visibility(vec, site, sky, offs, p.exposure_s, p.margin_deg) if cand.size else _Visibility(
        np.zeros((0, n_slots), bool), np.zeros((0, n_slots)))
    keep = vis.ok.any(axis=1)
    rows = cand[keep]
    vis = _Visibility(vis.ok[keep], vis.airmass[keep])
    feet = field_footprints(telescope.ra[rows], telescope.dec[rows], telescope.fov, p.order) if rows.size else []
    gains = _Gains(skymap, feet, covered)
    gap_slots = int(math.ceil(p.visit_gap_s / slot)) if p.visits > 1 else 0
    strat = _coverage_strategy if p.strategy == "coverage" else _greedy_strategy
    job_field, job_visit, job_slot = strat(gains, vis, p, gap_slots)
    prov = {"skymap_sha256": skymap.sha256, "telescope": telescope.name, "site": site.name,
            "strategy": p.strategy, "start": _iso(t0.reshape(1))[0], "hours": p.hours, "exposure_s": p.exposure_s,
            "visits": p.visits, "max_airmass": site.max_airmass, "max_sun_alt_deg": site.max_sun_alt_deg,
            "gwfollow": __version__}
    return _lay_out(gains, telescope, site, sky, t0, p, rows, feet, vis, covered, job_field, job_visit, job_slot,
                    n_candidates=n_near, provenance=prov)


def _lay_out(gains: _Gains, telescope: Telescope, site: Site, sky: _SkyGrid, t0: Any, p: PlanParameters,
             rows: np.ndarray,
             feet: list[np.ndarray], vis: _Visibility, covered: np.ndarray, job_field: list[int],
             job_visit: list[int], job_slot: list[int], *, n_candidates: int, provenance: dict[str, Any]) -> Plan:
    """Exposures in time order with slews; recheck delayed ones; probability in time order."""
    order = np.argsort(np.array(job_slot, dtype=np.int64), kind="stable")
    jf = np.array(job_field, dtype=np.int64)[order]
    jv = np.array(job_visit, dtype=np.int64)[order]
    js = np.array(job_slot, dtype=np.int64)[order]
    ra = telescope.ra[rows[jf]] if jf.size else np.empty(0)
    dec = telescope.dec[rows[jf]] if jf.size else np.empty(0)
    vec = _unit_vectors(ra, dec)
    start_s = js * p.slot_s
    begin = start_s.astype(np.float64).copy()
    prev_end = -math.inf
    for k in range(jf.shape[0]):
        if k:
            sep = math.degrees(math.acos(min(1.0, max(-1.0, float(vec[k] @ vec[k - 1])))))
            need = max(p.readout_s, p.settle_s + sep / p.slew_rate_deg_s) if sep > 0 else p.readout_s
            begin[k] = max(begin[k], prev_end + need)
        prev_end = begin[k] + p.exposure_s
    airmass = vis.airmass[jf, js] if jf.size else np.empty(0)
    keep = np.ones(jf.shape[0], dtype=bool)
    late = np.flatnonzero(begin > start_s + 1e-9)
    if late.size:
        v = _visibility(vec[late], site, sky, begin[late], p.exposure_s, p.margin_deg)
        idx = np.arange(late.size)
        keep[late] = v.ok[idx, idx]
        airmass = airmass.copy()
        airmass[late] = v.airmass[idx, idx]
    if p.visits > 1:  # a delayed earlier visit must not bring the next one closer than visit_gap_s
        last: dict[int, float] = {}
        for k in range(jf.shape[0]):
            if not keep[k]:
                continue
            i = int(jf[k])
            if i in last and begin[k] - last[i] < p.visit_gap_s:
                keep[k] = False
                continue
            last[i] = float(begin[k])
    n_dropped = int((~keep).sum())
    jf, jv, begin, airmass, ra, dec = jf[keep], jv[keep], begin[keep], airmass[keep], ra[keep], dec[keep]
    # Probability in time order: each field counts once, at its first kept exposure.
    gains.restart()
    prob = np.zeros(jf.shape[0])
    seen: set[int] = set()
    for k, i in enumerate(jf.tolist()):
        if i in seen:
            continue
        prob[k] = gains.take(i)
        seen.add(i)
    cov = covered
    if seen:
        parts = [feet[i] for i in sorted(seen)] + ([covered] if covered.shape[0] else [])
        cov = kr.normalize(np.concatenate(parts))
    filters = np.array([p.filters[(v - 1) % len(p.filters)] for v in jv.tolist()], dtype=str)
    return Plan(
        telescope=telescope.name, site=site.name, strategy=p.strategy, start=t0, params=p,
        field_id=telescope.ids[rows[jf]] if jf.size else np.empty(0, dtype=np.int64), ra=ra, dec=dec,
        start_utc=t0 + TimeDelta(begin, format="sec"), end_utc=t0 + TimeDelta(begin + p.exposure_s, format="sec"),
        filter=filters, visit=jv, airmass=airmass, prob=prob, cumprob=np.cumsum(prob), covered=cov,
        n_candidates=n_candidates, n_observable=int(rows.size), n_dropped=n_dropped,
        provenance={**provenance, "probability": float(prob.sum()), "n_exposures": int(jf.shape[0]),
                    "n_candidates": n_candidates, "n_observable": int(rows.size), "n_dropped": n_dropped},
    )


def plan_joint(skymap: SkyMap, pairs: Sequence[tuple[Telescope, Site]], start: object,
               params: PlanParameters | Sequence[PlanParameters] | None = None, *,
               covered_before: npt.NDArray[np.int64] | None = None) -> list[Plan]:
    """Plans for several telescopes and sites where none repeats what another covers.

    The pairs are planned in the order given; each plan counts as covered
    what the earlier plans (and ``covered_before``) cover, so a field
    another telescope observes adds nothing and is not chosen again (a
    sequential greedy over the telescopes).

    Parameters
    ----------
    skymap : SkyMap
    pairs : sequence of (Telescope, Site)
    start : astropy.time.Time or str
    params : PlanParameters or one per pair, optional
    covered_before : (m, 2) int64, optional

    Returns
    -------
    list of Plan
        One per pair; ``sum(plan.probability)`` is the probability of the
        union of all their footprints beyond ``covered_before``.
    """
    if params is None or isinstance(params, PlanParameters):
        plist = [params or PlanParameters.defaults()] * len(pairs)
    else:
        plist = list(params)
        if len(plist) != len(pairs):
            raise PlanError(f"{len(plist)} parameter sets for {len(pairs)} telescope/site pairs")
    covered = covered_before
    out = []
    for (tel, site), p in zip(pairs, plist):
        plan = plan_observations(skymap, tel, site, start, p, covered_before=covered)
        covered = plan.covered
        out.append(plan)
    return out


def params_from_config(pc: PlanConfig, order: int = 10) -> PlanParameters:
    """:class:`PlanParameters` from the ``[plan]`` table (and a telescope's footprint order)."""
    return PlanParameters(**{f.name: getattr(pc, f.name) for f in fields(PlanConfig)}, order=int(order)).validate()


def with_overrides(params: PlanParameters, **kw: Any) -> PlanParameters:
    """``params`` with the given (non-None) fields replaced, validated."""
    return replace(params, **{k: v for k, v in kw.items() if v is not None}).validate()


def plans_table(plans: Sequence[Plan], fovs: Sequence[FieldOfView] | None = None) -> Table:
    """One time-ordered table of one or more plans (a joint plan: ``cumprob`` over all of them).

    Parameters
    ----------
    plans : sequence of Plan
        At least one.
    fovs : sequence of FieldOfView, optional
        Each plan's telescope's field of view: adds an ``s_region`` column,
        the exposure's footprint as a DALI polygon (see
        :func:`~gwfollow.targets.fields.footprint_polygons`).  When circles
        and boxes are mixed, boxes get 6 vertices per side so that every
        footprint has 24.
    """
    if not plans:
        raise PlanError("no plan to tabulate")
    tables = [p.table() for p in plans]
    if fovs is not None:
        mixed = len({f.shape == "circle" for f in fovs}) > 1
        for t, fov in zip(tables, fovs, strict=True):
            k = 6 if mixed and fov.shape != "circle" else 1
            width = 2 * (24 if fov.shape == "circle" or mixed else 4)
            poly = (footprint_polygons(t["ra"].value, t["dec"].value, fov, k) if len(t)
                    else np.zeros((0, width)))
            t["s_region"] = poly * u.deg
    if len(tables) == 1:
        return tables[0]
    table = vstack(tables, metadata_conflicts="silent")
    if len(table):
        table.sort("start_utc")
        table["cumprob"] = np.cumsum(table["prob"])
    return table


__all__ = ["STRATEGIES", "Plan", "PlanParameters", "observable_exposures", "params_from_config", "plan_joint",
           "plan_observations", "plans_table", "slot_starts", "with_overrides"]
