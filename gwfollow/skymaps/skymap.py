"""Sky maps: reading LVK HEALPix FITS files into one multi-order representation.

Every sky map, multi-order (NUNIQ) or flat (NESTED or RING, any NSIDE), is
held as a :class:`SkyMap`: NUNIQ cells with a probability density per
steradian and, for compact binaries, the distance ansatz parameters
(Singer et al. 2016, ApJL 829, L15): ``DISTMU`` and ``DISTSIGMA`` in Mpc,
``DISTNORM`` in Mpc^-2.  Flat maps are converted without loss: a cell stands
for its four children only where all four carry identical values.

Formats: the LVK sky-map FITS conventions (ligo.skymap ``io.fits``; the
multi-order form follows IVOA MOC 2.0 NUNIQ indexing).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from gwfollow.config import SkyMapConfig, packaged_defaults
from gwfollow.errors import (
    CorruptSkyMapError,
    InvalidCellsError,
    InvalidValueError,
    MissingColumnError,
    NormalizationError,
    SkyMapError,
    SkyMapWarning,
    UnsupportedSkyMapError,
)
from gwfollow.kernels import credible as kcred
from gwfollow.kernels import flatmap as kflat
from gwfollow.kernels import healpix as khp
from gwfollow.skymaps.fitsio import FastPathUnsupported, find_bintable
from gwfollow.skymaps.flatstream import FlatCells, inflate_chunks, read_gzip_flat

SkyMapSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]

_DIST_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")
_FLAT_PROB_COLUMNS = ("PROB", "PROBABILITY", "PROBDENSITY")
_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SkyMapMeta:
    """What a sky map says about itself.

    Attributes
    ----------
    source : str
        File name, or ``"<bytes>"``.
    object_id : str or None
        ``OBJECT`` card: a superevent id, a G-event id, or anything else.
    event_time : str or None
        ``DATE-OBS`` (UTC, ISO 8601).
    event_mjd : float or None
        ``MJD-OBS``, or derived from ``DATE-OBS`` (UTC days).
    instruments : tuple of str
        From ``INSTRUME`` (``"H1,L1,V1"``).
    creator, origin : str or None
        ``CREATOR`` (pipeline) and ``ORIGIN``.
    distmean, diststd : float or None
        ``DISTMEAN`` / ``DISTSTD`` posterior mean and standard deviation of
        the luminosity distance, Mpc.
    ordering : str
        The file's ordering: ``NUNIQ``, ``NESTED`` or ``RING``.
    nside : int or None
        NSIDE of a flat map.
    moc_order : int
        Deepest order used when splitting cells: ``MOCORDER`` when the file
        declares it, else the deepest order of the data.
    prob_sum : float
        Sum of cell probabilities.
    warnings : tuple of str
        Things worth knowing that did not prevent reading.
    """

    source: str
    object_id: str | None
    event_time: str | None
    event_mjd: float | None
    instruments: tuple[str, ...]
    creator: str | None
    origin: str | None
    distmean: float | None
    diststd: float | None
    ordering: str
    nside: int | None
    moc_order: int
    prob_sum: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class SkyMap:
    """A HEALPix probability sky map as multi-order cells.

    Attributes
    ----------
    uniq : ndarray of int64
        NUNIQ cell indices (IVOA MOC 2.0).
    probdensity : ndarray of float64
        Probability per steradian.
    distmu, distsigma : ndarray of float64 or None
        Location and scale of the distance ansatz, Mpc.
    distnorm : ndarray of float64 or None
        Normalisation of the distance ansatz, Mpc^-2.
    meta : SkyMapMeta
        Metadata.
    order, ipix : ndarray of int64
        HEALPix order and NESTED index of each cell.
    ranges : (n, 2) ndarray of int64
        Depth-29 range of each cell.
    by_start : ndarray of int64
        Rows sorted by range start (the cells in sky order).
    prob : ndarray of float64
        Probability of each cell (density times area).
    raw : bytes
        The bytes as received, kept for provenance (:attr:`sha256`).
    """

    uniq: npt.NDArray[np.int64]
    probdensity: npt.NDArray[np.float64]
    distmu: npt.NDArray[np.float64] | None
    distsigma: npt.NDArray[np.float64] | None
    distnorm: npt.NDArray[np.float64] | None
    meta: SkyMapMeta
    order: npt.NDArray[np.int64] = field(repr=False)
    ipix: npt.NDArray[np.int64] = field(repr=False)
    ranges: npt.NDArray[np.int64] = field(repr=False)
    by_start: npt.NDArray[np.int64] = field(repr=False)
    prob: npt.NDArray[np.float64] = field(repr=False)
    raw: bytes = field(repr=False, default=b"")

    @functools.cached_property
    def sorted_cells(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(starts, ends) of the cells' depth-29 ranges in sky order (``by_start``)."""
        return self.ranges[self.by_start, 0].copy(), self.ranges[self.by_start, 1].copy()

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of the bytes as received (compressed or not).

        The sky-map version used for provenance; computed on first use so
        that reading stays fast.
        """
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def event_t0(self):
        """The event time (from MJD-OBS / DATE-OBS) as an astropy ``Time`` (UTC), or None."""
        if self.meta.event_mjd is None:
            return None

        return Time(self.meta.event_mjd, format="mjd", scale="utc")

    @property
    def has_distance(self) -> bool:
        """True when the distance ansatz columns are present."""
        return self.distmu is not None

    @property
    def max_order(self) -> int:
        """Deepest HEALPix order present in the cells."""
        return int(self.order.max()) if self.order.size else 0

    def __len__(self) -> int:
        return int(self.uniq.shape[0])

    def cell_probabilities(self) -> npt.NDArray[np.float64]:
        """Probability of each cell (density times cell area)."""
        return self.prob

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"SkyMap({m.object_id or m.source!s}, {len(self)} cells, orders "
            f"{int(self.order.min()) if len(self) else 0}..{self.max_order}, "
            f"distance={'yes' if self.has_distance else 'no'})"
        )


# --------------------------------------------------------------------------- bytes


def _read_source(source: SkyMapSource, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        try:
            return p.read_bytes(), name or str(p)
        except FileNotFoundError:
            raise SkyMapError(
                "no such file", source=str(p), hint="check the path"
            ) from None
        except OSError as exc:
            raise SkyMapError(f"cannot read ({exc.strerror})", source=str(p)) from None
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise SkyMapError(
                "file object returned text", source=name or "<file>", hint="open it in binary mode"
            )
        return bytes(data), name or getattr(source, "name", None) or "<file>"
    raise TypeError(f"cannot read a sky map from {type(source).__name__}")


# ------------------------------------------------------------------- table access


@dataclass
class _Table:
    header: dict[str, Any]
    names: tuple[str, ...]
    columns: Any  # mapping name -> array-like (structured array or astropy FITS_rec)

    def find(self, *candidates: str) -> str | None:
        upper = {n.upper(): n for n in self.names}
        for c in candidates:
            if c in upper:
                return upper[c]
        return None

    def get(self, name: str) -> np.ndarray:
        return np.asarray(self.columns[name])


def _table_fast(buf: bytes, source: str) -> _Table:
    t = find_bintable(buf, source)
    header = dict(t.primary)
    header.update(t.header)
    return _Table(header=header, names=t.names, columns=t.data)


def _table_astropy(buf: bytes, source: str) -> _Table:

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(io.BytesIO(buf), memmap=False, lazy_load_hdus=False)
            header: dict[str, Any] = {}
            for card in hdul[0].header.cards:
                header.setdefault(card.keyword, card.value)
            for hdu in hdul[1:]:
                if isinstance(hdu, fits.BinTableHDU):
                    for card in hdu.header.cards:
                        header[card.keyword] = card.value
                    data = hdu.data
                    names = tuple(data.columns.names) if data is not None else ()
                    cols = {n: np.asarray(data[n]) for n in names}
                    return _Table(header=header, names=names, columns=cols)
    except SkyMapError:
        raise
    except Exception as exc:  # astropy raises many types for bad files
        raise CorruptSkyMapError(f"unreadable FITS ({exc})", source=source) from None
    raise UnsupportedSkyMapError(
        "no binary table extension",
        source=source,
        hint="expected an LVK HEALPix sky map (multi-order NUNIQ or flat)",
    )


# ------------------------------------------------------------------------ metadata


#: MJD-OBS accepted: 1858-11-17 .. 2132-08-31, the span over which UTC and
#: the leap-second table (ERFA) give a time; outside it nothing can use the date.
_MJD_RANGE = (0.0, 100000.0)


def _event_mjd(header: dict[str, Any], source: str) -> float | None:
    mjd = header.get("MJD-OBS")
    if isinstance(mjd, (int, float)) and not isinstance(mjd, bool):
        value = float(mjd)
        what = f"MJD-OBS = {mjd!r}"
    else:
        date = header.get("DATE-OBS")
        if not (isinstance(date, str) and date):
            return None
        try:
            dt = datetime.fromisoformat(date.rstrip("Z"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        try:
            value = (dt - _MJD_EPOCH).total_seconds() / 86400.0
        except OverflowError:
            value = math.nan
        what = f"DATE-OBS = {date!r}"
    if not (math.isfinite(value) and _MJD_RANGE[0] <= value <= _MJD_RANGE[1]):
        raise CorruptSkyMapError(f"{what} is not a date between 1858 and 2132", source=source,
                                 hint="the sky map's event time is corrupt")
    return value


def _str_or_none(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _float_or_none(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ---------------------------------------------------------------------- validation


def _check_finite_nonneg(values: np.ndarray, source: str, column: str) -> None:
    # One pass without temporaries (kernels.flatmap.check_and_scale; 1.0 leaves values as they are).
    nbad, fbad, nneg, fneg = kflat.check_and_scale(np.ascontiguousarray(values, dtype=np.float64), 1.0)
    if nbad:
        raise InvalidValueError(
            f"{nbad} non-finite value(s), first at row {fbad} ({float(values[fbad])!r})",
            source=source,
            column=column,
            hint="the sky map is corrupt; ask its producer for a corrected version",
        )
    if nneg:
        raise InvalidValueError(
            f"{nneg} negative value(s), first at row {fneg} ({float(values[fneg])!r})",
            source=source,
            column=column,
            hint="probabilities cannot be negative; the sky map is corrupt",
        )


def _check_norm(total: float, cfg: SkyMapConfig, source: str, column: str) -> tuple[str, ...]:
    dev = abs(total - 1.0)
    if not math.isfinite(total) or dev > cfg.norm_tolerance:
        raise NormalizationError(
            f"probabilities sum to {total:.6g}, not 1 (tolerance {cfg.norm_tolerance:g})",
            source=source,
            column=column,
            hint="the map is truncated or not a probability map; raise "
            "skymap.norm_tolerance only if you know why",
        )
    if dev > cfg.norm_warning:
        msg = f"probabilities sum to {total:.12g} (deviation {dev:.3g} from 1)"
        warnings.warn(f"{source}: {msg}", SkyMapWarning, stacklevel=3)
        return (msg,)
    return ()


# --------------------------------------------------------------------------- build


def _as_f8(a: np.ndarray, source: str = "<bytes>", column: str | None = None) -> np.ndarray:
    if a.dtype.kind not in "biuf":  # text or structured columns (a corrupt TFORM): not numbers
        raise UnsupportedSkyMapError(f"column of type {a.dtype} where numbers are expected", source=source,
                                     column=column)
    return np.ascontiguousarray(a, dtype=np.float64)


def _multiorder(t: _Table, source: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], tuple]:
    ucol = t.find("UNIQ")
    if ucol is None:
        raise MissingColumnError(
            f"no UNIQ column (columns: {', '.join(t.names)})",
            source=source,
            column="UNIQ",
            hint="a multi-order (NUNIQ) sky map needs UNIQ and PROBDENSITY",
        )
    pcol = t.find("PROBDENSITY")
    if pcol is None:
        raise MissingColumnError(
            f"no PROBDENSITY column (columns: {', '.join(t.names)})",
            source=source,
            column="PROBDENSITY",
            hint="a multi-order (NUNIQ) sky map needs UNIQ and PROBDENSITY",
        )
    uraw = t.get(ucol)
    if uraw.ndim != 1 or uraw.dtype.kind not in "iu":
        raise InvalidCellsError(
            f"UNIQ must be an integer scalar column, found {uraw.dtype}", source=source, column=ucol
        )
    uniq = np.ascontiguousarray(uraw, dtype=np.int64)
    dens = _as_f8(t.get(pcol), source, pcol)
    if dens.ndim != 1:
        raise UnsupportedSkyMapError("PROBDENSITY must be a scalar column", source=source, column=pcol)
    code, where, *cells = khp.prepare_cells(uniq)
    if code == 1:
        raise InvalidCellsError(
            f"row {where}: {int(uniq[where])} is not a HEALPix NUNIQ index (order 0..29)",
            source=source,
            column=ucol,
            hint="the sky map is corrupt",
        )
    if code == 2:
        raise InvalidCellsError(
            f"row {where}: cell {int(uniq[where])} overlaps another cell",
            source=source,
            column=ucol,
            hint="each part of the sky must be listed once; the sky map is corrupt",
        )
    _check_finite_nonneg(dens, source, pcol)
    extra = {}
    for c in _DIST_COLUMNS:
        name = t.find(c)
        if name is not None:
            extra[c] = _as_f8(t.get(name), source, name)
    return uniq, dens, extra, tuple(cells)


def _flat(t: _Table, source: str, ordering: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], int]:
    pcol = t.find(*_FLAT_PROB_COLUMNS)
    if pcol is None:
        raise MissingColumnError(
            f"no PROB or PROBABILITY column (columns: {', '.join(t.names)})",
            source=source,
            column="PROB",
            hint="a flat HEALPix sky map needs a PROB (or PROBABILITY) column",
        )
    prob = t.get(pcol).reshape(-1)
    npix = prob.shape[0]
    nside_hdr = t.header.get("NSIDE")
    order = int(round(math.log2(math.sqrt(npix / 12)))) if npix >= 12 else -1
    if order < 0 or 12 * 4**order != npix:
        raise InvalidCellsError(
            f"{npix} pixels is not 12 * NSIDE**2 for a power-of-two NSIDE",
            source=source,
            column=pcol,
            hint="the map is truncated or not a full-sky HEALPix map",
        )
    if isinstance(nside_hdr, int) and nside_hdr != 2**order:
        raise InvalidCellsError(
            f"NSIDE card says {nside_hdr} but the column holds {npix} pixels (NSIDE {2**order})",
            source=source,
            column=pcol,
        )
    dens = np.array(prob, dtype=np.float64)  # native copy
    del prob
    _check_finite_nonneg(dens, source, pcol)
    # Per-pixel probability -> density per steradian: pixel area is 4 pi / npix.
    is_density = pcol.upper() == "PROBDENSITY"
    if not is_density:
        dens *= npix / (4.0 * math.pi)
    cols = [dens]
    names = ["PROB"]
    for c in _DIST_COLUMNS:
        name = t.find(c)
        if name is not None:
            cols.append(_as_f8(t.get(name).reshape(-1), source, name))
            names.append(c)
    if ordering == "RING":
        perm = khp.nest_to_ring_order(order)
        cols = [c[perm] for c in cols]
        del perm
    if len(cols) == 1:
        stacked = cols[0].reshape(-1, 1)
    else:
        stacked = np.stack(cols, axis=1)
    del cols
    uniq, vals = kflat.collapse_uniform(stacked, order)
    del stacked
    extra = {n: np.ascontiguousarray(vals[:, i]) for i, n in enumerate(names) if i > 0}
    return uniq, np.ascontiguousarray(vals[:, 0]), extra, 2**order


def _build(t: _Table, raw: bytes, source: str, cfg: SkyMapConfig, flat: FlatCells | None = None) -> SkyMap:
    h = t.header
    ordering = str(h.get("ORDERING", "") or "").strip().upper()
    has_uniq = t.find("UNIQ") is not None
    nside: int | None = None
    if ordering == "NUNIQ" or (has_uniq and ordering in ("", "NUNIQ")):
        uniq, dens, extra, cells = _multiorder(t, source)
        ordering = "NUNIQ"
    elif ordering in ("NESTED", "RING"):
        if str(h.get("INDXSCHM", "IMPLICIT")).strip().upper() == "EXPLICIT" and not has_uniq:
            raise UnsupportedSkyMapError(
                "partial-sky (INDXSCHM=EXPLICIT) flat maps are not supported",
                source=source,
                hint="convert it to a multi-order map with ligo-skymap-flatten's inverse, "
                "ligo-skymap-unflatten",
            )
        if flat is not None:  # collapsed while streaming (skymaps.flatstream)
            uniq, dens, extra, nside = flat.uniq, flat.probdensity, flat.extra, flat.nside
        else:
            uniq, dens, extra, nside = _flat(t, source, ordering)
        code, _, *cells_l = khp.prepare_cells(uniq)
        if code:  # pragma: no cover - the collapse emits a valid tiling
            raise InvalidCellsError("internal error: collapsed cells are not a tiling", source=source)
        cells = tuple(cells_l)
    else:
        raise UnsupportedSkyMapError(
            f"ORDERING is {ordering or 'missing'}; expected NUNIQ, NESTED or RING",
            source=source,
            hint="is this a HEALPix sky map?",
        )
    present = [c for c in _DIST_COLUMNS if c in extra]
    if present and len(present) != len(_DIST_COLUMNS):
        missing = next(c for c in _DIST_COLUMNS if c not in extra)
        raise MissingColumnError(f"{', '.join(present)} without {missing}", source=source, column=missing,
                                 hint="a distance layer needs DISTMU, DISTSIGMA and DISTNORM together")
    order, ipix, ranges, by_start = cells
    prob = kcred.cell_probabilities(order, dens)
    total = float(prob.sum())
    warn = _check_norm(total, cfg, source, "PROBDENSITY" if ordering == "NUNIQ" else "PROB")
    max_order = int(order.max()) if order.size else 0
    mocorder = h.get("MOCORDER")
    moc_order = max(max_order, int(mocorder)) if isinstance(mocorder, int) and 0 <= mocorder <= 29 else max_order
    instr = _str_or_none(h.get("INSTRUME"))
    meta = SkyMapMeta(
        source=source,
        object_id=_str_or_none(h.get("OBJECT")),
        event_time=_str_or_none(h.get("DATE-OBS")),
        event_mjd=_event_mjd(h, source),
        instruments=tuple(s.strip() for s in instr.split(",") if s.strip()) if instr else (),
        creator=_str_or_none(h.get("CREATOR")),
        origin=_str_or_none(h.get("ORIGIN")),
        distmean=_float_or_none(h.get("DISTMEAN")),
        diststd=_float_or_none(h.get("DISTSTD")),
        ordering=ordering,
        nside=nside,
        moc_order=moc_order,
        prob_sum=total,
        warnings=warn,
    )
    return SkyMap(
        uniq=uniq,
        probdensity=dens,
        distmu=extra.get("DISTMU"),
        distsigma=extra.get("DISTSIGMA"),
        distnorm=extra.get("DISTNORM"),
        meta=meta,
        order=order,
        ipix=ipix,
        ranges=ranges,
        by_start=by_start,
        prob=prob,
        raw=raw,
    )


def read_skymap(
    source: SkyMapSource,
    *,
    name: str | None = None,
    config: SkyMapConfig | None = None,
    reader: str = "auto",
) -> SkyMap:
    """Read an LVK HEALPix sky map.

    Parameters
    ----------
    source : path, bytes or binary file object
        FITS, optionally gzip-compressed: a multi-order NUNIQ table (32- or
        64-bit UNIQ) or a flat NESTED / RING map (``PROB`` or
        ``PROBABILITY``, scalar or vector columns).
    name : str, optional
        Name to use in messages for bytes and file objects.
    config : SkyMapConfig, optional
        Tolerances; the configured defaults when omitted.
    reader : {"auto", "fast", "astropy"}
        ``auto`` maps well-formed tables directly and falls back to astropy
        for anything unusual; the other two force one path (for tests).

    Returns
    -------
    SkyMap

    Raises
    ------
    CorruptSkyMapError, MissingColumnError, InvalidValueError,
    InvalidCellsError, NormalizationError, UnsupportedSkyMapError
        All :class:`gwfollow.errors.SkyMapError`, naming the source and column.

    Examples
    --------
    >>> from gwfollow import read_skymap
    >>> from gwfollow.skymaps.simulate import simulated_skymap_bytes
    >>> sm = read_skymap(simulated_skymap_bytes(seed=1))
    >>> sm.meta.ordering, sm.has_distance
    ('NUNIQ', True)
    """
    cfg = config or packaged_defaults().skymap
    raw, src = _read_source(source, name)
    limit = int(cfg.max_size_mib * 2**20)
    if reader not in ("auto", "fast", "astropy"):
        raise ValueError(f"reader must be auto, fast or astropy, not {reader!r}")
    if raw[:2] == b"\x1f\x8b":
        if reader == "astropy":
            data = b"".join(inflate_chunks(raw, src, limit))
        else:
            # A flat NESTED map is collapsed while it is inflated; anything else comes back as bytes.
            got = read_gzip_flat(raw, src, limit)
            if isinstance(got, FlatCells):
                return _build(_Table(got.header, got.names, {}), raw, src, cfg, flat=got)
            data = got
    else:
        data = raw
    if len(data) > limit:
        raise SkyMapError(
            f"larger than {cfg.max_size_mib:g} MiB",
            source=src,
            hint="raise skymap.max_size_mib in the configuration if this map is genuine",
        )
    table = None
    if reader in ("auto", "fast"):
        try:
            table = _table_fast(data, src)
        except FastPathUnsupported as exc:
            if reader == "fast":
                raise UnsupportedSkyMapError(f"fast reader cannot map this table ({exc})", source=src) from None
    if table is None:
        table = _table_astropy(data, src)
    return _build(table, raw, src, cfg)


def write_skymap(skymap: SkyMap, path: str | os.PathLike[str]) -> None:
    """Write a sky map as an LVK multi-order FITS file (ligo.skymap's writer)."""
    # ligo.skymap is heavy (seconds to import) and needed only here.
    from ligo.skymap.io.fits import write_sky_map

    cols: dict[str, Any] = {"UNIQ": skymap.uniq, "PROBDENSITY": skymap.probdensity}
    if skymap.has_distance:
        cols.update(DISTMU=skymap.distmu, DISTSIGMA=skymap.distsigma, DISTNORM=skymap.distnorm)
    t = Table(cols)
    t["PROBDENSITY"].unit = "sr-1"
    m = skymap.meta
    if m.object_id:
        t.meta["objid"] = m.object_id
    if m.event_mjd is not None:

        t.meta["gps_time"] = Time(m.event_mjd, format="mjd", scale="utc").gps
    if m.instruments:
        t.meta["instruments"] = set(m.instruments)
    if m.creator:
        t.meta["creator"] = m.creator
    if m.distmean is not None:
        t.meta["distmean"] = m.distmean
        t.meta["diststd"] = m.diststd
    write_sky_map(str(path), t, moc=True)


__all__ = ["SkyMap", "SkyMapMeta", "read_skymap", "write_skymap", "SkyMapSource"]
