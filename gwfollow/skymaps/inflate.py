"""Gzip decompression of untrusted bytes under a size cap, as a stream.

A sky map named or carried by an alert may be a decompression bomb (a few
MB that inflate to many GB), or a pile of tiny gzip members (RFC 1952
allows any number, each with its own header) that costs time, not memory.
:func:`gunzip_bounded` therefore

* inflates in bounded output steps (``STEP_OUT``) and stops as soon as the
  output would pass the cap, so the cap is enforced *while* inflating;
* writes into one growing ``bytearray`` (never a list of chunks joined at
  the end, which would hold the output twice): peak memory is the output
  (at most the cap) plus a constant;
* feeds the input in bounded slices (``STEP_IN``) of a memoryview, so the
  bytes left after a member are never copied whole (with ``unused_data``
  re-fed from the start, n members would cost O(n * size) copying);
* refuses more than ``max_members`` members (bgzip-style files have one
  member per 64 KiB of output, so 65536 members cover a 4 GiB map); each
  member costs at most one ``STEP_IN`` copy, so the work stays bounded.
"""

from __future__ import annotations

import zlib

from gwfollow.errors import CorruptSkyMapError, SkyMapError

STEP_OUT = 1 << 20
STEP_IN = 1 << 13
MAX_MEMBERS = 65536


def gunzip_bounded(data: bytes | bytearray | memoryview, limit: int, source: str = "<bytes>", *,
                   max_members: int = MAX_MEMBERS) -> bytearray:
    """Inflate gzip ``data`` (one or more members) to at most ``limit`` bytes.

    Parameters
    ----------
    data : bytes-like
        gzip stream (RFC 1952), possibly several concatenated members.
    limit : int
        Largest output accepted, in bytes.
    source : str
        Name for errors.
    max_members : int
        Most gzip members accepted.

    Returns
    -------
    bytearray
        The inflated bytes (not copied into ``bytes``, to keep one copy).

    Raises
    ------
    SkyMapError
        The output would pass ``limit``.
    CorruptSkyMapError
        Corrupt or truncated stream, or more than ``max_members`` members.

    Examples
    --------
    >>> import gzip
    >>> bytes(gunzip_bounded(gzip.compress(b"abc") + gzip.compress(b"def"), 10))
    b'abcdef'
    """
    src = memoryview(data).cast("B")
    out = bytearray()
    pos = 0
    members = 1
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while True:
            piece = src[pos:pos + STEP_IN]
            pos += len(piece)
            pending: bytes | memoryview = piece
            while True:
                room = limit + 1 - len(out)
                step = min(STEP_OUT, room)
                before = len(out)
                out += d.decompress(pending, step)
                if len(out) > limit:
                    raise SkyMapError(
                        f"decompresses to more than {limit / 2**20:g} MiB", source=source,
                        hint="raise skymap.max_size_mib in the configuration if this map is genuine")
                if d.eof:
                    # The member ended inside this piece: the rest starts the next member.
                    rest = len(d.unused_data)
                    pos -= rest
                    if pos >= len(src):
                        return out
                    members += 1
                    if members > max_members:
                        raise CorruptSkyMapError(
                            f"more than {max_members} gzip members", source=source,
                            hint="a sky map is one gzip member; this is not one")
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    break
                pending = d.unconsumed_tail
                if not pending and len(out) - before < step:  # input used up, no output held back
                    break
            if pos >= len(src) and not d.eof:
                break
    except zlib.error as exc:
        raise CorruptSkyMapError(f"corrupt gzip data ({exc})", source=source,
                                 hint="fetch the sky map again") from None
    if not d.eof:
        raise CorruptSkyMapError("truncated gzip stream", source=source,
                                 hint="the file is incomplete; fetch the sky map again")
    return out

