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

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from mocpy import STMOC, TimeMOC

from gwfollow.errors import CoverageError
from gwfollow.kernels import ranges as kr
from gwfollow.regions.moc import (
    moc_from_ranges,
    probability_in_ranges,
    ranges_area_deg2,
)
from gwfollow.regions.mocio import (
    DecodedMoc,
    decode_moc,
    moc_name_of,
    space_moc_fits_bytes,
)
from gwfollow.regions.timeaxis import (
    DEFAULT_WINDOW_S,
    SIGN_BIT,
    TIME_DEPTH,
    IntRanges,
    SpaceTimeRanges,
    TimeLike,
    as_ranges,
    covered_us,
    deepest_order,
    iso_utc,
    time_window_us,
)
from gwfollow.skymaps.skymap import SkyMap

if TYPE_CHECKING:  # pragma: no cover
    from mocpy import MOC, STMOC, TimeMOC


log = logging.getLogger("gwfollow.regions.coverage")

KINDS = ("space", "time", "spacetime")
READERS = ("auto", "direct")


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
        r = as_ranges(ranges, "ranges")
        order = deepest_order(r, 29, 2) if max_order is None else int(max_order)
        return cls(name, "space", source, order, ranges=r)

    @classmethod
    def from_time_ranges(cls, name: str, time_ranges_us: Any, max_order: int = TIME_DEPTH,
                         source: str = "<ranges>") -> Coverage:
        """A time coverage of TCB microsecond ranges (normalised when needed)."""
        return cls(name, "time", source, int(max_order), time_order=int(max_order),
                   time_ranges=as_ranges(time_ranges_us, "time ranges"))

    @property
    def data_order(self) -> int:
        """Deepest order the data needs (space order; time order for T-MOCs)."""
        if self.kind == "space":
            assert self.ranges is not None
            return deepest_order(self.ranges, 29, 2)
        if self.kind == "time":
            assert self.time_ranges is not None
            return deepest_order(self.time_ranges, TIME_DEPTH, 1)
        assert self.spacetime is not None
        return deepest_order(self.spacetime.space_ranges, 29, 2)

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

            assert self.time_ranges is not None
            depth = min(TIME_DEPTH, max(self.max_order, self.data_order))
            return TimeMOC.from_depth61_ranges(depth, self.time_ranges.astype(np.uint64).reshape(-1, 2))

        return STMOC.from_fits(io.BytesIO(self.to_fits_bytes()))

    def to_fits_bytes(self) -> bytes:
        """MOC 2.0 FITS (RANGE ordering for time and space-time, NUNIQ for space)."""
        if self.kind == "space":

            assert self.ranges is not None
            return space_moc_fits_bytes(self.ranges, min(29, max(self.max_order, self.data_order)))
        if self.kind == "time":
            assert self.time_ranges is not None
            t_order = min(TIME_DEPTH, max(self.max_order, self.data_order))
            return _range_fits_bytes(self.time_ranges.ravel(), {"MOCDIM": "TIME", "MOCORD_T": t_order,
                                                                 "TIMESYS": "TCB"})
        assert self.spacetime is not None
        st = self.spacetime
        t_order = min(TIME_DEPTH, max(self.time_order or 0, deepest_order(st.time_ranges, TIME_DEPTH, 1)))
        s_order = min(29, max(self.max_order, self.data_order))
        parts: list[npt.NDArray[np.int64]] = []
        for t, s in st.blocks():
            parts.append(t.ravel() | SIGN_BIT)
            parts.append(s.ravel())
        values = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return _range_fits_bytes(values, {"MOCDIM": "TIME.SPACE", "MOCORD_T": t_order, "MOCORD_S": s_order,
                                          "COORDSYS": "C", "TIMESYS": "TCB"})


def _range_fits_bytes(values: npt.NDArray[np.int64], cards: dict[str, object]) -> bytes:

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
    return coverage_from_bytes(raw, p, name or moc_name_of(p), kind, reader)


def coverage_from_bytes(raw: bytes, path: Path, name: str, kind: str | None = None, reader: str = "auto",
                        source: str | None = None) -> Coverage:
    """A :class:`Coverage` from the bytes of a MOC file (FITS, gzipped FITS, JSON or ASCII).

    ``path`` is where the bytes are (mocpy reads files); ``source`` names them
    in errors (a URL for MOCServer downloads, the path by default).
    """
    src = source or str(path)
    decoded, via = decode_moc(raw, path, kind, reader, src)
    return _coverage_of(decoded, name, src, via)


def _coverage_of(d: DecodedMoc, name: str, source: str, reader: str) -> Coverage:
    if d.kind == "space":
        assert d.ranges is not None
        order = d.max_order if d.max_order is not None else deepest_order(d.ranges, 29, 2)
        return Coverage(name, "space", source, order, ranges=d.ranges, reader=reader)
    if d.kind == "time":
        assert d.time_ranges is not None
        order = d.time_order if d.time_order is not None else deepest_order(d.time_ranges, TIME_DEPTH, 1)
        return Coverage(name, "time", source, order, time_order=order, time_ranges=d.time_ranges,
                        reader=reader)
    assert d.spacetime is not None
    s_order = d.max_order if d.max_order is not None else deepest_order(d.spacetime.space_ranges, 29, 2)
    t_order = d.time_order if d.time_order is not None else deepest_order(d.spacetime.time_ranges,
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
    reg = None if region is None else as_ranges(region, "region")
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
        tfrac = covered_us(when, t0, t1) / (t1 - t0)
    return CoverageResult(
        name=coverage.name, kind=coverage.kind, probability=prob, coverage_area_deg2=area,
        area_deg2=rarea, region_probability=rprob, time_fraction=tfrac,
        start=iso_utc(window[0]) if window else None, end=iso_utc(window[1]) if window else None,
    )


def remaining_probability(skymap: SkyMap, covered_ranges: Any) -> float:
    """Probability not yet covered: the map's total outside ``covered_ranges``.

    Equals ``1 - probability covered`` for a normalised map (it subtracts
    from the map's actual sum, so a map normalised to 1 +- 1e-6 stays
    consistent).
    """
    covered = probability_in_ranges(skymap, as_ranges(covered_ranges, "covered ranges"))
    return max(0.0, float(np.sum(skymap.prob)) - covered)

