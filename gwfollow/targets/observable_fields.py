"""Ranked fields a telescope can observe from its sites.

:func:`~gwfollow.targets.fields.rank_fields` ranks every field whose
footprint touches the credible region; a field that never rises above the
airmass limit at night, or never while the site is dark, is no target.
:func:`rank_observable_fields` keeps as candidates only the fields that are
observable from at least one of the telescope's sites during the window:
for a whole exposure at some slot of the window, under the site's airmass,
Sun and Moon limits, exactly as the observation plans decide it
(:func:`gwfollow.targets.plan.observable_exposures`: one notion of
observability for plans and ranked lists).  The greedy selection then runs
over those fields only, so a field's value is the probability it adds among
fields that can be observed.  When those fields cannot reach the target
probability, the selection ends where a field adds no more than the plans'
``min_gain``.

The table gains, per field, the ``site`` (the sites that observe it, joined
by ``;``) and one ``windows_<site>`` column per site: the intervals during
which an exposure can be taken (``start/end`` ISO 8601 UTC, joined by ``;``,
rounded inwards to whole seconds), readable by
:func:`gwfollow.targets.windows.parse_windows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.time import Time, TimeDelta

from gwfollow.errors import FieldsError
from gwfollow.skymaps.skymap import SkyMap
from gwfollow.regions.moc import credible_ranges
from gwfollow.targets.fields import RankedFields, Telescope, footprint_grid, rank_fields
from gwfollow.targets.observability import Site, mask_runs
from gwfollow.targets.plan import PlanParameters, observable_exposures


@dataclass(frozen=True)
class ObservableFields:
    """Fields ranked among those observable from a telescope's sites.

    Attributes
    ----------
    ranked : RankedFields
        The ranking restricted to observable fields.
    sites : tuple of Site
    observable : (n, len(sites)) bool
        Ranked field ``k`` is observable from site ``s``.
    windows : tuple of list of str
        Per site, per ranked field: its observable intervals (``start/end;...``).
    n_unobservable : int
        Fields touching the region that no site can observe in the window (not listed).
    """

    ranked: RankedFields
    sites: tuple[Site, ...]
    observable: npt.NDArray[np.bool_]
    windows: tuple[list[str], ...]
    n_unobservable: int

    def __len__(self) -> int:
        return len(self.ranked)

    @property
    def provenance(self) -> dict[str, Any]:
        """The ranking's provenance, with the sites and the window."""
        return self.ranked.provenance

    def table(self) -> Any:
        """:meth:`RankedFields.table` plus ``site`` and ``windows_<site>`` columns."""
        t = self.ranked.table()
        names = [s.name for s in self.sites]
        t["site"] = np.array([";".join(n for n, ok in zip(names, row) if ok) for row in self.observable.tolist()],
                             dtype=str) if len(self) else np.array([], dtype=str)
        for name, w in zip(names, self.windows):
            t[f"windows_{name}"] = np.array(w, dtype=str) if len(self) else np.array([], dtype=str)
        return t


def _iso_seconds(t: Any, up: bool) -> list[str]:
    """ISO 8601 UTC to the second, rounded up (``up``) or down so that intervals shrink."""
    jd = t.utc.jd2 * 86400.0 + (t.utc.jd1 - np.floor(t.utc.jd1)) * 86400.0  # seconds within the JD integer
    frac = jd - np.floor(jd)
    shift = np.where(frac > 1e-6, (1.0 - frac) if up else -frac, 0.0)
    return [s[:19] + "Z" for s in (t + TimeDelta(shift, format="sec")).utc.isot]


def windows_of(ok: npt.NDArray[np.bool_], begin_s: npt.NDArray[np.float64], exposure_s: float,
               start: Any) -> list[str]:
    """Observable intervals of each row of ``ok`` (slots of :func:`observable_exposures`) as text.

    A run of observable slots ``a..b`` is the interval from the start of
    slot ``a``'s exposure to the end of slot ``b``'s.
    """
    rows, first, end = mask_runs(ok)
    out: list[list[str]] = [[] for _ in range(ok.shape[0])]
    if rows.size:
        t0 = start if isinstance(start, Time) else Time(start, scale="utc")
        a = _iso_seconds(t0 + TimeDelta(begin_s[first], format="sec"), up=True)
        b = _iso_seconds(t0 + TimeDelta(begin_s[end - 1] + exposure_s, format="sec"), up=False)
        for r, x, y in zip(rows.tolist(), a, b):
            out[r].append(f"{x}/{y}")
    return [";".join(w) for w in out]


def rank_observable_fields(skymap: SkyMap, telescope: Telescope, sites: Sequence[Site], start: object,
                           params: PlanParameters, *, target: float = 0.9, level: float = 0.999,
                           region: npt.NDArray[np.int64] | None = None,
                           max_fields: int | None = None) -> ObservableFields:
    """Rank the fields of ``telescope`` observable from ``sites`` in the window.

    Parameters
    ----------
    skymap : SkyMap
    telescope : Telescope
    sites : sequence of Site
        The telescope's sites (at least one).
    start : astropy.time.Time or str
        Start of the window (the event time).
    params : PlanParameters
        The window (``hours``), exposure, slots and limits' margin, as for
        plans; ``params.order`` is the footprints' order.
    target, level, region, max_fields
        As for :func:`~gwfollow.targets.fields.rank_fields`.

    Returns
    -------
    ObservableFields

    Examples
    --------
    >>> from gwfollow import read_skymap
    >>> from gwfollow.skymaps.simulate import simulated_skymap_bytes
    >>> from gwfollow.targets.fields import ZTF_FOV
    >>> from gwfollow.targets.observability import KNOWN_SITES
    >>> sm = read_skymap(simulated_skymap_bytes(seed=1, ra_deg=150.0, dec_deg=-70.0))
    >>> r = rank_observable_fields(sm, Telescope.generated("g", ZTF_FOV), [KNOWN_SITES["palomar"]],
    ...                            "2025-07-20T02:00", PlanParameters.defaults(order=8))
    >>> len(r), r.n_unobservable > 0   # Palomar never sees Dec -70
    (0, True)
    """
    if not sites:
        raise FieldsError("no site to observe from", hint="configure [sites.NAME] or rank without sites")
    p = params.validate()
    if region is None:
        region = credible_ranges(skymap, [level], "include")[0]
    touching = footprint_grid(telescope, p.order).touching(region).astype(np.int64)
    oks = []
    begin_s = np.empty(0)
    for site in sites:
        begin_s, ok = observable_exposures(telescope.ra, telescope.dec, site, start, p)
        oks.append(ok)
    seen = np.stack([ok.any(axis=1) for ok in oks], axis=1)  # (grid rows, sites)
    rows = np.flatnonzero(seen.any(axis=1)).astype(np.int64)
    r = rank_fields(skymap, telescope, target=target, level=level, order=p.order, max_fields=max_fields,
                    region=region, candidates=rows)
    windows = tuple(windows_of(ok[r.rows], begin_s, p.exposure_s, start) for ok in oks)
    n_out = int((~np.isin(touching, rows)).sum())
    t0 = start if isinstance(start, Time) else Time(start, scale="utc")
    prov = {**r.provenance, "sites": ";".join(s.name for s in sites), "window_start": t0.utc.isot[:23] + "Z",
            "hours": p.hours, "exposure_s": p.exposure_s, "n_unobservable": n_out}
    # When the observable fields cannot reach the target, the selection stops
    # where fields add no more than ``min_gain`` (the plans' threshold).
    selected = r.selected & (r.marginal > p.min_gain)
    r = RankedFields(r.telescope, r.rows, r.prob, r.marginal, r.cumprob, selected, r.target, r.n_candidates, prov)
    return ObservableFields(r, tuple(sites), seen[r.rows], windows, n_out)

__all__ = ["ObservableFields", "rank_observable_fields", "windows_of"]
