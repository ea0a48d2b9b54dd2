"""The MOC 2.0 time axis and space-time coverages as arrays.

Times on the MOC 2.0 time axis are integer microseconds since JD 0 in TCB
(IVOA MOC 2.0, section 4.3: depth 61, one cell per microsecond).
:class:`SpaceTimeRanges` holds an ST-MOC as plain arrays: which sky (depth-29
ranges) was covered during which time ranges.  Everything here is below both
the MOC readers and writers (:mod:`gwfollow.regions.mocio`) and the coverages
(:mod:`gwfollow.regions.coverage`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.time import Time

from gwfollow.errors import CoverageError
from gwfollow.kernels import ranges as kr
from gwfollow.skymaps.skymap import SkyMap

if TYPE_CHECKING:  # pragma: no cover
    from astropy.time import Time

TIME_DEPTH = 61
"""Deepest time order of MOC 2.0: one cell is one microsecond."""
TIME_END_US = 1 << TIME_DEPTH
"""End of the MOC 2.0 time axis (exclusive), microseconds since JD 0."""
US_PER_DAY = 86_400_000_000
DEFAULT_WINDOW_S = 86400.0
"""Default length of the time window after the event: one day."""

SIGN_BIT = np.int64(-(1 << 63))

IntRanges = npt.NDArray[np.int64]
TimeLike = Union["Time", str]


# --------------------------------------------------------------------------- time axis


def times_to_us(times: Any) -> npt.NDArray[np.int64]:
    """Microseconds since JD 0 (TCB) of times: the MOC 2.0 time axis at depth 61.

    Parameters
    ----------
    times : astropy.time.Time, str or sequence of str
        Strings are read as UTC (ISO 8601).

    Returns
    -------
    ndarray of int64
        One value per time (0-d input gives a 1-element array): the TCB
        Julian date times 86 400 000 000, rounded down.

    Notes
    -----
    mocpy 0.21's ``times_to_microseconds`` adds TAI-elapsed seconds to a TCB
    day boundary and so runs up to ~1.3 ms behind the TCB Julian date (the
    TCB/TAI rate difference over the fraction of a day); its inverse
    ``microseconds_to_times`` is exact to ~30 us.  gwfollow computes the
    TCB date exactly, keeping astropy's two-double precision, and
    :func:`us_to_times` is its exact inverse.  The difference is far below
    any exposure time.
    """

    t = times if isinstance(times, Time) else Time(times, scale="utc")
    tcb = t.tcb
    jd1 = np.atleast_1d(np.asarray(tcb.jd1, dtype=np.float64))
    jd2 = np.atleast_1d(np.asarray(tcb.jd2, dtype=np.float64))
    day = np.floor(jd1)
    frac = (jd1 - day) + jd2
    extra = np.floor(frac)
    day = day + extra
    frac = frac - extra
    return day.astype(np.int64) * US_PER_DAY + np.floor(frac * US_PER_DAY).astype(np.int64)


def us_to_times(us: Any) -> Time:
    """astropy ``Time`` (TCB) of microseconds since JD 0: inverse of :func:`times_to_us`."""

    v = np.asarray(us, dtype=np.int64)
    day, rest = np.divmod(v, US_PER_DAY)
    return Time(day.astype(np.float64), rest.astype(np.float64) / US_PER_DAY, format="jd", scale="tcb")


def iso_of(value: Any, what: str) -> Any:
    # Strings and datetimes are read as UTC; numbers are refused (MJD? JD? unix?).

    if isinstance(value, (Time, str)) or hasattr(value, "isoformat"):
        try:
            Time(value, scale="utc") if not isinstance(value, Time) else value
        except ValueError:
            raise CoverageError(f"cannot read {what} {value!r} as a time", source=what,
                                hint="use ISO 8601 (UTC), e.g. 2019-04-25T08:18:05") from None
        return value
    raise CoverageError(
        f"{what} must be an astropy Time or an ISO 8601 string (UTC), got {type(value).__name__}",
        source=what,
    )


def time_us(value: Any, what: str) -> int:

    v = iso_of(value, what)
    return int(times_to_us(v if isinstance(v, Time) else Time(v, scale="utc"))[0])


def time_window_us(
    skymap: SkyMap | None, start: TimeLike | None = None, end: TimeLike | None = None,
    duration_s: float = DEFAULT_WINDOW_S,
) -> tuple[int, int]:
    """The window ``[start, end)`` in TCB microseconds.

    ``start`` defaults to the sky map's event time (``DATE-OBS``), ``end`` to
    ``duration_s`` SI seconds after ``start``.
    """

    if start is None:
        meta = skymap.meta if skymap is not None else None
        if meta is not None and meta.event_time:
            start_t = Time(meta.event_time, scale="utc")  # DATE-OBS keeps the microseconds
        elif meta is not None and meta.event_mjd is not None:
            start_t = Time(meta.event_mjd, format="mjd", scale="utc")
        else:
            raise CoverageError("no event time (DATE-OBS / MJD-OBS) to start the window at",
                                source=meta.source if meta is not None else "<no sky map>",
                                hint="pass start= explicitly")
    elif isinstance(start, Time):
        start_t = start
    else:
        start_t = Time(iso_of(start, "start"), scale="utc")
    t0 = int(times_to_us(start_t)[0])
    if end is not None:
        t1 = time_us(end, "end")
    elif not (math.isfinite(duration_s) and duration_s > 0):
        raise CoverageError(f"duration {duration_s!r} s is not positive", source="window")
    else:
        t1 = int(times_to_us(start_t + duration_s * u.s)[0])
    if t1 <= t0:
        raise CoverageError(f"empty time window: end {end!r} is not after start {start!r}", source="window")
    return t0, t1


def iso_utc(us: int) -> str:
    t = us_to_times(us).utc
    t.precision = 6
    return str(t.isot)


# --------------------------------------------------------------------------- range helpers


def deepest_order(ranges: IntRanges, depth: int, bits: int) -> int:
    """Deepest order needed to write ``ranges`` exactly (0 when empty)."""
    b = np.asarray(ranges, dtype=np.int64).ravel()
    b = b[b != 0]
    if b.size == 0:
        return 0
    low = b & -b
    tz = np.frexp(low.astype(np.float64))[1] - 1
    return int(depth - np.minimum(tz // bits, depth).min())


def as_ranges(r: Any, what: str) -> IntRanges:
    """``r`` as canonical (n, 2) int64 ranges, normalised only when it is not already."""
    try:
        a = np.ascontiguousarray(np.asarray(r, dtype=np.int64).reshape(-1, 2))
    except (TypeError, ValueError) as exc:
        raise CoverageError(f"{what} must be (n, 2) integer ranges ({exc})", source=what) from None
    return a if kr.is_canonical(a) else kr.normalize(a)


def covered_us(time_ranges: IntRanges, t0: int, t1: int) -> int:
    window = np.array([[t0, t1]], dtype=np.int64)
    return int(kr.count_pixels(kr.intersection(time_ranges, window)))


# --------------------------------------------------------------------------- space-time


@dataclass(frozen=True, eq=False)
class SpaceTimeRanges:
    """An ST-MOC as arrays: which sky was covered during which time ranges.

    Attributes
    ----------
    time_ranges : (m, 2) ndarray of int64
        TCB microseconds since JD 0, sorted by start and pairwise disjoint.
    block_of : (m,) ndarray of int64
        For each time range, the block (space coverage) observed during it.
    space_offsets : (B + 1,) ndarray of int64
        Block ``b`` owns ``space_ranges[space_offsets[b]:space_offsets[b + 1]]``.
    space_ranges : (k, 2) ndarray of int64
        The blocks' canonical depth-29 ranges, concatenated.
    """

    time_ranges: IntRanges
    block_of: npt.NDArray[np.int64]
    space_offsets: npt.NDArray[np.int64]
    space_ranges: IntRanges

    @classmethod
    def from_blocks(cls, blocks: Iterable[tuple[Any, Any]]) -> SpaceTimeRanges:
        """Build from ``(time_ranges, space_ranges)`` pairs, as in an ST-MOC file.

        Blocks may overlap in time (exposures of several telescopes, or one
        exposure per row): overlapping stretches are then split and get the
        union of the skies observed during them, so that the result's time
        ranges are disjoint.  Blocks with no time or no sky are dropped.
        """
        times: list[IntRanges] = []
        spaces: list[IntRanges] = []
        for t, s in blocks:
            tr = as_ranges(t, "time ranges")
            sr = as_ranges(s, "space ranges")
            if tr.shape[0] and sr.shape[0]:
                times.append(tr)
                spaces.append(sr)
        if not times:
            return cls._empty()
        tr_all = np.concatenate(times)
        owner = np.repeat(np.arange(len(times), dtype=np.int64), [t.shape[0] for t in times])
        idx = np.argsort(tr_all[:, 0], kind="stable")
        tr_all = tr_all[idx]
        owner = owner[idx]
        if tr_all.shape[0] > 1 and np.any(tr_all[1:, 0] < tr_all[:-1, 1]):
            return cls._from_overlapping(tr_all, owner, spaces)
        lengths = np.array([s.shape[0] for s in spaces], dtype=np.int64)
        offsets = np.zeros(len(spaces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.ascontiguousarray(tr_all), owner, offsets, np.concatenate(spaces))

    @classmethod
    def _empty(cls) -> SpaceTimeRanges:
        return cls(np.empty((0, 2), np.int64), np.empty(0, np.int64), np.zeros(1, np.int64),
                   np.empty((0, 2), np.int64))

    @classmethod
    def _from_overlapping(cls, tr: IntRanges, owner: npt.NDArray[np.int64],
                          spaces: list[IntRanges]) -> SpaceTimeRanges:
        # Sweep over the elementary intervals between all range ends; each gets
        # the union of the skies of the ranges active during it.
        bounds = np.unique(tr.ravel())
        n = tr.shape[0]
        by_end = np.argsort(tr[:, 1], kind="stable")
        active: dict[int, int] = {}
        i = j = 0
        union_cache: dict[frozenset[int], int] = {}
        out_spaces: list[IntRanges] = []
        out_t: list[tuple[int, int]] = []
        out_b: list[int] = []
        for k in range(bounds.shape[0] - 1):
            b0, b1 = int(bounds[k]), int(bounds[k + 1])
            while j < n and tr[by_end[j], 1] <= b0:
                row = int(by_end[j])
                c = active.get(int(owner[row]), 0) - 1
                if c > 0:
                    active[int(owner[row])] = c
                else:
                    active.pop(int(owner[row]), None)
                j += 1
            while i < n and tr[i, 0] <= b0:
                if tr[i, 1] > b0:
                    active[int(owner[i])] = active.get(int(owner[i]), 0) + 1
                i += 1
            if not active:
                continue
            key = frozenset(active)
            blk = union_cache.get(key)
            if blk is None:
                members = sorted(key)
                sky = spaces[members[0]]
                for m in members[1:]:
                    sky = kr.union(sky, spaces[m])
                blk = len(out_spaces)
                out_spaces.append(sky)
                union_cache[key] = blk
            if out_t and out_t[-1][1] == b0 and out_b[-1] == blk:
                out_t[-1] = (out_t[-1][0], b1)
            else:
                out_t.append((b0, b1))
                out_b.append(blk)
        lengths = np.array([s.shape[0] for s in out_spaces], dtype=np.int64)
        offsets = np.zeros(len(out_spaces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.array(out_t, dtype=np.int64).reshape(-1, 2), np.array(out_b, dtype=np.int64),
                   offsets, np.concatenate(out_spaces) if out_spaces else np.empty((0, 2), np.int64))

    @property
    def n_blocks(self) -> int:
        """Number of distinct space coverages."""
        return int(self.space_offsets.shape[0] - 1)

    def block_space(self, b: int) -> IntRanges:
        """Canonical depth-29 ranges of block ``b``."""
        return self.space_ranges[self.space_offsets[b] : self.space_offsets[b + 1]]

    def blocks(self) -> Iterator[tuple[IntRanges, IntRanges]]:
        """``(time_ranges, space_ranges)`` entries in time order, as an ST-MOC file lists them.

        Consecutive time ranges with the same sky form one entry; a sky seen
        again later starts a new entry.
        """
        n = self.block_of.shape[0]
        if n == 0:
            return
        cuts = np.flatnonzero(np.diff(self.block_of)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [n]])
        for a, b in zip(starts.tolist(), ends.tolist()):
            yield self.time_ranges[a:b], self.block_space(int(self.block_of[a]))

    def _union_of_blocks(self, blocks: npt.NDArray[np.int64]) -> IntRanges:
        if blocks.size == 0:
            return np.empty((0, 2), np.int64)
        if blocks.size == 1:
            return self.block_space(int(blocks[0])).copy()
        parts = [self.block_space(int(b)) for b in blocks]
        return kr.normalize(np.concatenate(parts))

    def space_between(self, t0_us: int, t1_us: int) -> IntRanges:
        """The sky observed at any moment of ``[t0_us, t1_us)`` (canonical ranges).

        A time range that overlaps the window by one microsecond counts: the
        same rule as mocpy's ``STMOC.query_by_time``.
        """
        if t1_us <= t0_us or self.time_ranges.shape[0] == 0:
            return np.empty((0, 2), np.int64)
        i0 = int(np.searchsorted(self.time_ranges[:, 1], t0_us, side="right"))
        i1 = int(np.searchsorted(self.time_ranges[:, 0], t1_us, side="left"))
        return self._union_of_blocks(np.unique(self.block_of[i0:i1]))

    def time_coverage(self) -> IntRanges:
        """Canonical union of the time ranges (when anything was observed)."""
        return kr.normalize(self.time_ranges) if self.time_ranges.shape[0] else self.time_ranges

    def space_coverage(self) -> IntRanges:
        """Union of all the space coverages (everything ever observed)."""
        return self._union_of_blocks(np.arange(self.n_blocks, dtype=np.int64))
