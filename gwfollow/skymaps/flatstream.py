"""Gzipped flat HEALPix maps read as a stream: inflate, merge siblings, accumulate in one pass.

A flat NESTED sky map at NSIDE 2048 is 50 million pixels (400 MB of
doubles per column) that compress to a few tens of MB because most of the
sky is covered by large cells of one value.  Instead of inflating the whole
file and then collapsing the array (:func:`gwfollow.kernels.flatmap.collapse_uniform`),
this module inflates a few MiB at a time and feeds each block of rows to
:func:`gwfollow.kernels.flatmap.collapse_stream`, which keeps only the
multi-order cells found so far: memory is one block plus the output, and the
pixels are touched while they are still in the cache.  The cells, their
order and their values are exactly those of the in-memory path (tested).

Inflation uses ISA-L (package ``isal``: the same DEFLATE, about three times
zlib's speed on sky maps) when installed, else zlib.  Only the common layout
streams: a BINTABLE of scalar ``D``/``E`` columns, NESTED, implicit
indexing; anything else is handed back as the inflated bytes for the general
reader (FITS standard 4.0, sections 7.3; LVK sky-map conventions).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gwfollow.errors import CorruptSkyMapError, InvalidCellsError, InvalidValueError, SkyMapError
from gwfollow.kernels import flatmap as kflat
from gwfollow.skymaps.fitsio import locate_bintable
from gwfollow.skymaps.inflate import MAX_MEMBERS, STEP_IN

try:  # ISA-L inflate: the same DEFLATE streams, about 3x faster than zlib
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflater = zlib  # type: ignore[assignment]

CHUNK = 4 << 20
"""Bytes inflated per step (a few MiB: large enough to amortise the calls,
small enough to stay in the cache and never to build the whole map)."""

_HEADER_MAX = 1 << 20  # headers larger than this are left to the general reader
_FLAT_PROB_COLUMNS = ("PROB", "PROBABILITY", "PROBDENSITY")
_DIST_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")
_SCALAR = {"D": ">f8", "1D": ">f8", "E": ">f4", "1E": ">f4"}
_INFLATE_ERRORS = (zlib.error, getattr(_inflater, "error", zlib.error))


def inflate_chunks(data: bytes, source: str, limit: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Inflate gzip ``data`` (one or several members) in pieces of at most ``chunk`` bytes.

    Raises
    ------
    SkyMapError
        More than ``limit`` bytes inflated.
    CorruptSkyMapError
        Corrupt or truncated gzip data.
    """
    # Input fed in bounded slices of a memoryview: the bytes after a member are never
    # copied whole (n members would cost O(n * size)); members are bounded in number.
    src = memoryview(data).cast("B")
    pos = 0
    members = 1
    d = _inflater.decompressobj(16 + zlib.MAX_WBITS)
    total = 0
    try:
        while pos < len(src):
            piece = src[pos:pos + STEP_IN]
            pos += len(piece)
            buf: bytes | memoryview = piece
            while True:
                out = d.decompress(buf, chunk)
                total += len(out)
                if total > limit:
                    raise SkyMapError(
                        f"decompresses to more than {limit // 2**20} MiB",
                        source=source,
                        hint="raise skymap.max_size_mib in the configuration if this map is genuine",
                    )
                if out:
                    yield out
                if d.eof:
                    pos -= len(d.unused_data)
                    if pos < len(src):
                        members += 1
                        if members > MAX_MEMBERS:
                            raise CorruptSkyMapError(f"more than {MAX_MEMBERS} gzip members", source=source,
                                                     hint="a sky map is one gzip member; this is not one")
                        d = _inflater.decompressobj(16 + zlib.MAX_WBITS)
                    break
                buf = d.unconsumed_tail
                if not buf and len(out) < chunk:  # input used up and no output held back
                    break
        if not d.eof:
            raise CorruptSkyMapError(
                "truncated gzip stream", source=source, hint="the file is incomplete; fetch the sky map again"
            )
    except _INFLATE_ERRORS as exc:
        raise CorruptSkyMapError(f"corrupt gzip data ({exc})", source=source, hint="fetch the sky map again") from None


@dataclass(frozen=True)
class FlatCells:
    """A flat map collapsed while streaming.

    Attributes
    ----------
    header : dict
        Cards of the primary and table headers (the table's win).
    names : tuple of str
        Column names of the table.
    uniq : ndarray of int64
        NUNIQ cells in NESTED order.
    probdensity : ndarray of float64
        Density per steradian.
    extra : dict
        ``DISTMU`` / ``DISTSIGMA`` / ``DISTNORM`` per cell when present.
    nside : int
    """

    header: dict[str, Any]
    names: tuple[str, ...]
    uniq: npt.NDArray[np.int64]
    probdensity: npt.NDArray[np.float64]
    extra: dict[str, npt.NDArray[np.float64]]
    nside: int


def _find(names: list[str], *candidates: str) -> int | None:
    upper = [n.upper() for n in names]
    for c in candidates:
        if c in upper:
            return upper.index(c)
    return None


def _layout(h: dict[str, Any]) -> tuple[list[str], list[str], list[int]] | None:
    """(names, big-endian dtypes, byte offsets) of a streamable table, else None."""
    if str(h.get("ORDERING", "")).strip().upper() != "NESTED":
        return None
    if str(h.get("INDXSCHM", "IMPLICIT")).strip().upper() == "EXPLICIT":
        return None
    if int(h.get("PCOUNT", 0) or 0) != 0 or h.get("THEAP") is not None:
        return None
    names, types, offsets = [], [], []
    off = 0
    for i in range(1, int(h.get("TFIELDS", 0) or 0) + 1):
        tform, name = h.get(f"TFORM{i}"), h.get(f"TTYPE{i}")
        if not isinstance(tform, str) or not isinstance(name, str) or tform.strip() not in _SCALAR:
            return None
        if h.get(f"TSCAL{i}") not in (None, 1, 1.0) or h.get(f"TZERO{i}") not in (None, 0, 0.0):
            return None
        names.append(name.strip())
        types.append(_SCALAR[tform.strip()])
        offsets.append(off)
        off += np.dtype(types[-1]).itemsize
    if off != int(h.get("NAXIS1", -1)) or _find(names, "UNIQ") is not None:
        return None
    if len({n.upper() for n in names}) != len(names) or _find(names, *_FLAT_PROB_COLUMNS) is None:
        return None
    return names, types, offsets


class _BadValues:
    """Non-finite and negative probabilities, counted across blocks (first row kept)."""

    def __init__(self) -> None:
        self.nonfinite = 0
        self.first_nonfinite: tuple[int, float] | None = None
        self.negative = 0
        self.first_negative: tuple[int, float] | None = None

    def add(self, row0: int, col: np.ndarray, nbad: int, fbad: int, nneg: int, fneg: int) -> None:
        """Record what :func:`~gwfollow.kernels.flatmap.check_and_scale` found in rows from ``row0``."""
        if nbad:
            if self.first_nonfinite is None:
                self.first_nonfinite = (row0 + fbad, float(col[fbad]))
            self.nonfinite += nbad
        if nneg:
            if self.first_negative is None:
                self.first_negative = (row0 + fneg, float(col[fneg]))
            self.negative += nneg

    def raise_if_any(self, source: str, column: str) -> None:
        # The same messages as the in-memory reader's check.
        if self.first_nonfinite is not None:
            i, v = self.first_nonfinite
            raise InvalidValueError(
                f"{self.nonfinite} non-finite value(s), first at row {i} ({v!r})",
                source=source, column=column,
                hint="the sky map is corrupt; ask its producer for a corrected version",
            )
        if self.first_negative is not None:
            i, v = self.first_negative
            raise InvalidValueError(
                f"{self.negative} negative value(s), first at row {i} ({v!r})",
                source=source, column=column, hint="probabilities cannot be negative; the sky map is corrupt",
            )


def read_gzip_flat(data: bytes, source: str, limit: int) -> FlatCells | bytes:
    """Read gzip ``data``: a flat NESTED map streams into cells; anything else comes back inflated.

    Parameters
    ----------
    data : bytes
        A gzip-compressed FITS file.
    source : str
        Name for messages.
    limit : int
        Most bytes the file may inflate to.

    Returns
    -------
    FlatCells or bytes
        The collapsed map, or the inflated bytes for the general reader.

    Raises
    ------
    SkyMapError, CorruptSkyMapError, InvalidValueError, InvalidCellsError
        As the general reader raises them.
    """
    chunks = inflate_chunks(data, source, limit)
    head = bytearray()
    found = None
    for c in chunks:
        head += c
        if bytes(head[:9]) != b"SIMPLE  =":
            break
        try:
            found = locate_bintable(head, source)
        except CorruptSkyMapError:
            if len(head) < _HEADER_MAX:
                continue  # the headers are not all inflated yet
            found = None
        break
    layout = _layout(found[1]) if found is not None else None
    if found is None or layout is None:
        return bytes(head) + b"".join(chunks)
    primary, h, start, size = found
    names, types, offsets = layout
    rowlen = int(h["NAXIS1"])
    npix = int(h.get("NAXIS2", 0))
    order = int(round(math.log2(math.sqrt(npix / 12)))) if npix >= 12 else -1
    pcol = names[_find(names, *_FLAT_PROB_COLUMNS)]  # type: ignore[index]
    if order < 0 or 12 * 4**order != npix:
        raise InvalidCellsError(
            f"{npix} pixels is not 12 * NSIDE**2 for a power-of-two NSIDE",
            source=source, column=pcol, hint="the map is truncated or not a full-sky HEALPix map",
        )
    nside_hdr = h.get("NSIDE")
    if isinstance(nside_hdr, int) and nside_hdr != 2**order:
        raise InvalidCellsError(
            f"NSIDE card says {nside_hdr} but the column holds {npix} pixels (NSIDE {2**order})",
            source=source, column=pcol,
        )
    # Column order of the collapsed values: density first, then the distance ansatz.
    cols = [names.index(pcol)] + [i for c in _DIST_COLUMNS if (i := _find(names, c)) is not None]
    value_names = ["PROB"] + [names[i].upper() for i in cols[1:]]
    rowtype = np.dtype({"names": names, "formats": types, "offsets": offsets, "itemsize": rowlen})
    scale = 1.0 if pcol.upper() == "PROBDENSITY" else npix / (4.0 * math.pi)
    state = kflat.stream_state(order, len(cols))
    out_u = np.empty(4096, dtype=np.int64)
    out_v = np.empty((4096, len(cols)), dtype=np.float64)
    nemit = 0
    bad = _BadValues()
    done = 0
    block = np.empty((max(1, CHUNK // rowlen + 1), len(cols)), dtype=np.float64)

    def feed(buf: bytes | bytearray) -> int:
        # Collapse the whole rows at the start of `buf`; return the bytes used.
        nonlocal out_u, out_v, nemit, done, block
        n = min(len(buf) // rowlen, npix - done)
        if n <= 0:
            return 0
        rows = np.frombuffer(buf, dtype=rowtype, count=n)
        if block.shape[0] < n:
            block = np.empty((n, len(cols)), dtype=np.float64)
        vals = block[:n]
        for j, i in enumerate(cols):
            vals[:, j] = rows[names[i]]
        del rows
        if vals.shape[1] == 1:
            col = vals.reshape(-1)
        else:
            col = np.ascontiguousarray(vals[:, 0])
        # Checked, then per-pixel probability -> density, as the in-memory reader does.
        found = kflat.check_and_scale(col, scale)
        if found[0] or found[2]:
            raw_col = np.frombuffer(buf, dtype=rowtype, count=n)[pcol].astype(np.float64)
            bad.add(done, raw_col, *found)
        if vals.shape[1] > 1:
            vals[:, 0] = col
        out_u, out_v, nemit = kflat.collapse_stream(vals, order, state, out_u, out_v, nemit)
        done += n
        return n * rowlen

    pending = bytes(head[start:])
    for c in chunks:
        if done >= npix:
            continue  # padding and later HDUs: inflated to check the stream's integrity
        if pending:
            pending += c
            c = pending
        pending = c[feed(c):]
    if done < npix:
        pending = pending[feed(pending):]
    if done < npix:
        raise CorruptSkyMapError(
            f"truncated table: {npix} rows need {npix * rowlen} bytes of data, the file has "
            f"{done * rowlen + len(pending)}",
            source=source, hint="the download or the base64 payload is incomplete; fetch the sky map again",
        )
    bad.raise_if_any(source, pcol)
    header = dict(primary)
    header.update(h)
    vals = out_v[:nemit]
    extra = {n: np.ascontiguousarray(vals[:, j]) for j, n in enumerate(value_names) if j > 0}
    return FlatCells(header, tuple(names), out_u[:nemit].copy(), np.ascontiguousarray(vals[:, 0]), extra, 2**order)
