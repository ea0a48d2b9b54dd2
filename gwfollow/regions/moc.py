"""Credible-region MOCs and space-time MOCs of sky maps.

The kernels work on canonical depth-29 ranges (``(n, 2)`` int64); this
module is the boundary where levels are checked, ``mocpy`` objects are made
and written (IVOA MOC 2.0 FITS, JSON or ASCII), and areas are converted to
square degrees.

Boundary rules for the cell that crosses a level (cells are ranked by
decreasing density; equal densities keep the order of the map's rows):

``split`` (default)
    Whole cells while the cumulative probability stays ``<= level``; then
    the crossing cell is divided into its NESTED children, down to the
    map's ``moc_order`` (``MOCORDER``, else its deepest order): children are
    taken in NESTED order while their probability fits in what is left of
    the level, the first child that does not fit is divided again, and a
    cell at ``moc_order`` is taken only when it fills what is left exactly.
    This is cds-moc-rust's ``valued_cells_to_moc_with_opt`` with
    ``strict=True`` as mocpy 0.21 applies it by default in
    ``MOC.from_multiordermap_fits_file(path, cumul_to=level)``; gwfollow's
    result equals mocpy's cell for cell (tested on every real map).  The
    region encloses at most ``level``.
``exclude``
    Whole cells with cumulative probability ``<= level``: ligo.skymap's
    greedy credible region, ``find_greedy_credible_levels(p, dens) <= level``.
``include``
    ``exclude`` plus the crossing cell (none when the cumulative probability
    hits ``level`` exactly): encloses at least ``level``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.time import Time, TimeDelta
from mocpy import MOC, STMOC

from gwfollow.errors import MocError
from gwfollow.kernels import credible as kcred
from gwfollow.kernels import probability as kprob
from gwfollow.kernels import ranges as kr
from gwfollow.skymaps.skymap import SkyMap

if TYPE_CHECKING:  # pragma: no cover
    from astropy.time import Time
    from mocpy import MOC, STMOC

BOUNDARIES = ("split", "exclude", "include")
STERADIAN_PER_DEPTH29_PIXEL = 4.0 * math.pi / kr.NPIX29
DEG2_PER_SR = (180.0 / math.pi) ** 2


def _check_level(level: float) -> float:
    try:
        lv = float(level)
    except (TypeError, ValueError):
        raise MocError(f"credible level {level!r} is not a number") from None
    if not (0.0 < lv <= 1.0) or math.isnan(lv):
        raise MocError(
            f"credible level {level!r} is not in (0, 1]",
            hint="give a fraction, e.g. 0.9 for the 90% region",
        )
    return lv


def _check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise MocError(f"boundary {boundary!r} is not one of {', '.join(BOUNDARIES)}")
    return boundary


@dataclass(frozen=True)
class _Ranking:
    """What the selection of several levels shares: one (partial) sort."""

    idx: npt.NDArray[np.int64]
    cumsum: npt.NDArray[np.float64]
    pos: npt.NDArray[np.int64]


def _ranking(skymap: SkyMap, max_level: float) -> _Ranking:
    idx, cumsum = kcred.rank_top(skymap.probdensity, skymap.prob, max_level)
    return _Ranking(idx, cumsum, kcred.rank_positions(idx, len(skymap)))


def _level_ranges(skymap: SkyMap, r: _Ranking, level: float, boundary: str) -> npt.NDArray[np.int64]:
    n = r.idx.shape[0]
    k = int(kcred.n_whole_cells(r.cumsum, level))
    # A level hit exactly by the cumulative sum has no crossing cell to add.
    if boundary == "include" and k < n and (k == 0 or r.cumsum[k - 1] < level):
        return kcred.ranges_of_top_cells(skymap.ranges, skymap.by_start, r.pos, k + 1)
    whole = kcred.ranges_of_top_cells(skymap.ranges, skymap.by_start, r.pos, k)
    if boundary == "split" and k < n:
        acc = r.cumsum[k - 1] if k > 0 else 0.0
        if acc < level:
            c = r.idx[k]
            part = kcred.split_crossing_cell(
                int(skymap.order[c]),
                int(skymap.ipix[c]),
                float(skymap.prob[c]),
                level - acc,
                int(skymap.meta.moc_order),
            )
            if part.shape[0]:
                whole = kr.union(whole, part)
    return whole


class CredibleRegions:
    """Every credible region of one sky map from one ranking of its cells.

    The cells are ranked (a partial sort up to ``max_level``) once; each
    ``(level, boundary)`` asked for is then a cut of that ranking, memoised,
    so one alert sorts its map once however many levels and products need it.

    Parameters
    ----------
    skymap : SkyMap
    max_level : float
        The highest level that will be asked for (0.999 covers every product).
    """

    def __init__(self, skymap: SkyMap, max_level: float = 0.999) -> None:
        self.skymap = skymap
        self.max_level = _check_level(max_level)
        self._ranking = _ranking(skymap, self.max_level)
        self._memo: dict[tuple[float, str], npt.NDArray[np.int64]] = {}

    def ranges(self, level: float, boundary: str = "split") -> npt.NDArray[np.int64]:
        """Canonical depth-29 ranges of the region at ``level`` (<= ``max_level``)."""
        key = (_check_level(level), _check_boundary(boundary))
        if key[0] > self.max_level:
            raise MocError(f"level {level} is above the ranked {self.max_level}",
                           hint="build CredibleRegions with a higher max_level")
        if key not in self._memo:
            self._memo[key] = _level_ranges(self.skymap, self._ranking, key[0], key[1])
        return self._memo[key]


def credible_ranges(
    skymap: SkyMap, levels: Sequence[float], boundary: str = "split"
) -> list[npt.NDArray[np.int64]]:
    """Canonical depth-29 ranges of the credible regions at ``levels``.

    The kernels' form of :func:`credible_mocs`, for callers that go on
    with set algebra.
    """
    _check_boundary(boundary)
    lvls = [_check_level(lv) for lv in levels]
    if not lvls:
        return []
    r = _ranking(skymap, max(lvls))
    return [_level_ranges(skymap, r, lv, boundary) for lv in lvls]


def moc_from_ranges(ranges: npt.NDArray[np.int64], max_order: int = 29) -> MOC:
    """A ``mocpy.MOC`` of canonical depth-29 ranges at ``max_order``."""

    return MOC.from_depth29_ranges(int(max_order), np.asarray(ranges, dtype=np.uint64).reshape(-1, 2))


def ranges_of(moc: MOC) -> npt.NDArray[np.int64]:
    """Canonical depth-29 ranges (int64) of a ``mocpy.MOC``."""
    r = np.asarray(moc.to_depth29_ranges, dtype=np.int64).reshape(-1, 2)
    return r if kr.is_canonical(r) else kr.normalize(r)


def credible_mocs(skymap: SkyMap, levels: Sequence[float], boundary: str = "split") -> list[MOC]:
    """Credible-region MOCs at several levels with one sort of the cells.

    Parameters
    ----------
    skymap : SkyMap
    levels : sequence of float
        Fractions of probability in (0, 1], e.g. ``[0.5, 0.9]``.
    boundary : {"split", "exclude", "include"}
        Treatment of the cell that crosses each level (module docstring).

    Returns
    -------
    list of mocpy.MOC
        One per level, with ``max_order`` equal to the map's ``moc_order``.
    """
    return [
        moc_from_ranges(r, skymap.meta.moc_order)
        for r in credible_ranges(skymap, levels, boundary)
    ]


def credible_moc(skymap: SkyMap, level: float, boundary: str = "split") -> MOC:
    """The credible-region MOC at one level (see :func:`credible_mocs`).

    Examples
    --------
    >>> from gwfollow import read_skymap, credible_moc, moc_area
    >>> from gwfollow.skymaps.simulate import simulated_skymap_bytes
    >>> sm = read_skymap(simulated_skymap_bytes(seed=1))
    >>> moc = credible_moc(sm, 0.9)
    >>> 0 < moc_area(moc) < 41253
    True
    """
    return credible_mocs(skymap, [level], boundary)[0]


def probability_in_ranges(skymap: SkyMap, ranges: npt.NDArray[np.int64]) -> float:
    """Probability of ``skymap`` inside canonical ranges (exact for partial cells).

    A MOC of few ranges (a field of view) visits only the cells it touches;
    a large one walks all cells; both give the same double.
    """
    n = skymap.ranges.shape[0]
    if ranges.shape[0] * 16 < n:
        starts, ends = skymap.sorted_cells
        touched = int((np.searchsorted(starts, ranges[:, 1]) - np.searchsorted(ends, ranges[:, 0], side="right")).sum())
        if touched * 8 < n:  # else sorting the touched cells costs more than one pass over all
            return float(kprob.probability_in_ranges_sorted(starts, ends, skymap.by_start, skymap.prob, ranges))
    return float(kprob.probability_in_ranges(skymap.ranges, skymap.prob, ranges))


def probability_in_moc(skymap: SkyMap, moc: MOC) -> float:
    """Probability of ``skymap`` inside ``moc``.

    A cell partly inside the MOC contributes the fraction of its area that
    is inside, counted exactly in depth-29 pixels.
    """
    return probability_in_ranges(skymap, ranges_of(moc))


def ranges_area_deg2(ranges: npt.NDArray[np.int64]) -> float:
    """Area of canonical depth-29 ranges in square degrees."""
    return float(kr.count_pixels(ranges)) * STERADIAN_PER_DEPTH29_PIXEL * DEG2_PER_SR


def moc_area(moc: MOC) -> float:
    """Area of a space MOC in square degrees."""
    return ranges_area_deg2(ranges_of(moc))


def event_stmoc(
    skymap: SkyMap,
    level: float,
    start: object | None = None,
    duration: object = 86400.0,
    boundary: str = "split",
    time_order: int = 61,
) -> STMOC:
    """A space-time MOC of the credible region over a time window.

    Parameters
    ----------
    skymap : SkyMap
    level : float
        Credible level of the region.
    start : astropy.time.Time, str or None
        Start of the window; the event time (``DATE-OBS``) when omitted.
    duration : float (seconds) or astropy Quantity / TimeDelta
        Length of the window.
    boundary : {"split", "exclude", "include"}
    time_order : int
        Time resolution of the MOC (61: one microsecond).

    Returns
    -------
    mocpy.STMOC
        The region paired with ``[start, start + duration)``.
    """

    if start is None:
        t0 = skymap.event_t0
        if t0 is None:
            raise MocError(
                f"{skymap.meta.source}: no event time (DATE-OBS / MJD-OBS) in the sky map",
                hint="pass start= explicitly",
            )
    else:
        try:
            t0 = start if isinstance(start, Time) else Time(start, scale="utc")
        except ValueError as exc:
            raise MocError(f"cannot read start time {start!r} ({exc})") from None
    if isinstance(duration, TimeDelta):
        dt = duration
    elif isinstance(duration, u.Quantity):
        dt = TimeDelta(duration.to(u.s))
    else:
        dt = TimeDelta(float(duration) * u.s)
    if dt.sec <= 0:
        raise MocError(f"duration must be positive, got {dt.sec} s")
    r = credible_ranges(skymap, [level], boundary)[0]
    return stmoc_from_ranges(r, skymap.meta.moc_order, t0, dt.sec, time_order)


def stmoc_from_ranges(ranges: npt.NDArray[np.int64], max_order: int, start: Time, duration_s: float,
                      time_order: int = 61) -> STMOC:
    """The one space-time MOC builder: a region (depth-29 ranges) paired with
    ``[start, start + duration_s)`` at time order ``time_order`` (61: one microsecond).

    Every product that pairs a region with a time window (``event_stmoc``, the
    REST ``moc?duration=``) is made here, so they agree to the microsecond.
    """

    if not math.isfinite(duration_s) or duration_s <= 0:
        raise MocError(f"duration must be a positive number of seconds, got {duration_s!r}")
    moc = moc_from_ranges(ranges, max_order)
    # mocpy converts the times to its own scale (TCB) and back.
    return STMOC.from_spatial_coverages(start.reshape(1), (start + duration_s * u.s).reshape(1), [moc],
                                        time_depth=int(time_order))


_FORMATS = {".fits": "fits", ".fit": "fits", ".json": "json", ".txt": "ascii", ".ascii": "ascii", ".moc": "ascii"}


def moc_format_for(path: str | os.PathLike[str]) -> str:
    """MOC serialisation (fits, json, ascii) chosen by a file name's extension."""
    ext = Path(path).suffix.lower()
    if ext not in _FORMATS:
        raise MocError(
            f"cannot tell the MOC format of {str(path)!r} from its extension",
            hint="use .fits, .json or .txt (ASCII)",
        )
    return _FORMATS[ext]


def write_moc(moc: MOC | STMOC, path: str | os.PathLike[str]) -> Path:
    """Write a MOC as IVOA MOC 2.0 FITS, JSON or ASCII by extension."""
    p = Path(path)
    fmt = moc_format_for(p)
    moc.save(str(p), format=fmt, overwrite=True)
    return p


def path_for_level(path: str | os.PathLike[str], level: float, several: bool) -> Path:
    """``region.fits`` -> ``region-0.9.fits`` when several levels are written."""
    p = Path(path)
    if not several:
        return p
    return p.with_name(f"{p.stem}-{level:g}{p.suffix}")
