"""MOC 2.0 serialisation: read and write (IVOA MOC 2.0, section 4.3.3).

Writing: :func:`space_moc_fits_bytes` gives the FITS form (a BINTABLE of
sorted NUNIQ cells with the MOC 2.0 keywords) as bytes, so products can be
stored and served without going through files; mocpy reads the result.

Reading: decoders of S-MOC, T-MOC and ST-MOC files into canonical ranges and
:class:`~gwfollow.regions.coverage.SpaceTimeRanges`: FITS (MOC 2.0 and 1.x, and the
pre-2.0 and non-standard files CDS tools wrote, read directly from the bytes),
ASCII, JSON, and mocpy's own readers.  :func:`gwfollow.regions.coverage.load_coverage`
chooses among them and builds the :class:`~gwfollow.regions.coverage.Coverage`.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.io import fits
from astropy.time import Time
from mocpy import MOC, STMOC, TimeMOC

from gwfollow.errors import CorruptSkyMapError, CoverageError
from gwfollow.kernels import healpix as khp
from gwfollow.kernels import ranges as kr
from gwfollow.regions.moc import moc_from_ranges, ranges_of, stmoc_from_ranges
from gwfollow.regions.timeaxis import (
    SIGN_BIT,
    TIME_DEPTH,
    TIME_END_US,
    IntRanges,
    SpaceTimeRanges,
)
from gwfollow.skymaps.fitsio import locate_bintable

# --------------------------------------------------------------------------- writing

log = logging.getLogger("gwfollow.regions.mocio")


def space_moc_fits_bytes(ranges: npt.NDArray[np.int64], max_order: int, extra: dict[str, object] | None = None) -> bytes:
    """A space MOC as MOC 2.0 FITS bytes.

    Parameters
    ----------
    ranges : (n, 2) int64
        Canonical depth-29 ranges.
    max_order : int
        ``MOCORD_S``: the MOC's resolution (cells deeper are not expected).
    extra : dict, optional
        More header cards (e.g. provenance: ``OBJECT``, ``SKYMAP``).
    """

    uniq = kr.to_uniq(ranges) if ranges.shape[0] else np.empty(0, dtype=np.int64)
    col = fits.Column(name="UNIQ", format="K", array=uniq)
    hdu = fits.BinTableHDU.from_columns([col])
    h = hdu.header
    h["MOCVERS"] = ("2.0", "MOC version")
    h["MOCDIM"] = ("SPACE", "Physical dimension")
    h["ORDERING"] = ("NUNIQ", "Coding method")
    h["COORDSYS"] = ("C", "Space reference frame")
    h["MOCORD_S"] = (int(max_order), "MOC resolution (best order)")
    h["MOCORDER"] = (int(max_order), "MOC resolution (MOC 1.x keyword)")
    h["MOCTOOL"] = ("gwfollow", "Name of the MOC generator")
    h["EXTNAME"] = ("MOC", "MOC name")
    h["PIXTYPE"] = "HEALPIX"
    for k, v in (extra or {}).items():
        h[k] = v
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


def credible_moc_fits_bytes(ranges: npt.NDArray[np.int64], max_order: int, *, object_id: str | None,
                            level: float, boundary: str, skymap_sha256: str, version: str) -> bytes:
    """A credible-region MOC as MOC 2.0 FITS bytes with gwfollow's provenance keywords.

    The one writer of credible-region MOC files, whichever channel asks (the
    ``gwfollow moc`` command, the pipeline's stored products served over
    REST): NUNIQ ordering and the same header, so the bytes are identical.

    Keywords: ``OBJECT`` (sky map's object id), ``CREDLEV`` (credible level),
    ``CREDBND`` (boundary rule), ``SKYMAPSH`` (sky-map SHA-256), ``GWFVERS``
    (gwfollow version).
    """
    return space_moc_fits_bytes(ranges, max_order, extra={
        "OBJECT": (object_id or "", "Sky map's object (superevent) id"),
        "CREDLEV": (float(level), "Credible level of the region"),
        "CREDBND": (boundary, "Rule for the cell crossing the level"),
        "SKYMAPSH": skymap_sha256[:64],  # SHA-256 of the sky-map file (no room for a comment)
        "GWFVERS": (version, "gwfollow version"),
    })


#: Provenance keywords of a credible-region MOC (:func:`credible_moc_fits_bytes`), carried over
#: to the space-time MOCs made from it.
PROVENANCE_KEYWORDS = ("OBJECT", "CREDLEV", "CREDBND", "SKYMAPSH", "GWFVERS")


def spacetime_moc_fits_bytes(stmoc: Any, extra: dict[str, object] | None = None) -> bytes:
    """A mocpy STMOC as MOC 2.0 FITS bytes (mocpy's RANGE coding, TCB), with more header cards
    and ``MOCTOOL = 'gwfollow'`` as in :func:`space_moc_fits_bytes`."""
    hdul = stmoc.serialize(format="fits")
    h = hdul[1].header
    h["MOCTOOL"] = ("gwfollow", "Name of the MOC generator")
    h["EXTNAME"] = ("MOC", "MOC name")
    for k, v in (extra or {}).items():
        h[k] = v
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def moc_bytes(moc: Any, fmt: str) -> bytes:
    """A mocpy MOC, TimeMOC or STMOC serialised as MOC 2.0 ``fits``, ``json`` or ``ascii`` bytes, in memory."""
    if fmt == "fits":
        buf = io.BytesIO()
        moc.serialize(format="fits").writeto(buf)
        return buf.getvalue()
    if fmt in ("json", "ascii"):
        s = moc.to_string(format=fmt)
        return s.encode() if isinstance(s, str) else json.dumps(s).encode()
    raise CoverageError(f"unknown MOC format {fmt!r}; use fits, json or ascii")


def read_space_moc_fits(data: bytes, source: str = "<MOC>") -> tuple[IntRanges, int]:
    """The depth-29 ranges and ``MOCORD_S`` of a space MOC in MOC 2.0 FITS (as written by
    :func:`space_moc_fits_bytes`)."""
    d = _decode_fits(data, source, "space")
    assert d.ranges is not None
    return d.ranges, int(d.max_order if d.max_order is not None else 29)


def convert_space_moc(fits_bytes: bytes, fmt: str, start_mjd: float | Time | None = None,
                      duration_s: float | None = None, time_order: int = 61) -> bytes:
    """A stored space MOC (MOC 2.0 FITS) in another format, or paired with the time
    window ``[start, start + duration_s)`` as a space-time MOC (``start_mjd``: an MJD, UTC, or a Time).

    The one writer of credible-region space-time MOCs, whichever channel asks
    (``gwfollow moc --duration``, REST ``moc?duration=``): in FITS they carry
    the space MOC's provenance keywords (:data:`PROVENANCE_KEYWORDS`) and the
    window, ``TWSTART``/``TWEND`` (ISO 8601 UTC, to the microsecond) and
    ``TWDUR`` (seconds).  JSON and ASCII MOCs have no place for them.
    """
    if fmt == "fits" and duration_s is None:
        return fits_bytes
    ranges, order = read_space_moc_fits(fits_bytes)
    if duration_s is None:
        return moc_bytes(moc_from_ranges(ranges, order), fmt)

    t0 = start_mjd if isinstance(start_mjd, Time) else Time(start_mjd, format="mjd", scale="utc")
    t0 = t0.utc
    st = stmoc_from_ranges(ranges, order, t0, duration_s, time_order)
    if fmt != "fits":
        return moc_bytes(st, fmt)
    h = fits.getheader(io.BytesIO(fits_bytes), 1)
    extra: dict[str, object] = {k: (h[k], h.comments[k]) for k in PROVENANCE_KEYWORDS if k in h}
    end = t0 + duration_s * u.s
    extra["TWSTART"] = (_iso_us(t0), "Time window start, UTC")
    extra["TWEND"] = (_iso_us(end), "Time window end, UTC")
    extra["TWDUR"] = (float(duration_s), "[s] Time window length")
    return spacetime_moc_fits_bytes(st, extra)


def _iso_us(t: Time) -> str:
    """ISO 8601 UTC to the microsecond (a MOC's time order 61 resolves one microsecond)."""
    c = t.copy()
    c.precision = 6
    return str(c.isot)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DecodedMoc:
    """A MOC file decoded into arrays (one of ``ranges``, ``time_ranges``, ``spacetime`` is set)."""

    kind: str
    max_order: int | None
    time_order: int | None
    ranges: IntRanges | None = None
    time_ranges: IntRanges | None = None
    spacetime: SpaceTimeRanges | None = None


def sniff_moc_format(raw: bytes) -> str:
    """``"fits.gz"``, ``"fits"``, ``"json"`` or ``"ascii"`` from a MOC file's first bytes."""
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
        found = locate_bintable(mv, source)
    except CorruptSkyMapError as exc:
        raise CoverageError(f"not a readable FITS file ({exc.message})", source=source) from None
    if found is None:
        raise CoverageError("no BINTABLE extension (a MOC FITS file stores its cells in one)", source=source)
    _, h, start, _ = found
    return h, _int_column(mv, h, start, source)


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


def _decode_fits(raw: bytes, source: str, kind: str | None, header_only: bool = False) -> DecodedMoc:
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
        return DecodedMoc(detected, t_order if detected == "time" else s_order, t_order)
    if ordering == "NUNIQ":
        order, ipix = khp.uniq_to_order_ipix(values)
        bad = (order < 0) | (ipix < 0) | (ipix >= (np.int64(12) << (2 * np.maximum(order, 0))))
        if np.any(bad):
            k = int(np.argmax(bad))
            raise CoverageError(f"value {int(values[k])} in row {k} is not a NUNIQ cell", source=source)
        # Overlapping cells (MOC 1.0 forbids them, some writers made them) are merged.
        r = kr.normalize(khp.uniq_to_ranges(values)) if values.size else np.empty((0, 2), np.int64)
        return DecodedMoc("space", s_order, None, ranges=r)
    if values.size % 2:
        raise CoverageError(f"RANGE ordering needs an even number of values, got {values.size}", source=source)
    pairs = values.reshape(-1, 2)
    if detected == "space":
        return DecodedMoc("space", s_order, None, ranges=_check_space_pairs(pairs, source))
    if detected == "time":
        return DecodedMoc("time", t_order, t_order, time_ranges=_check_time_pairs(pairs, source))
    return DecodedMoc("spacetime", s_order, t_order, spacetime=_decode_st_pairs(pairs, source))


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
    tv = np.where(flagged, tv & ~SIGN_BIT, -tv)
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


def _decode_ascii(text: str, source: str, kind: str | None) -> DecodedMoc:
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
        return DecodedMoc("spacetime", declared["s"], declared["t"], spacetime=SpaceTimeRanges.from_blocks(out))
    cells = [c for b in blocks for d in ("t", "s", "") for c in b[d]]
    top = max(declared.values()) if declared else 0
    detected = kind or ("time" if "t" in declared or top > 29 else "space")
    if detected == "spacetime":
        raise CoverageError("no t/ and s/ sections: not a space-time MOC", source=source)
    if detected == "time":
        return DecodedMoc("time", top, top, time_ranges=_cells(cells, "time", source))
    return DecodedMoc("space", top, None, ranges=_cells(cells, "space", source))


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


def _decode_json(text: str, source: str, kind: str | None) -> DecodedMoc:
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
        return DecodedMoc("spacetime", s_top, t_top, spacetime=SpaceTimeRanges.from_blocks(blocks))
    cells, top = _json_cells(obj, source)
    detected = kind or ("time" if top > 29 else "space")
    if detected == "spacetime":
        raise CoverageError("a JSON object is a space or time MOC, not a space-time one", source=source)
    if detected == "time":
        return DecodedMoc("time", top, top, time_ranges=_cells(cells, "time", source))
    return DecodedMoc("space", top, None, ranges=_cells(cells, "space", source))


# ---- mocpy


def _is_mocpy_failure(exc: BaseException) -> bool:
    # mocpy's Rust core panics (pyo3 PanicException derives from BaseException)
    # on some valid files; those count as "mocpy cannot read it".
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _decode_with_mocpy(path: Path, fmt: str, kind: str) -> DecodedMoc:

    if kind == "space":
        return DecodedMoc("space", None, None, ranges=ranges_of(MOC.load(str(path), format=fmt)))
    if kind == "time":
        tm = TimeMOC.load(str(path), format=fmt)
        r = np.asarray(tm.to_depth61_ranges, dtype=np.int64).reshape(-1, 2)
        return DecodedMoc("time", None, None, time_ranges=r if kr.is_canonical(r) else kr.normalize(r))
    st = STMOC.load(str(path), format=fmt)
    # mocpy has no public accessor for an ST-MOC's blocks: take its own MOC 2.0
    # FITS serialisation and decode that.
    buf = io.BytesIO()
    st.serialize(format="fits").writeto(buf)
    dec = _decode_fits(buf.getvalue(), f"{path} (via mocpy)", "spacetime")
    return DecodedMoc("spacetime", None, None, spacetime=dec.spacetime)


def moc_name_of(path: Path) -> str:
    """A coverage name from a MOC file name (its MOC and compression suffixes removed)."""
    name = path.name
    for suffix in (".gz", ".fits", ".fit", ".json", ".txt", ".csv", ".ascii", ".moc", ".stmoc", ".tmoc",
                   ".range"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def decode_moc(raw: bytes, path: Path, kind: str | None, reader: str, source: str) -> tuple[DecodedMoc, str]:
    """Decode a MOC file's bytes: mocpy first when ``reader="auto"`` (and the
    file is not gzipped), gwfollow's own reader otherwise or when mocpy fails.

    Returns the decoded arrays and which reader produced them (``"mocpy"`` or ``"direct"``).
    """
    src = source
    if not raw.strip():
        raise CoverageError("empty file", source=src)
    fmt = sniff_moc_format(raw)
    compressed = fmt == "fits.gz"
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise CoverageError(f"bad gzip data ({exc})", source=src) from None
        fmt = sniff_moc_format(raw)
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
            via = _decode_with_mocpy(path, fmt, probe.kind)
        except BaseException as exc:  # noqa: BLE001 - see _is_mocpy_failure
            if not _is_mocpy_failure(exc):
                raise
            log.info("%s: mocpy cannot read it (%s); using gwfollow's reader", src, exc)
        else:
            merged = DecodedMoc(probe.kind, probe.max_order, probe.time_order, via.ranges,
                              via.time_ranges, via.spacetime)
            return merged, "mocpy"
    if fmt == "fits" and try_mocpy:
        probe = _decode_fits(raw, src, kind)
    return probe, "direct"
