"""A direct reader for the binary-table FITS files that sky maps are.

Sky maps are small, regular FITS files: a primary HDU without data and one
``BINTABLE`` extension with fixed-width numeric columns.  Opening them with
``astropy.io.fits`` costs several milliseconds of header parsing; this
module reads the header cards and maps the table onto a numpy structured
array directly (FITS standard 4.0, sections 4, 7.3).  Anything unusual
(variable-length arrays, scaled columns, strings outside the cards) is
reported as :class:`FastPathUnsupported` and the caller falls back to
astropy; both paths are tested to agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gwfollow.errors import CorruptSkyMapError

BLOCK = 2880
CARD = 80

_TFORM = re.compile(r"^\s*(\d*)([LXBIJKAEDCM])\s*$")
_DTYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "L": "i1"}


class FastPathUnsupported(Exception):
    """The file is valid FITS but needs the general (astropy) reader."""


@dataclass(frozen=True)
class BinTable:
    """One binary-table HDU mapped onto the file's bytes.

    Attributes
    ----------
    primary : dict
        Cards of the primary header.
    header : dict
        Cards of the table header (keywords upper-case).
    data : numpy structured array
        The rows, big-endian, a view of the input buffer (no copy).
    names : tuple of str
        Column names in file order.
    """

    primary: dict[str, Any]
    header: dict[str, Any]
    data: np.ndarray
    names: tuple[str, ...]


def _parse_value(raw: str) -> Any:
    s = raw.strip()
    if s.startswith("'"):
        # A string: up to the closing quote; '' is an escaped quote.
        parts = []
        i = 1
        while True:
            j = s.find("'", i)
            if j < 0:
                parts.append(s[i:])
                break
            parts.append(s[i:j])
            if s.startswith("'", j + 1):
                parts.append("'")
                i = j + 2
                continue
            break
        return "".join(parts).rstrip()
    s = s.split("/", 1)[0].strip()
    if s == "T":
        return True
    if s == "F":
        return False
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s.replace("D", "E"))
    except ValueError:
        return s


def read_header(buf: memoryview | bytes, offset: int, source: str) -> tuple[dict[str, Any], int]:
    """Parse the header starting at ``offset``; return its cards and the data offset."""
    cards: dict[str, Any] = {}
    pos = offset
    n = len(buf)
    while True:
        if pos + BLOCK > n:
            raise CorruptSkyMapError(
                f"truncated FITS header at byte {pos} (file has {n} bytes)",
                source=source,
                hint="the download or the base64 payload is incomplete; fetch the sky map again",
            )
        block = bytes(buf[pos : pos + BLOCK])
        pos += BLOCK
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError:
            raise CorruptSkyMapError(
                f"non-ASCII bytes in the FITS header block at byte {pos - BLOCK}",
                source=source,
                hint="this is not a FITS file or it is corrupt",
            ) from None
        for k in range(0, BLOCK, CARD):
            card = text[k : k + CARD]
            key = card[:8].strip()
            if key == "END":
                _check_structure(cards, source)
                return cards, pos
            if card[8:10] == "= " and key:
                if key not in cards:
                    cards[key] = _parse_value(card[10:])


_BITPIX = (8, 16, 32, 64, -32, -64)


def _check_structure(cards: Mapping[str, Any], source: str) -> None:
    """The mandatory keywords that size the data must be integers in range (FITS 4.0, sect. 4.4.1)."""
    naxis = cards.get("NAXIS", 0)
    checks: list[tuple[str, int, int]] = [("NAXIS", 0, 999), ("PCOUNT", 0, 2**62), ("GCOUNT", 0, 2**62),
                                          ("TFIELDS", 0, 999)]
    if isinstance(naxis, int) and not isinstance(naxis, bool) and 0 <= naxis <= 999:
        checks += [(f"NAXIS{i}", 0, 2**62) for i in range(1, naxis + 1)]
    for key, lo, hi in checks:
        if key not in cards:
            continue
        v = cards[key]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise CorruptSkyMapError(f"{key} = {v!r} is not an integer in [{lo}, {hi}]", source=source,
                                     hint="the FITS header is corrupt")
    if "BITPIX" in cards and cards["BITPIX"] not in _BITPIX:
        raise CorruptSkyMapError(f"BITPIX = {cards['BITPIX']!r} is not one of {_BITPIX}", source=source,
                                 hint="the FITS header is corrupt")


def data_size(h: Mapping[str, Any]) -> int:
    """Bytes of data after a header (FITS 4.0, eq. 2), before padding."""
    naxis = int(h.get("NAXIS", 0) or 0)
    if naxis == 0:
        return 0
    size = 1
    for i in range(1, naxis + 1):
        size *= int(h.get(f"NAXIS{i}", 0))
    return abs(int(h.get("BITPIX", 8))) // 8 * int(h.get("GCOUNT", 1)) * (int(h.get("PCOUNT", 0)) + size)


def _padded(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def locate_bintable(
    buf: bytes | memoryview, source: str
) -> tuple[dict[str, Any], dict[str, Any], int, int] | None:
    """Find the first BINTABLE extension by walking the headers, without mapping its rows.

    Returns
    -------
    (primary, header, data_start, data_size) or None
        Cards of the primary and of the table header, the byte offset of the
        table's data and its size in bytes before padding; None when the file
        has no BINTABLE extension.

    Raises
    ------
    CorruptSkyMapError
        Truncated header, or non-ASCII bytes in one.
    """
    mv = memoryview(buf)
    primary, pos = read_header(mv, 0, source)
    pos += _padded(data_size(primary))
    while pos < len(mv):
        h, data_start = read_header(mv, pos, source)
        size = data_size(h)
        if h.get("XTENSION") == "BINTABLE":
            return primary, h, data_start, size
        pos = data_start + _padded(size)
    return None


def find_bintable(buf: bytes | memoryview, source: str) -> BinTable:
    """Locate the first BINTABLE extension and map its rows.

    Raises
    ------
    CorruptSkyMapError
        Not FITS, truncated header or data.
    FastPathUnsupported
        Valid but needs astropy (no BINTABLE, scaled or variable columns...).
    """
    mv = memoryview(buf)
    if bytes(mv[:9]) != b"SIMPLE  =":
        raise CorruptSkyMapError(
            "not a FITS file (no SIMPLE card at the start)",
            source=source,
            hint="expected a HEALPix FITS sky map, optionally gzip-compressed",
        )
    found = locate_bintable(mv, source)
    if found is None:
        raise FastPathUnsupported("no BINTABLE extension")
    primary, h, data_start, size = found
    return _map_table(mv, primary, h, data_start, size, source)


def _map_table(
    mv: memoryview, primary: dict[str, Any], h: dict[str, Any], start: int, size: int, source: str
) -> BinTable:
    nrows = int(h.get("NAXIS2", 0))
    rowlen = int(h.get("NAXIS1", 0))
    nfields = int(h.get("TFIELDS", 0))
    if int(h.get("PCOUNT", 0)) != 0 or h.get("THEAP") is not None:
        raise FastPathUnsupported("variable-length arrays")
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    off = 0
    for i in range(1, nfields + 1):
        tform = h.get(f"TFORM{i}")
        name = h.get(f"TTYPE{i}")
        if not isinstance(tform, str) or not isinstance(name, str):
            raise FastPathUnsupported(f"column {i} without TFORM/TTYPE")
        if h.get(f"TSCAL{i}") not in (None, 1, 1.0) or h.get(f"TZERO{i}") not in (None, 0, 0.0):
            raise FastPathUnsupported("scaled column")
        m = _TFORM.match(tform)
        if m is None or m.group(2) not in _DTYPES and m.group(2) != "A":
            raise FastPathUnsupported(f"TFORM {tform!r}")
        repeat = int(m.group(1) or 1)
        code = m.group(2)
        if code == "A":
            fmt: Any = f"S{repeat}"
            width = repeat
        else:
            base = np.dtype(_DTYPES[code])
            fmt = base if repeat == 1 else (base, (repeat,))
            width = base.itemsize * repeat
        names.append(name.strip())
        formats.append(fmt)
        offsets.append(off)
        off += width
    if off != rowlen:
        raise FastPathUnsupported("row length does not match the columns")
    if len(set(n.upper() for n in names)) != len(names):
        raise FastPathUnsupported("duplicate column names")
    need = nrows * rowlen
    if start + need > len(mv):
        raise CorruptSkyMapError(
            f"truncated table: {nrows} rows need {need} bytes of data, the file has "
            f"{max(0, len(mv) - start)}",
            source=source,
            hint="the download or the base64 payload is incomplete; fetch the sky map again",
        )
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": rowlen})
    data = np.frombuffer(mv, dtype=dtype, count=nrows, offset=start)
    return BinTable(primary=primary, header=h, data=data, names=tuple(names))
