"""Coverages: what a survey, a catalogue or a telescope has observed, and the GW probability in it.

A :class:`Coverage` is a named IVOA MOC 2.0 coverage of one of three kinds:

``space``
    An S-MOC: canonical depth-29 ranges (``(n, 2)`` int64, sorted, disjoint,
    merged), like every MOC inside gwfollow.
``time``
    A T-MOC: canonical ranges of the MOC 2.0 time axis at depth 61, i.e.
    integer microseconds since JD 0 in the TCB time scale (``TIMESYS=TCB``),
    the convention of mocpy's ``TimeMOC.to_depth61_ranges``.  A T-MOC says
    *when* something observed, not *where*.
``spacetime``
    An ST-MOC, held as :class:`SpaceTimeRanges`: sorted, disjoint time ranges,
    each pointing to the space ranges observed during it (the structure of the
    MOC 2.0 ST-MOC serialisation), so that "the sky observed during
    ``[t0, t1)``" is two binary searches and one union.

Sources: MOC files (:func:`load_coverage`: FITS, JSON, ASCII, including the
pre-2.0 and non-standard files CDS tools wrote), the CDS MOCServer
(:func:`coverage_from_mocserver`, cached on disk), and a telescope's executed
pointings (:func:`pointings_to_stmoc`).  :func:`coverage_probability` gives
the GW probability a coverage holds, exact for sky-map cells the coverage cuts.

Times are converted once, at this module's boundary: astropy ``Time`` (or
ISO strings, UTC) in, integer TCB microseconds inside (:func:`times_to_us`).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt

from .errors import CorruptSkyMapError, CoverageError, FetchError
from .fitsio import BLOCK, data_size, read_header
from .kernels import healpix as khp
from .kernels import ranges as kr
from .moc import moc_from_ranges, probability_in_ranges, ranges_area_deg2, ranges_of
from .skymap import SkyMap

if TYPE_CHECKING:  # pragma: no cover
    from astropy.time import Time
    from mocpy import MOC, STMOC, TimeMOC

log = logging.getLogger("gwfollow.coverage")

KINDS = ("space", "time", "spacetime")
READERS = ("auto", "direct")

TIME_DEPTH = 61
"""Deepest time order of MOC 2.0: one cell is one microsecond."""
TIME_END_US = 1 << TIME_DEPTH
"""End of the MOC 2.0 time axis (exclusive), microseconds since JD 0."""
US_PER_DAY = 86_400_000_000
DEFAULT_WINDOW_S = 86400.0
"""Default length of the time window after the event: one day."""
MOCSERVER_URL = "https://alasky.cds.unistra.fr/MocServer/query"

_SIGN = np.int64(-(1 << 63))
_MOCSERVER_GET = {"space": "moc", "time": "tmoc", "spacetime": "stmoc"}

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
    from astropy.time import Time

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
    from astropy.time import Time

    v = np.asarray(us, dtype=np.int64)
    day, rest = np.divmod(v, US_PER_DAY)
    return Time(day.astype(np.float64), rest.astype(np.float64) / US_PER_DAY, format="jd", scale="tcb")


def _iso_of(value: Any, what: str) -> Any:
    # Strings and datetimes are read as UTC; numbers are refused (MJD? JD? unix?).
    from astropy.time import Time

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


def _time_us(value: Any, what: str) -> int:
    from astropy.time import Time

    v = _iso_of(value, what)
    return int(times_to_us(v if isinstance(v, Time) else Time(v, scale="utc"))[0])


def time_window_us(
    skymap: SkyMap | None, start: TimeLike | None = None, end: TimeLike | None = None,
    duration_s: float = DEFAULT_WINDOW_S,
) -> tuple[int, int]:
    """The window ``[start, end)`` in TCB microseconds.

    ``start`` defaults to the sky map's event time (``DATE-OBS``), ``end`` to
    ``duration_s`` SI seconds after ``start``.
    """
    from astropy import units as u
    from astropy.time import Time

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
        start_t = Time(_iso_of(start, "start"), scale="utc")
    t0 = int(times_to_us(start_t)[0])
    if end is not None:
        t1 = _time_us(end, "end")
    elif not (math.isfinite(duration_s) and duration_s > 0):
        raise CoverageError(f"duration {duration_s!r} s is not positive", source="window")
    else:
        t1 = int(times_to_us(start_t + duration_s * u.s)[0])
    if t1 <= t0:
        raise CoverageError(f"empty time window: end {end!r} is not after start {start!r}", source="window")
    return t0, t1


def _iso_utc(us: int) -> str:
    t = us_to_times(us).utc
    t.precision = 6
    return str(t.isot)


# --------------------------------------------------------------------------- range helpers


def _deepest_order(ranges: IntRanges, depth: int, bits: int) -> int:
    """Deepest order needed to write ``ranges`` exactly (0 when empty)."""
    b = np.asarray(ranges, dtype=np.int64).ravel()
    b = b[b != 0]
    if b.size == 0:
        return 0
    low = b & -b
    tz = np.frexp(low.astype(np.float64))[1] - 1
    return int(depth - np.minimum(tz // bits, depth).min())


def _as_ranges(r: Any, what: str) -> IntRanges:
    """``r`` as canonical (n, 2) int64 ranges, normalised only when it is not already."""
    try:
        a = np.ascontiguousarray(np.asarray(r, dtype=np.int64).reshape(-1, 2))
    except (TypeError, ValueError) as exc:
        raise CoverageError(f"{what} must be (n, 2) integer ranges ({exc})", source=what) from None
    return a if kr.is_canonical(a) else kr.normalize(a)


def _covered_us(time_ranges: IntRanges, t0: int, t1: int) -> int:
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
            tr = _as_ranges(t, "time ranges")
            sr = _as_ranges(s, "space ranges")
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


# --------------------------------------------------------------------------- the coverage


@dataclass(frozen=True, eq=False)
class Coverage:
    """A named coverage (S-MOC, T-MOC or ST-MOC).

    Attributes
    ----------
    name : str
        What the coverage is called (``"SDSS9 r"``, ``"ZTF GW190425"``...).
    kind : {"space", "time", "spacetime"}
    source : str
        File name, MOCServer query URL or ``"<rows>"``.
    max_order : int
        Declared resolution of the main axis: the space order (``MOCORD_S``,
        ``MOCORDER``) for space and space-time coverages, the time order
        (``MOCORD_T``) for time coverages; the data's deepest order when the
        source declares none.  Old CDS files declare 29 for data that stops
        at order 8-10: :attr:`data_order` says what the data needs.
    time_order : int or None
        Declared time order of time and space-time coverages.
    ranges : (n, 2) ndarray of int64 or None
        Space coverages: canonical depth-29 ranges.
    time_ranges : (n, 2) ndarray of int64 or None
        Time coverages: canonical TCB microsecond ranges since JD 0.
    spacetime : SpaceTimeRanges or None
        Space-time coverages.
    reader : str
        ``"mocpy"`` or ``"direct"``: which reader decoded the file.
    """

    name: str
    kind: str
    source: str
    max_order: int
    time_order: int | None = None
    ranges: IntRanges | None = None
    time_ranges: IntRanges | None = None
    spacetime: SpaceTimeRanges | None = None
    reader: str = "direct"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CoverageError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}", source=self.source)
        need = {"space": self.ranges, "time": self.time_ranges, "spacetime": self.spacetime}[self.kind]
        if need is None:
            raise CoverageError(f"a {self.kind} coverage needs its data", source=self.source)

    @classmethod
    def from_ranges(cls, name: str, ranges: Any, max_order: int | None = None,
                    source: str = "<ranges>") -> Coverage:
        """A space coverage of depth-29 ranges (normalised when needed)."""
        r = _as_ranges(ranges, "ranges")
        order = _deepest_order(r, 29, 2) if max_order is None else int(max_order)
        return cls(name, "space", source, order, ranges=r)

    @classmethod
    def from_time_ranges(cls, name: str, time_ranges_us: Any, max_order: int = TIME_DEPTH,
                         source: str = "<ranges>") -> Coverage:
        """A time coverage of TCB microsecond ranges (normalised when needed)."""
        return cls(name, "time", source, int(max_order), time_order=int(max_order),
                   time_ranges=_as_ranges(time_ranges_us, "time ranges"))

    @property
    def data_order(self) -> int:
        """Deepest order the data needs (space order; time order for T-MOCs)."""
        if self.kind == "space":
            assert self.ranges is not None
            return _deepest_order(self.ranges, 29, 2)
        if self.kind == "time":
            assert self.time_ranges is not None
            return _deepest_order(self.time_ranges, TIME_DEPTH, 1)
        assert self.spacetime is not None
        return _deepest_order(self.spacetime.space_ranges, 29, 2)

    @property
    def space_ranges(self) -> IntRanges | None:
        """Everything ever covered on the sky (None for a time coverage)."""
        if self.kind == "space":
            return self.ranges
        if self.kind == "spacetime":
            assert self.spacetime is not None
            return self.spacetime.space_coverage()
        return None

    def space_between(self, t0_us: int, t1_us: int) -> IntRanges | None:
        """Sky covered during ``[t0_us, t1_us)``: all of it for a space coverage, None for time."""
        if self.kind == "spacetime":
            assert self.spacetime is not None
            return self.spacetime.space_between(t0_us, t1_us)
        return self.space_ranges

    def to_mocpy(self) -> MOC | TimeMOC | STMOC:
        """The coverage as a mocpy object (``MOC``, ``TimeMOC`` or ``STMOC``)."""
        if self.kind == "space":
            assert self.ranges is not None
            return moc_from_ranges(self.ranges, min(29, max(self.max_order, self.data_order)))
        if self.kind == "time":
            from mocpy import TimeMOC

            assert self.time_ranges is not None
            depth = min(TIME_DEPTH, max(self.max_order, self.data_order))
            return TimeMOC.from_depth61_ranges(depth, self.time_ranges.astype(np.uint64).reshape(-1, 2))
        from mocpy import STMOC

        return STMOC.from_fits(io.BytesIO(self.to_fits_bytes()))

    def to_fits_bytes(self) -> bytes:
        """MOC 2.0 FITS (RANGE ordering for time and space-time, NUNIQ for space)."""
        if self.kind == "space":
            from .mocio import space_moc_fits_bytes

            assert self.ranges is not None
            return space_moc_fits_bytes(self.ranges, min(29, max(self.max_order, self.data_order)))
        if self.kind == "time":
            assert self.time_ranges is not None
            t_order = min(TIME_DEPTH, max(self.max_order, self.data_order))
            return _range_fits_bytes(self.time_ranges.ravel(), {"MOCDIM": "TIME", "MOCORD_T": t_order,
                                                                 "TIMESYS": "TCB"})
        assert self.spacetime is not None
        st = self.spacetime
        t_order = min(TIME_DEPTH, max(self.time_order or 0, _deepest_order(st.time_ranges, TIME_DEPTH, 1)))
        s_order = min(29, max(self.max_order, self.data_order))
        parts: list[npt.NDArray[np.int64]] = []
        for t, s in st.blocks():
            parts.append(t.ravel() | _SIGN)
            parts.append(s.ravel())
        values = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return _range_fits_bytes(values, {"MOCDIM": "TIME.SPACE", "MOCORD_T": t_order, "MOCORD_S": s_order,
                                          "COORDSYS": "C", "TIMESYS": "TCB"})


def _range_fits_bytes(values: npt.NDArray[np.int64], cards: dict[str, object]) -> bytes:
    from astropy.io import fits

    hdu = fits.BinTableHDU.from_columns([fits.Column(name="RANGE", format="K", array=values)])
    h = hdu.header
    h["MOCVERS"] = "2.0"
    h["ORDERING"] = "RANGE"
    for k, v in cards.items():
        h[k] = v
    h["MOCTOOL"] = "gwfollow"
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- reading files


@dataclass(frozen=True)
class _Decoded:
    kind: str
    max_order: int | None
    time_order: int | None
    ranges: IntRanges | None = None
    time_ranges: IntRanges | None = None
    spacetime: SpaceTimeRanges | None = None


def _sniff(raw: bytes) -> str:
    if raw[:2] == b"\x1f\x8b":
        return "fits.gz"
    if raw[:9] == b"SIMPLE  =":
        return "fits"
    head = raw[:4096].lstrip()
    if head[:1] in (b"{", b"["):
        return "json"
    return "ascii"


def _space_cell_ranges(order: npt.NDArray[np.int64], lo: npt.NDArray[np.int64],
                       hi: npt.NDArray[np.int64], source: str) -> IntRanges:
    if order.size == 0:
        return np.empty((0, 2), np.int64)
    if np.any((order < 0) | (order > 29)):
        raise CoverageError(f"space order {int(order[(order < 0) | (order > 29)][0])} is not in 0..29",
                            source=source)
    npix = np.int64(12) << (2 * order)
    bad = (lo < 0) | (hi < lo) | (hi >= npix)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise CoverageError(f"cell {int(lo[k])}-{int(hi[k])} is not a HEALPix cell of order {int(order[k])}",
                            source=source)
    shift = 2 * (29 - order)
    return kr.normalize(np.stack([lo << shift, (hi + 1) << shift], axis=1))


def _time_cell_ranges(order: npt.NDArray[np.int64], lo: npt.NDArray[np.int64],
                      hi: npt.NDArray[np.int64], source: str) -> IntRanges:
    if order.size == 0:
        return np.empty((0, 2), np.int64)
    if np.any((order < 0) | (order > TIME_DEPTH)):
        raise CoverageError(f"time order {int(order.max())} is not in 0..{TIME_DEPTH}", source=source)
    ncell = np.int64(1) << order
    bad = (lo < 0) | (hi < lo) | (hi >= ncell)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise CoverageError(f"time cell {int(lo[k])}-{int(hi[k])} is not a cell of order {int(order[k])}",
                            source=source)
    shift = TIME_DEPTH - order
    return kr.normalize(np.stack([lo << shift, (hi + 1) << shift], axis=1))


def _check_space_pairs(r: IntRanges, source: str) -> IntRanges:
    bad = (r[:, 0] < 0) | (r[:, 1] <= r[:, 0]) | (r[:, 1] > kr.NPIX29)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise CoverageError(f"range {int(r[k, 0])}..{int(r[k, 1])} is not a depth-29 range", source=source)
    return r if kr.is_canonical(r) else kr.normalize(r)


def _check_time_pairs(r: IntRanges, source: str) -> IntRanges:
    bad = (r[:, 0] < 0) | (r[:, 1] <= r[:, 0]) | (r[:, 1] > TIME_END_US)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise CoverageError(f"time range {int(r[k, 0])}..{int(r[k, 1])} is not on the MOC 2.0 time axis",
                            source=source)
    return r if kr.is_canonical(r) else kr.normalize(r)


# ---- FITS


_KNOWN_COLUMNS = ("UNIQ", "NPIX", "RANGE", "PIXELS", "NUNIQ")


def _header_int(h: Mapping[str, Any], key: str, source: str) -> int | None:
    v = h.get(key)
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise CoverageError(f"keyword {key}={v!r} is not an integer", source=source) from None


def _kind_from_header(h: Mapping[str, Any], source: str) -> str:
    dim = str(h.get("MOCDIM") or "").strip().upper()
    if dim:
        table = {"SPACE": "space", "TIME": "time", "TIME.SPACE": "spacetime"}
        if dim not in table:
            raise CoverageError(f"MOCDIM={dim!r} is not supported (only SPACE, TIME and TIME.SPACE)",
                                source=source)
        return table[dim]
    moc = str(h.get("MOC") or "").strip().upper()
    if moc:
        table = {"SPACE": "space", "TIME": "time", "SPACETIME": "spacetime", "TIME.SPACE": "spacetime"}
        if moc in table:
            return table[moc]
    has_t = "MOCORD_T" in h or "TORDER" in h
    has_s = "MOCORD_S" in h or "MOCORDER" in h
    if has_t and has_s:
        return "spacetime"
    if has_t:
        return "time"
    if not has_s and h.get("TIMESYS") is not None:
        return "time"
    return "space"


def _declared_orders(h: Mapping[str, Any], kind: str, source: str) -> tuple[int | None, int | None]:
    s = _header_int(h, "MOCORD_S", source)
    if s is None:
        s = _header_int(h, "MOCORDER", source)
    t = _header_int(h, "MOCORD_T", source)
    if t is None:
        old = _header_int(h, "TORDER", source)
        # Pre-2.0 ST-MOCs count time orders in pairs of bits (TORDER=14 is
        # MOC 2.0 time order 28), as mocpy reads them.
        t = None if old is None else 2 * old
    if s is not None and not 0 <= s <= 29:
        raise CoverageError(f"space order {s} is not in 0..29", source=source)
    if t is not None and not 0 <= t <= TIME_DEPTH:
        raise CoverageError(f"time order {t} is not in 0..{TIME_DEPTH}", source=source)
    return s, t


def _fits_header_and_column(raw: bytes, source: str) -> tuple[dict[str, Any], npt.NDArray[np.int64]]:
    """Header cards and the integer column of the first BINTABLE, read directly.

    Works without TTYPE cards (astropy cannot map those tables), whatever the
    column is called, for 32-bit (``J``) and 64-bit (``K``) integers.
    """
    mv = memoryview(raw)
    try:
        primary, pos = read_header(mv, 0, source)
        pos += (data_size(primary) + BLOCK - 1) // BLOCK * BLOCK
        while pos < len(mv):
            h, start = read_header(mv, pos, source)
            size = data_size(h)
            if h.get("XTENSION") == "BINTABLE":
                return h, _int_column(mv, h, start, source)
            pos = start + (size + BLOCK - 1) // BLOCK * BLOCK
    except CorruptSkyMapError as exc:
        raise CoverageError(f"not a readable FITS file ({exc.message})", source=source) from None
    raise CoverageError("no BINTABLE extension (a MOC FITS file stores its cells in one)", source=source)


_TFORM_INT = re.compile(r"^\s*1?([JK])\s*$")


def _int_column(mv: memoryview, h: Mapping[str, Any], start: int, source: str) -> npt.NDArray[np.int64]:
    nrows = int(h.get("NAXIS2", 0))
    rowlen = int(h.get("NAXIS1", 0))
    nfields = int(h.get("TFIELDS", 0))
    col = 1
    if nfields != 1:
        names = [str(h.get(f"TTYPE{i}", "")).strip().upper() for i in range(1, nfields + 1)]
        found = [i + 1 for i, n in enumerate(names) if n in _KNOWN_COLUMNS]
        if not found:
            raise CoverageError(f"{nfields} columns and none is called {'/'.join(_KNOWN_COLUMNS)}", source=source)
        col = found[0]
    offset = 0
    dtype = None
    for i in range(1, nfields + 1):
        tform = str(h.get(f"TFORM{i}", ""))
        m = _TFORM_INT.match(tform)
        width = {"J": 4, "K": 8}.get(m.group(1)) if m else None
        if i == col:
            if m is None:
                raise CoverageError(f"column {i} has TFORM {tform!r}; a MOC needs 1J or 1K integers",
                                    source=source)
            if h.get(f"TZERO{i}") not in (None, 0, 0.0) or h.get(f"TSCAL{i}") not in (None, 1, 1.0):
                raise CoverageError(f"column {i} is scaled (TZERO/TSCAL), which MOC files do not use",
                                    source=source)
            dtype = ">i4" if m.group(1) == "J" else ">i8"
            break
        if width is None:
            raise CoverageError(f"cannot skip column {i} with TFORM {tform!r}", source=source)
        offset += width
    assert dtype is not None
    need = nrows * rowlen
    if start + need > len(mv):
        raise CoverageError(f"truncated table: {nrows} rows need {need} bytes, the file has "
                            f"{max(0, len(mv) - start)}", source=source)
    rows = np.frombuffer(mv, dtype=np.uint8, count=need, offset=start).reshape(nrows, rowlen) if nrows else \
        np.empty((0, rowlen), np.uint8)
    width = 4 if dtype == ">i4" else 8
    cells = np.ascontiguousarray(rows[:, offset : offset + width]).view(dtype).reshape(-1)
    return cells.astype(np.int64)


def _decode_fits(raw: bytes, source: str, kind: str | None, header_only: bool = False) -> _Decoded:
    h, values = _fits_header_and_column(raw, source)
    detected = _kind_from_header(h, source)
    if kind is not None and kind != detected:
        raise CoverageError(f"the header describes a {detected} MOC, not a {kind} one", source=source)
    s_order, t_order = _declared_orders(h, detected, source)
    ordering = str(h.get("ORDERING") or "NUNIQ").strip().upper()
    if ordering != "NUNIQ" and not ordering.startswith("RANGE"):
        raise CoverageError(f"ORDERING={ordering!r} is not NUNIQ nor RANGE", source=source)
    if ordering == "NUNIQ" and detected != "space":
        raise CoverageError(f"NUNIQ ordering for a {detected} MOC is not supported (MOC 2.0 writes "
                            "T-MOCs and ST-MOCs as RANGE)", source=source)
    if header_only:
        return _Decoded(detected, t_order if detected == "time" else s_order, t_order)
    if ordering == "NUNIQ":
        order, ipix = khp.uniq_to_order_ipix(values)
        bad = (order < 0) | (ipix < 0) | (ipix >= (np.int64(12) << (2 * np.maximum(order, 0))))
        if np.any(bad):
            k = int(np.argmax(bad))
            raise CoverageError(f"value {int(values[k])} in row {k} is not a NUNIQ cell", source=source)
        # Overlapping cells (MOC 1.0 forbids them, some writers made them) are merged.
        r = kr.normalize(khp.uniq_to_ranges(values)) if values.size else np.empty((0, 2), np.int64)
        return _Decoded("space", s_order, None, ranges=r)
    if values.size % 2:
        raise CoverageError(f"RANGE ordering needs an even number of values, got {values.size}", source=source)
    pairs = values.reshape(-1, 2)
    if detected == "space":
        return _Decoded("space", s_order, None, ranges=_check_space_pairs(pairs, source))
    if detected == "time":
        return _Decoded("time", t_order, t_order, time_ranges=_check_time_pairs(pairs, source))
    return _Decoded("spacetime", s_order, t_order, spacetime=_decode_st_pairs(pairs, source))


def _decode_st_pairs(pairs: IntRanges, source: str) -> SpaceTimeRanges:
    """ST-MOC RANGE values: time ranges are flagged negative, space ranges follow.

    MOC 2.0 sets the sign bit (``value | 1 << 63``); the pre-2.0 CDS writer
    (``ORDERING=RANGE29``) stored ``-value``.  Times are below ``2**61``, so
    the two encodings never overlap and each value is decoded on its own.
    """
    neg = pairs < 0
    if np.any(neg[:, 0] != neg[:, 1]):
        k = int(np.argmax(neg[:, 0] != neg[:, 1]))
        raise CoverageError(f"range pair {k} mixes a time and a space value", source=source)
    is_t = neg[:, 0]
    tv = pairs[is_t]
    flagged = tv < -(np.int64(1) << 62)
    tv = np.where(flagged, tv & ~_SIGN, -tv)
    if tv.size:
        _check_time_pairs(tv, source)
    if np.any(~is_t):
        _check_space_pairs(pairs[~is_t], source)
    # A block starts at each time pair that follows a space pair (or the start).
    starts_block = is_t & np.concatenate([[True], ~is_t[:-1]])
    block = np.cumsum(starts_block) - 1
    if pairs.shape[0] and not is_t[0]:
        raise CoverageError("space ranges before the first time range", source=source)
    t_block = block[is_t]
    s_block = block[~is_t]
    s_pairs = pairs[~is_t]
    nblk = int(block.max()) + 1 if block.size else 0
    t_split = np.searchsorted(t_block, np.arange(nblk + 1))
    s_split = np.searchsorted(s_block, np.arange(nblk + 1))
    blocks = [(tv[t_split[b] : t_split[b + 1]], s_pairs[s_split[b] : s_split[b + 1]]) for b in range(nblk)]
    return SpaceTimeRanges.from_blocks(blocks)


# ---- ASCII and JSON


_ASCII_TOKEN = re.compile(r"([tsTS]?)(\d+)/|(\d+)(?:-(\d+))?|([^\s,])")


def _decode_ascii(text: str, source: str, kind: str | None) -> _Decoded:
    # Sections: (dim, order, lo, hi) per cell; dim is "t", "s" or "" (1-D MOC).
    blocks: list[dict[str, list[tuple[int, int, int]]]] = [{"t": [], "s": [], "": []}]
    declared: dict[str, int] = {}
    dim = None
    order = None
    for m in _ASCII_TOKEN.finditer(text):
        if m.group(5) is not None:
            raise CoverageError(f"unexpected {m.group(5)!r} at character {m.start()} of the ASCII MOC",
                                source=source)
        if m.group(2) is not None:
            # An order without a prefix continues the current t/ or s/ section.
            new_dim = m.group(1).lower() or (dim if dim in ("t", "s") else "")
            if new_dim == "t" and dim == "s":
                blocks.append({"t": [], "s": [], "": []})
            dim = new_dim
            order = int(m.group(2))
            declared[dim] = max(declared.get(dim, 0), order)
            continue
        if order is None or dim is None:
            raise CoverageError(f"cell {m.group(0)!r} before any 'order/'", source=source)
        lo = int(m.group(3))
        hi = int(m.group(4)) if m.group(4) is not None else lo
        blocks[-1][dim].append((order, lo, hi))
    has_st = "t" in declared or "s" in declared
    if has_st and "" in declared:
        raise CoverageError("mixes prefixed (t/s) and plain sections", source=source)
    if has_st and "t" in declared and "s" in declared:
        if kind not in (None, "spacetime"):
            raise CoverageError(f"this is a space-time MOC, not a {kind} one", source=source)
        out = []
        for b in blocks:
            out.append((_cells(b["t"], "time", source), _cells(b["s"], "space", source)))
        return _Decoded("spacetime", declared["s"], declared["t"], spacetime=SpaceTimeRanges.from_blocks(out))
    cells = [c for b in blocks for d in ("t", "s", "") for c in b[d]]
    top = max(declared.values()) if declared else 0
    detected = kind or ("time" if "t" in declared or top > 29 else "space")
    if detected == "spacetime":
        raise CoverageError("no t/ and s/ sections: not a space-time MOC", source=source)
    if detected == "time":
        return _Decoded("time", top, top, time_ranges=_cells(cells, "time", source))
    return _Decoded("space", top, None, ranges=_cells(cells, "space", source))


def _cells(cells: list[tuple[int, int, int]], axis: str, source: str) -> IntRanges:
    if not cells:
        return np.empty((0, 2), np.int64)
    a = np.array(cells, dtype=np.int64).reshape(-1, 3)
    if axis == "time":
        return _time_cell_ranges(a[:, 0], a[:, 1], a[:, 2], source)
    return _space_cell_ranges(a[:, 0], a[:, 1], a[:, 2], source)


def _json_cells(obj: Any, source: str) -> tuple[list[tuple[int, int, int]], int]:
    if not isinstance(obj, Mapping):
        raise CoverageError("a JSON MOC maps orders to lists of cells", source=source)
    cells: list[tuple[int, int, int]] = []
    top = 0
    for k, v in obj.items():
        try:
            o = int(k)
        except ValueError:
            raise CoverageError(f"JSON key {k!r} is not an order", source=source) from None
        if not isinstance(v, list) or not all(isinstance(x, int) for x in v):
            raise CoverageError(f"JSON order {k} does not hold a list of integers", source=source)
        top = max(top, o)
        cells.extend((o, x, x) for x in v)
    return cells, top


def _decode_json(text: str, source: str, kind: str | None) -> _Decoded:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CoverageError(f"not valid JSON ({exc})", source=source) from None
    if isinstance(obj, list):
        if kind not in (None, "spacetime"):
            raise CoverageError(f"a JSON list is a space-time MOC, not a {kind} one", source=source)
        blocks = []
        s_top = t_top = 0
        for i, item in enumerate(obj):
            if not isinstance(item, Mapping) or "t" not in item or "s" not in item:
                raise CoverageError(f"element {i} of the JSON ST-MOC lacks 't' or 's'", source=source)
            tc, tt = _json_cells(item["t"], source)
            sc, st = _json_cells(item["s"], source)
            t_top, s_top = max(t_top, tt), max(s_top, st)
            blocks.append((_cells(tc, "time", source), _cells(sc, "space", source)))
        return _Decoded("spacetime", s_top, t_top, spacetime=SpaceTimeRanges.from_blocks(blocks))
    cells, top = _json_cells(obj, source)
    detected = kind or ("time" if top > 29 else "space")
    if detected == "spacetime":
        raise CoverageError("a JSON object is a space or time MOC, not a space-time one", source=source)
    if detected == "time":
        return _Decoded("time", top, top, time_ranges=_cells(cells, "time", source))
    return _Decoded("space", top, None, ranges=_cells(cells, "space", source))


# ---- mocpy


def _is_mocpy_failure(exc: BaseException) -> bool:
    # mocpy's Rust core panics (pyo3 PanicException derives from BaseException)
    # on some valid files; those count as "mocpy cannot read it".
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _decode_with_mocpy(path: Path, fmt: str, kind: str) -> _Decoded:
    from mocpy import MOC, STMOC, TimeMOC

    if kind == "space":
        return _Decoded("space", None, None, ranges=ranges_of(MOC.load(str(path), format=fmt)))
    if kind == "time":
        tm = TimeMOC.load(str(path), format=fmt)
        r = np.asarray(tm.to_depth61_ranges, dtype=np.int64).reshape(-1, 2)
        return _Decoded("time", None, None, time_ranges=r if kr.is_canonical(r) else kr.normalize(r))
    st = STMOC.load(str(path), format=fmt)
    # mocpy has no public accessor for an ST-MOC's blocks: take its own MOC 2.0
    # FITS serialisation and decode that.
    buf = io.BytesIO()
    st.serialize(format="fits").writeto(buf)
    dec = _decode_fits(buf.getvalue(), f"{path} (via mocpy)", "spacetime")
    return _Decoded("spacetime", None, None, spacetime=dec.spacetime)


def _default_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".fits", ".fit", ".json", ".txt", ".csv", ".ascii", ".moc", ".stmoc", ".tmoc",
                   ".range"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def load_coverage(path: str | os.PathLike[str], name: str | None = None, *,
                  kind: str | None = None, reader: str = "auto") -> Coverage:
    """Read an S-MOC, T-MOC or ST-MOC file (MOC 2.0 FITS, JSON or ASCII; MOC 1.x FITS).

    Parameters
    ----------
    path : path-like
        The file; its format is recognised from its bytes (FITS, gzipped
        FITS, JSON, ASCII), not its name.
    name : str, optional
        The coverage's name; the file name without its extensions otherwise.
    kind : {"space", "time", "spacetime"}, optional
        Expected kind.  FITS headers say it (``MOCDIM``, or the older ``MOC``,
        ``TORDER``/``MOCORD_T`` keywords) and a mismatch is an error; ASCII
        and JSON MOCs are space MOCs unless they use orders above 29 or
        ``t``/``s`` sections, so a time MOC at orders <= 29 needs
        ``kind="time"``.
    reader : {"auto", "direct"}
        ``"auto"`` tries mocpy first and falls back to gwfollow's own reader
        when mocpy fails (an exception or a panic); ``"direct"`` uses only
        gwfollow's reader.

    Returns
    -------
    Coverage

    Raises
    ------
    CoverageError
        Unreadable file, unknown kind, invalid cells; names the file.
    """
    p = Path(path)
    if kind is not None and kind not in KINDS:
        raise CoverageError(f"kind {kind!r} is not one of {', '.join(KINDS)}", source=str(p))
    if reader not in READERS:
        raise CoverageError(f"reader {reader!r} is not one of {', '.join(READERS)}", source=str(p))
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CoverageError("no such file", source=str(p), hint="check the path") from None
    except OSError as exc:
        raise CoverageError(f"cannot read ({exc.strerror})", source=str(p)) from None
    return _coverage_from_bytes(raw, p, name or _default_name(p), kind, reader)


def _coverage_from_bytes(raw: bytes, p: Path, name: str, kind: str | None, reader: str,
                         source: str | None = None) -> Coverage:
    src = source or str(p)
    if not raw.strip():
        raise CoverageError("empty file", source=src)
    fmt = _sniff(raw)
    compressed = fmt == "fits.gz"
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise CoverageError(f"bad gzip data ({exc})", source=src) from None
        fmt = _sniff(raw)
        if fmt == "fits.gz":
            raise CoverageError("gzip inside gzip", source=src)
    try_mocpy = reader == "auto" and not compressed  # mocpy reads files, not gzip streams
    if fmt == "fits":
        # The header gives the kind and the declared orders; the data are
        # decoded here only when mocpy is not asked or fails.
        probe = _decode_fits(raw, src, kind, header_only=try_mocpy)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CoverageError("neither FITS nor UTF-8 text (JSON or ASCII MOC)", source=src) from None
        # Text MOCs carry no header: parsing them is how the kind is found.
        probe = (_decode_json if fmt == "json" else _decode_ascii)(text, src, kind)
    if try_mocpy:
        try:
            via = _decode_with_mocpy(p, fmt, probe.kind)
        except BaseException as exc:  # noqa: BLE001 - see _is_mocpy_failure
            if not _is_mocpy_failure(exc):
                raise
            log.info("%s: mocpy cannot read it (%s); using gwfollow's reader", src, exc)
        else:
            merged = _Decoded(probe.kind, probe.max_order, probe.time_order, via.ranges,
                              via.time_ranges, via.spacetime)
            return _coverage_of(merged, name, src, "mocpy")
    if fmt == "fits" and try_mocpy:
        probe = _decode_fits(raw, src, kind)
    return _coverage_of(probe, name, src, "direct")


def _coverage_of(d: _Decoded, name: str, source: str, reader: str) -> Coverage:
    if d.kind == "space":
        assert d.ranges is not None
        order = d.max_order if d.max_order is not None else _deepest_order(d.ranges, 29, 2)
        return Coverage(name, "space", source, order, ranges=d.ranges, reader=reader)
    if d.kind == "time":
        assert d.time_ranges is not None
        order = d.time_order if d.time_order is not None else _deepest_order(d.time_ranges, TIME_DEPTH, 1)
        return Coverage(name, "time", source, order, time_order=order, time_ranges=d.time_ranges,
                        reader=reader)
    assert d.spacetime is not None
    s_order = d.max_order if d.max_order is not None else _deepest_order(d.spacetime.space_ranges, 29, 2)
    t_order = d.time_order if d.time_order is not None else _deepest_order(d.spacetime.time_ranges,
                                                                           TIME_DEPTH, 1)
    return Coverage(name, "spacetime", source, s_order, time_order=t_order, spacetime=d.spacetime,
                    reader=reader)


# --------------------------------------------------------------------------- CDS MOCServer


def mocserver_query(identifier: str, kind: str = "space", order: int | str | None = None) -> dict[str, str]:
    """Query parameters that ask the CDS MOCServer for one collection's MOC as FITS.

    ``ID`` selects the collection (an ``ivo://`` prefix is dropped: the
    MOCServer's IDs are ``CDS/P/SDSS9/r``, ``CDS/V/147``...), ``get`` the
    kind (``moc``, ``tmoc``, ``stmoc``), ``fmt=fits`` the serialisation and
    ``order`` the resolution (``max`` when not given, as astroquery does).
    """
    if kind not in KINDS:
        raise CoverageError(f"kind {kind!r} is not one of {', '.join(KINDS)}", source=identifier)
    ident = identifier.strip()
    if ident.lower().startswith("ivo://"):
        ident = ident[len("ivo://"):]
    if not ident or any(c in ident for c in "*,&|!()\n\r\t "):
        raise CoverageError(
            "not a single MOCServer ID", source=identifier or "<empty>",
            hint="give one collection ID such as CDS/P/SDSS9/r (no wildcards or lists)",
        )
    return {"ID": ident, "get": _MOCSERVER_GET[kind], "fmt": "fits",
            "order": "max" if order is None else str(order), "casesensitive": "true"}


def mocserver_cache_path(cache_dir: str | os.PathLike[str], identifier: str, kind: str = "space",
                         order: int | str | None = None) -> Path:
    """Where the FITS answer for ``identifier`` is cached (one file per query)."""
    q = mocserver_query(identifier, kind, order)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", q["ID"]).strip("_")[:80]
    digest = hashlib.sha256(json.dumps(q, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"mocserver-{slug}-{q['get']}-{q['order']}-{digest}.fits"


async def coverage_from_mocserver_async(
    identifier: str, cache_dir: str | os.PathLike[str], *, base_url: str = MOCSERVER_URL,
    timeout_s: float = 20.0, offline: bool = False, kind: str = "space",
    order: int | str | None = None, refresh: bool = False, retries: int = 1,
    name: str | None = None, max_mib: float = 512.0,
) -> Coverage:
    """A collection's coverage from the CDS MOCServer, cached on disk.

    Parameters
    ----------
    identifier : str
        MOCServer collection ID (``CDS/P/SDSS9/r``; ``ivo://`` is accepted).
    cache_dir : path-like
        Directory of the cached FITS answers (created when needed).
    base_url : str
        The MOCServer query endpoint.
    timeout_s : float
        Time limit of each HTTP attempt; with ``retries`` the call is
        bounded by about ``(retries + 1) * timeout_s`` plus backoff.
    offline : bool
        Never use the network: the cached copy or an error.
    kind : {"space", "time", "spacetime"}
        Which MOC to ask for (``get=moc``, ``tmoc``, ``stmoc``).
    order : int or str, optional
        ``order`` parameter (``"max"`` by default).
    refresh : bool
        Download even when a cached copy exists (the copy is used if the
        download fails).
    retries : int
        Retries of transient failures (time-outs, 5xx, 429).
    name : str, optional
        The coverage's name (the identifier by default).
    max_mib : float
        Largest answer accepted.

    Raises
    ------
    CoverageError
        Offline or failed download without a cached copy (the
        :class:`~gwfollow.errors.FetchError`, with URL and status, is the
        ``__cause__``), or an answer that is not a non-empty MOC.
    """
    from .alerts.fetch import fetch_bytes
    from .config import FetchConfig

    params = mocserver_query(identifier, kind, order)
    url = f"{base_url}?{urlencode(params)}"
    cache = mocserver_cache_path(cache_dir, identifier, kind, order)
    label = name or identifier
    if cache.is_file() and (offline or not refresh):
        try:
            return await asyncio.to_thread(_load_cached, cache, label, kind, url)
        except CoverageError as exc:
            if offline:
                raise CoverageError(f"offline and the cached copy {cache} is unreadable ({exc.reason})",
                                    source=identifier, hint="delete it and run once online") from exc
            log.warning("%s: cached copy %s is unreadable (%s); downloading again", identifier, cache, exc)
    if offline:
        raise CoverageError(f"offline and no cached copy at {cache}", source=identifier,
                            hint="run once online, or copy the MOC FITS file there")
    config = FetchConfig(timeout_s=timeout_s, retries=retries, backoff_s=min(1.0, timeout_s / 4),
                         max_mib=max_mib)
    try:
        raw = await fetch_bytes(url, config)
    except FetchError as exc:
        if cache.is_file() and refresh:
            log.warning("%s: MOCServer download failed (%s); using the cached copy %s", identifier, exc, cache)
            return await asyncio.to_thread(_load_cached, cache, label, kind, url)
        raise CoverageError(f"MOCServer download failed and no cached copy: {exc}", source=identifier,
                            hint="check the network or use offline mode with a cached copy") from exc
    return await asyncio.to_thread(_store_and_load, raw, cache, label, kind, url)


def _load_cached(cache: Path, name: str, kind: str, url: str) -> Coverage:
    raw = cache.read_bytes()
    return _coverage_from_bytes(raw, cache, name, kind, "auto", source=url)


def _store_and_load(raw: bytes, cache: Path, name: str, kind: str, url: str) -> Coverage:
    if _sniff(raw) not in ("fits", "fits.gz"):
        snippet = raw[:80].decode("utf-8", "replace").strip()
        raise CoverageError(f"the MOCServer answer is not a FITS MOC (starts {snippet!r})", source=url,
                            hint="check the identifier")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(raw)
    try:
        cov = _coverage_from_bytes(raw, tmp, name, kind, "auto", source=url)
        data = cov.space_ranges if cov.kind != "time" else cov.time_ranges
        if data is None or data.shape[0] == 0:
            raise CoverageError("the MOCServer answered with an empty MOC", source=url,
                                hint="unknown IDs give empty MOCs; check the identifier")
        os.replace(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)
    return cov


def coverage_from_mocserver(
    identifier: str, cache_dir: str | os.PathLike[str], *, base_url: str = MOCSERVER_URL,
    timeout_s: float = 20.0, offline: bool = False, **kwargs: Any,
) -> Coverage:
    """Blocking form of :func:`coverage_from_mocserver_async` (same parameters).

    Must not be called from a running event loop: await the async form there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise CoverageError("called from a running event loop", source=identifier,
                            hint="await coverage_from_mocserver_async(...) instead")
    return asyncio.run(coverage_from_mocserver_async(
        identifier, cache_dir, base_url=base_url, timeout_s=timeout_s, offline=offline, **kwargs))


# --------------------------------------------------------------------------- probability


@dataclass(frozen=True)
class CoverageResult:
    """The GW probability a coverage holds.

    Probabilities are fractions (0..1), areas square degrees, times UTC
    (ISO 8601).

    Attributes
    ----------
    name, kind : str
        The coverage's name and kind.
    probability : float or None
        Probability inside the sky covered (during the window for space-time
        coverages); None for time coverages, which say nothing about where.
    coverage_area_deg2 : float or None
        Area of the sky covered (during the window).
    area_deg2 : float or None
        Area of ``region`` inside the coverage, when a region was given.
    region_probability : float or None
        Probability inside ``region`` and the coverage, when a region was given.
    time_fraction : float or None
        Fraction of the window during which the coverage observed (time and
        space-time coverages).
    start, end : str or None
        The window (time and space-time coverages).
    """

    name: str
    kind: str
    probability: float | None
    coverage_area_deg2: float | None
    area_deg2: float | None = None
    region_probability: float | None = None
    time_fraction: float | None = None
    start: str | None = None
    end: str | None = None


def coverage_probability(
    skymap: SkyMap, coverage: Coverage, start: TimeLike | None = None, end: TimeLike | None = None,
    *, region: Any = None, duration_s: float = DEFAULT_WINDOW_S,
) -> CoverageResult:
    """Probability of ``skymap`` inside ``coverage`` (exact for cells the coverage cuts).

    Parameters
    ----------
    skymap : SkyMap
    coverage : Coverage
    start, end : astropy.time.Time or str (UTC), optional
        The window for time and space-time coverages; by default the event
        time (``DATE-OBS``) and ``duration_s`` later.  Ignored for space
        coverages.
    region : (n, 2) int64 ranges, optional
        A region of interest, e.g. the 90% credible region from
        :func:`gwfollow.moc.credible_ranges`: its covered area and
        probability are reported too.
    duration_s : float
        Window length when ``end`` is not given.

    Examples
    --------
    >>> import numpy as np
    >>> from gwfollow import read_skymap
    >>> from gwfollow.simulate import simulated_skymap_bytes
    >>> sm = read_skymap(simulated_skymap_bytes(seed=1))
    >>> whole_sky = Coverage.from_ranges("all", np.array([[0, 12 * 4**29]]))
    >>> round(coverage_probability(sm, whole_sky).probability, 9)
    1.0
    """
    reg = None if region is None else _as_ranges(region, "region")
    window: tuple[int, int] | None = None
    if coverage.kind != "space":
        window = time_window_us(skymap, start, end, duration_s)
    sky = coverage.space_between(*window) if window is not None else coverage.space_ranges
    prob = area = rprob = rarea = tfrac = None
    if sky is not None:
        prob = probability_in_ranges(skymap, sky)
        area = ranges_area_deg2(sky)
        if reg is not None:
            inter = kr.intersection(reg, sky)
            rarea = ranges_area_deg2(inter)
            rprob = probability_in_ranges(skymap, inter)
    if window is not None:
        t0, t1 = window
        if coverage.kind == "time":
            when = coverage.time_ranges
        else:
            assert coverage.spacetime is not None
            when = coverage.spacetime.time_coverage()
        assert when is not None
        tfrac = _covered_us(when, t0, t1) / (t1 - t0)
    return CoverageResult(
        name=coverage.name, kind=coverage.kind, probability=prob, coverage_area_deg2=area,
        area_deg2=rarea, region_probability=rprob, time_fraction=tfrac,
        start=_iso_utc(window[0]) if window else None, end=_iso_utc(window[1]) if window else None,
    )


def remaining_probability(skymap: SkyMap, covered_ranges: Any) -> float:
    """Probability not yet covered: the map's total outside ``covered_ranges``.

    Equals ``1 - probability covered`` for a normalised map (it subtracts
    from the map's actual sum, so a map normalised to 1 +- 1e-6 stays
    consistent).
    """
    covered = probability_in_ranges(skymap, _as_ranges(covered_ranges, "covered ranges"))
    return max(0.0, float(np.sum(skymap.prob)) - covered)


# --------------------------------------------------------------------------- fields and pointings


FOV_SHAPES = ("square", "circle", "rectangle")


@dataclass(frozen=True)
class FieldOfView:
    """A telescope's field of view, in degrees.

    Attributes
    ----------
    shape : {"square", "circle", "rectangle"}
    width_deg : float
        Side (square) or east-west side (rectangle, before rotation).
    height_deg : float
        North-south side of a rectangle (equal to ``width_deg`` for a square).
    radius_deg : float
        Radius of a circle.
    rotation_deg : float
        Position angle of the north-south axis, east of north.

    Boxes follow mocpy's ``MOC.from_box``: the sides and the central cross are
    great circles, a close approximation of a camera's footprint for fields
    of a few degrees.  Cells the border crosses are included, so footprints
    slightly over-cover at coarse orders.
    """

    shape: str
    width_deg: float = 0.0
    height_deg: float = 0.0
    radius_deg: float = 0.0
    rotation_deg: float = 0.0

    @classmethod
    def square(cls, side_deg: float, rotation_deg: float = 0.0) -> FieldOfView:
        """A square field ``side_deg`` on a side."""
        return cls("square", float(side_deg), float(side_deg), 0.0, float(rotation_deg)).validate()

    @classmethod
    def rectangle(cls, width_deg: float, height_deg: float, rotation_deg: float = 0.0) -> FieldOfView:
        """A rectangle ``width_deg`` (east-west) by ``height_deg`` (north-south)."""
        return cls("rectangle", float(width_deg), float(height_deg), 0.0, float(rotation_deg)).validate()

    @classmethod
    def circle(cls, radius_deg: float) -> FieldOfView:
        """A circular field of ``radius_deg``."""
        return cls("circle", 0.0, 0.0, float(radius_deg)).validate()

    def validate(self) -> FieldOfView:
        """Check the sizes; return ``self``."""
        if self.shape not in FOV_SHAPES:
            raise CoverageError(f"shape {self.shape!r} is not one of {', '.join(FOV_SHAPES)}", source="fov")
        if self.shape == "circle":
            if not 0 < self.radius_deg < 90:
                raise CoverageError(f"radius {self.radius_deg} deg is not in (0, 90)", source="fov")
        elif not (0 < self.width_deg < 180 and 0 < self.height_deg < 180):
            raise CoverageError(f"sides {self.width_deg} x {self.height_deg} deg are not in (0, 180)",
                                source="fov")
        if self.shape == "square" and self.width_deg != self.height_deg:
            raise CoverageError("a square has equal sides", source="fov")
        return self


ZTF_FOV = FieldOfView.square(6.86)
"""ZTF's 47 deg2 camera as a 6.86 deg square (CCD gaps ignored)."""


@functools.lru_cache(maxsize=4096)
def _footprint_cached(ra_deg: float, dec_deg: float, fov: FieldOfView, order: int) -> IntRanges:
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from mocpy import MOC

    lon = Longitude(ra_deg * u.deg)
    lat = Latitude(dec_deg * u.deg)
    if fov.shape == "circle":
        moc = MOC.from_cone(lon, lat, radius=Angle(fov.radius_deg * u.deg), max_depth=order)
    else:
        # mocpy wants a >= b and measures the angle of the a-axis east of north.
        half_ns, half_ew = fov.height_deg / 2, fov.width_deg / 2
        if half_ns >= half_ew:
            a, b, angle = half_ns, half_ew, fov.rotation_deg
        else:
            a, b, angle = half_ew, half_ns, fov.rotation_deg + 90.0
        moc = MOC.from_box(lon, lat, a=Angle(a * u.deg), b=Angle(b * u.deg),
                           angle=Angle(angle * u.deg), max_depth=order)
    r = ranges_of(moc)
    r.flags.writeable = False
    return r


def field_footprint_ranges(ra_deg: float, dec_deg: float, fov: FieldOfView, order: int = 10) -> IntRanges:
    """Canonical depth-29 ranges of a field of view centred on (``ra_deg``, ``dec_deg``).

    Parameters
    ----------
    ra_deg, dec_deg : float
        Field centre (ICRS), degrees.
    fov : FieldOfView
    order : int
        HEALPix order of the footprint's border cells (10: 3.4 arcmin).

    Returns
    -------
    (n, 2) ndarray of int64
        Read-only (results are cached per field).

    Examples
    --------
    >>> from gwfollow.moc import ranges_area_deg2
    >>> r = field_footprint_ranges(10.0, 20.0, FieldOfView.square(6.86), order=10)
    >>> 47.0 < ranges_area_deg2(r) < 49.0
    True
    """
    fov.validate()
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg) and -90 <= dec_deg <= 90):
        raise CoverageError(f"field centre ({ra_deg}, {dec_deg}) is not a sky position", source="field")
    if not 0 <= int(order) <= 29:
        raise CoverageError(f"order {order} is not in 0..29", source="field")
    return _footprint_cached(float(ra_deg) % 360.0, float(dec_deg), fov, int(order))


def read_field_grid(path: str | os.PathLike[str]) -> dict[int, tuple[float, float]]:
    """Field centres of a tile grid: ``{field id: (ra_deg, dec_deg)}``.

    Reads whitespace- or comma-separated files whose first three columns are
    ID, RA, Dec (ZTF ``ZTF_Fields.txt`` with its ``%`` header, DECam CSV,
    gwemopt ``.tess``); a header naming ``ID``/``field_id``, ``RA`` and
    ``Dec`` columns is used when present.
    """
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise CoverageError(f"cannot read ({exc.strerror})", source=str(p)) from None
    cols = (0, 1, 2)
    out: dict[int, tuple[float, float]] = {}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        header = s.startswith(("%", "#"))
        tokens = [t.strip() for t in (s.lstrip("%#").split(",") if "," in s else s.lstrip("%#").split())]
        if header or not _is_number(tokens[0]):
            names = [t.lower() for t in tokens]
            idx = {k: names.index(k) for k in ("id", "field_id", "field", "ra", "dec") if k in names}
            fid = next((idx[k] for k in ("id", "field_id", "field") if k in idx), None)
            if fid is not None and "ra" in idx and "dec" in idx:
                cols = (fid, idx["ra"], idx["dec"])
            continue
        try:
            out[int(float(tokens[cols[0]]))] = (float(tokens[cols[1]]), float(tokens[cols[2]]))
        except (IndexError, ValueError):
            raise CoverageError(f"line {n} is not 'ID RA Dec': {s[:60]!r}", source=str(p)) from None
    if not out:
        raise CoverageError("no fields", source=str(p))
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def pointings_to_stmoc(
    pointings: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    field_grid: str | os.PathLike[str] | Mapping[int, tuple[float, float]],
    fov: FieldOfView,
    *, order: int = 10, name: str | None = None,
) -> Coverage:
    """Executed pointings as a space-time coverage.

    Parameters
    ----------
    pointings : path-like or iterable of mappings
        A CSV file or rows with ``field_id`` (or ``ra``/``dec`` in degrees),
        ``obstime`` (UTC, ISO 8601) and ``exposure_time`` (seconds): the
        columns of SkyPortal's executed-observation exports.
    field_grid : path-like or mapping
        The telescope's fields (:func:`read_field_grid`).
    fov : FieldOfView
    order : int
        HEALPix order of the footprints.
    name : str, optional
        Name of the coverage (the file name by default).

    Returns
    -------
    Coverage
        ``kind="spacetime"``: each exposure's footprint during
        ``[obstime, obstime + exposure_time)``; overlapping exposures are
        merged (:meth:`SpaceTimeRanges.from_blocks`).
    """
    fov.validate()
    if isinstance(pointings, (str, os.PathLike)):
        src = str(pointings)
        try:
            with open(pointings, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise CoverageError(f"cannot read ({exc.strerror})", source=src) from None
        label = name or _default_name(Path(src))
    else:
        src = "<rows>"
        rows = list(pointings)
        label = name or "pointings"
    grid = read_field_grid(field_grid) if isinstance(field_grid, (str, os.PathLike)) else field_grid
    if not rows:
        raise CoverageError("no pointings", source=src)
    centres: list[tuple[float, float]] = []
    times: list[str] = []
    exposures = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        try:
            if row.get("field_id") not in (None, ""):
                fid = int(float(row["field_id"]))
                if fid not in grid:
                    raise CoverageError(f"row {i + 1}: field {fid} is not in the field grid", source=src)
                ra, dec = grid[fid]
                centres.append((float(ra), float(dec)))
            else:
                centres.append((float(row["ra"]), float(row["dec"])))
            times.append(str(row["obstime"]))
            exposures[i] = float(row["exposure_time"])
        except KeyError as exc:
            raise CoverageError(f"row {i + 1} has no {exc.args[0]!r}", source=src,
                                hint="need field_id (or ra, dec), obstime and exposure_time") from None
        except (TypeError, ValueError) as exc:
            raise CoverageError(f"row {i + 1}: {exc}", source=src) from None
    if np.any(~np.isfinite(exposures) | (exposures <= 0)):
        k = int(np.argmax(~np.isfinite(exposures) | (exposures <= 0)))
        raise CoverageError(f"row {k + 1}: exposure_time {exposures[k]} s is not positive", source=src)
    try:
        t0 = times_to_us(times)
    except ValueError as exc:
        raise CoverageError(f"cannot read obstime values ({exc})", source=src) from None
    t1 = t0 + np.round(exposures * 1e6).astype(np.int64)
    blocks = [
        (np.array([[a, b]], dtype=np.int64), field_footprint_ranges(ra, dec, fov, order))
        for (ra, dec), a, b in zip(centres, t0.tolist(), t1.tolist())
    ]
    st = SpaceTimeRanges.from_blocks(blocks)
    return Coverage(label, "spacetime", src, int(order), time_order=TIME_DEPTH, spacetime=st)
