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

This module holds the time axis, the two classes, :func:`load_coverage`
(MOC files: FITS, JSON, ASCII, including the pre-2.0 and non-standard files
CDS tools wrote; the decoders are in :mod:`gwfollow.regions.mocio`) and
:func:`coverage_probability`, the GW probability a coverage holds, exact for
sky-map cells the coverage cuts.  Coverages also come from the CDS MOCServer
(:func:`gwfollow.regions.mocserver.coverage_from_mocserver`, cached on disk) and from
a telescope's executed pointings (:func:`gwfollow.targets.fields.pointings_to_stmoc`).

Times are converted once, at this module's boundary: astropy ``Time`` (or
ISO strings, UTC) in, integer TCB microseconds inside (:func:`times_to_us`).
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from gwfollow.errors import CoverageError
from gwfollow.kernels import ranges as kr
from gwfollow.regions.moc import moc_from_ranges, probability_in_ranges, ranges_area_deg2
from gwfollow.skymaps.skymap import SkyMap

if TYPE_CHECKING:  # pragma: no cover
    from astropy.time import Time
    from mocpy import MOC, STMOC, TimeMOC

    from gwfollow.regions.mocio import _Decoded

log = logging.getLogger("gwfollow.regions.coverage")

KINDS = ("space", "time", "spacetime")
READERS = ("auto", "direct")

TIME_DEPTH = 61
"""Deepest time order of MOC 2.0: one cell is one microsecond."""
TIME_END_US = 1 << TIME_DEPTH
"""End of the MOC 2.0 time axis (exclusive), microseconds since JD 0."""
US_PER_DAY = 86_400_000_000
DEFAULT_WINDOW_S = 86400.0
"""Default length of the time window after the event: one day."""

_SIGN = np.int64(-(1 << 63))

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
            from gwfollow.regions.mocio import space_moc_fits_bytes

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
    from gwfollow.regions.mocio import _default_name  # mocio imports this module: imported on use

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
    """Decode a MOC file's bytes with :mod:`gwfollow.regions.mocio` (mocpy first when ``reader="auto"``)."""
    from gwfollow.regions.mocio import (_decode_ascii, _decode_fits, _decode_json, _decode_with_mocpy, _Decoded,
                        _is_mocpy_failure, _sniff)

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
        :func:`gwfollow.regions.moc.credible_ranges`: its covered area and
        probability are reported too.
    duration_s : float
        Window length when ``end`` is not given.

    Examples
    --------
    >>> import numpy as np
    >>> from gwfollow import read_skymap
    >>> from gwfollow.skymaps.simulate import simulated_skymap_bytes
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

