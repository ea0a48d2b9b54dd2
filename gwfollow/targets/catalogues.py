"""Galaxy catalogues: local tables, the embedded OpenNGC default, a sky index.

A :class:`Catalog` holds plain arrays — positions in degrees, luminosity
distance in Mpc, apparent B and K magnitudes — plus a sorted depth-29
HEALPix index built once (:meth:`Catalog.index`), so that each alert only
touches the galaxies inside its region (coarse), before the kernels filter
and rank them (fine).

Column names are recognised without configuration (``ra``/``RAJ2000``/
``RA_ICRS``..., ``dec``/``DEJ2000``..., ``dist``/``Dist``/``distance``/
``d_L``/``distmpc`` in Mpc, ``z``/``redshift``/``z_best``, ``Bmag``/``magb``,
``Kmag``/``magk``, ``id``/``name``/``GWGC``/``PGC``...); anything else is
mapped explicitly (``columns={"ra": "RA_deg", ...}``).  Distances missing
but redshifts present are derived with astropy's Planck18 cosmology.  Rows
without a usable position are counted and reported, never silently dropped.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq
from astropy import units as u
from astropy.coordinates import Angle
from astropy.cosmology import Planck18
from astropy.table import Table
from pyongc import ongc

from gwfollow.errors import CatalogError
from gwfollow.kernels.healpix import lonlat_deg_to_nest
from gwfollow.kernels.sort import sort_nonneg_i64_inplace

ALIASES: dict[str, tuple[str, ...]] = {
    "ra": ("ra", "raj2000", "ra_icrs", "ra_deg", "radeg", "_raj2000", "alpha", "ra_d"),
    "dec": ("dec", "dej2000", "decj2000", "de_icrs", "dec_deg", "decdeg", "_dej2000", "delta", "dec_d"),
    "dist": ("dist", "distance", "d_l", "dl", "distmpc", "dist_mpc", "lum_dist", "d_lum", "dist_mpc_"),
    "z": ("z", "redshift", "z_best", "zhelio", "z_cmb", "zcmb"),
    "bmag": ("bmag", "magb", "b", "btc", "b_mag", "mag_b"),
    "kmag": ("kmag", "magk", "k", "k_mag", "mag_k", "kmag_2mass"),
    "id": ("id", "name", "objname", "galaxy", "glade+", "glade_no", "gladeid", "glade", "gwgc", "pgc",
           "hyperleda", "2mass"),
}


@dataclass(frozen=True, eq=False)
class Catalog:
    """A galaxy catalogue as arrays.

    Attributes
    ----------
    name, version : str
        For provenance.
    ids : ndarray of str
    ra, dec : ndarray of float64
        ICRS degrees.
    dist : ndarray of float64
        Luminosity distance in Mpc (NaN when unknown).
    bmag, kmag : ndarray of float64
        Apparent magnitudes (NaN when unknown).
    dropped : int
        Rows of the source without a usable position (not included).
    notes : tuple of str
        How columns were recognised, distances derived, rows dropped.
    """

    name: str
    version: str
    ids: npt.NDArray[Any]
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]
    dist: npt.NDArray[np.float64]
    bmag: npt.NDArray[np.float64]
    kmag: npt.NDArray[np.float64]
    dropped: int = 0
    notes: tuple[str, ...] = ()
    _index: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.ra.shape[0])

    @property
    def has_index(self) -> bool:
        """True once :meth:`index` has been built."""
        return "pix" in self._index

    def index(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(sorted depth-29 pixels, row order): the sky index, built once.

        Memory: two int64 arrays (16 bytes per galaxy), i.e. 0.67x the
        three float64 position/distance columns; 32 bytes per galaxy
        while it is built (the pixels are sorted in place).
        """
        if "pix" not in self._index:

            pix, order = sort_nonneg_i64_inplace(lonlat_deg_to_nest(29, self.ra, self.dec))
            self._index["pix"] = pix
            self._index["order"] = order
        return self._index["pix"], self._index["order"]

    def subset(self, rows: npt.NDArray[np.int64]) -> Catalog:
        """The catalogue restricted to ``rows``."""
        return Catalog(self.name, self.version, self.ids[rows], self.ra[rows], self.dec[rows],
                       self.dist[rows], self.bmag[rows], self.kmag[rows], 0, self.notes)

    @classmethod
    def from_arrays(cls, ra: Any, dec: Any, dist: Any = None, *, ids: Any = None, bmag: Any = None,
                    kmag: Any = None, name: str = "arrays", version: str = "") -> Catalog:
        """Build a catalogue from arrays (degrees, Mpc), dropping unusable positions."""
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        n = ra.shape[0]

        def col(v: Any) -> np.ndarray:
            return np.full(n, np.nan) if v is None else np.asarray(v, dtype=np.float64)

        ids_a = np.asarray(ids) if ids is not None else np.arange(n).astype(str)
        ok = np.isfinite(ra) & np.isfinite(dec) & (dec >= -90) & (dec <= 90)
        d = col(dist)
        d = np.where(d > 0, d, np.nan)
        dropped = int((~ok).sum())
        notes = (f"{dropped} row(s) without a usable position were left out",) if dropped else ()
        return cls(name, version, ids_a[ok], np.mod(ra[ok], 360.0), dec[ok], d[ok], col(bmag)[ok],
                   col(kmag)[ok], dropped, notes)


def find_column(colnames: list[str], key: str, mapping: dict[str, str], check: bool = True) -> str | None:
    """The column playing ``key`` (ra, dec, dist, z, bmag, kmag, id): the explicit
    mapping first, else the first recognised alias (case-insensitive)."""
    if key in mapping:
        if check and mapping[key] not in colnames:
            raise CatalogError(f"column {mapping[key]!r} (for {key}) not in the table "
                               f"(columns: {', '.join(colnames)})")
        return mapping[key]
    lower = {c.lower().strip(): c for c in colnames}
    for alias in ALIASES[key]:
        if alias in lower:
            return lower[alias]
    return None


def clean_strings(values: np.ndarray) -> np.ndarray:
    """Identifiers as stripped Python strings (masked / missing entries as "")."""
    out = np.array([str(v) for v in values], dtype=object)
    for i, s in enumerate(out):
        if s.startswith(("b'", 'b"')) and s.endswith(("'", '"')):
            s = s[2:-1]
        out[i] = "" if s in ("<NA>", "--", "nan", "None") else s
    return out.astype(str)


def numeric_column(col: Any) -> np.ndarray:
    """A column as float64, masked / non-numeric entries as NaN."""
    a = np.ma.asarray(col)
    if a.dtype.kind in "fiu":
        return np.ma.filled(a.astype(np.float64), np.nan)
    out = np.full(a.shape[0], np.nan)
    for i, v in enumerate(clean_strings(np.ma.filled(a.astype(str), ""))):
        try:
            out[i] = float(v)
        except ValueError:
            pass
    return out


def parse_angles(ra_col: Any, dec_col: Any) -> tuple[np.ndarray, np.ndarray]:
    ra = numeric_column(ra_col)
    dec = numeric_column(dec_col)
    if np.isnan(ra).all() and len(ra):
        # Sexagesimal strings (hh:mm:ss, dd:mm:ss), as in OpenNGC.

        ra_s = clean_strings(np.ma.filled(np.ma.asarray(ra_col).astype(str), ""))
        dec_s = clean_strings(np.ma.filled(np.ma.asarray(dec_col).astype(str), ""))
        ra = np.full(len(ra_s), np.nan)
        dec = np.full(len(dec_s), np.nan)
        for i, (a, d) in enumerate(zip(ra_s, dec_s)):
            if a and d:
                try:
                    ra[i] = Angle(a, unit=u.hourangle).deg
                    dec[i] = Angle(d, unit=u.deg).deg
                except (ValueError, TypeError):
                    pass
    return ra, dec


def _ids(table: Any, names: list[str], mapping: dict[str, str]) -> np.ndarray | None:
    """Per row, the first non-empty identifier among the id-like columns."""
    if "id" in mapping:
        cols = [find_column(names, "id", mapping)]
    else:
        lower = {c.lower().strip(): c for c in names}
        cols = [lower[a] for a in ALIASES["id"] if a in lower]
    if not cols:
        return None
    return first_ids([(c, clean_strings(np.ma.filled(np.ma.asarray(table[c]).astype(str), ""))) for c in cols],
                     len(table))


def first_ids(columns: list[tuple[str, np.ndarray]], n: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row, the first non-empty value among the id-like ``(name, strings)``
    columns (prefixed ``GLADE+:``/``PGC:`` when not from the first column),
    else ``row{i}`` with ``i`` the row in the source table (``rows``, default
    0..n-1)."""
    out = np.array([""] * n, dtype=object)
    first = columns[0][0] if columns else None
    for c, vals in columns:
        for i in range(n):
            v = vals[i].strip()
            if not out[i] and v and v != "---":
                out[i] = v if c == first else f"{c}:{v}" if c.lower() in ("glade+", "pgc") else v
    for i in range(n):
        if not out[i]:
            out[i] = f"row{rows[i] if rows is not None else i}"
    return out.astype(str)


def fill_distances(dist: npt.NDArray[np.float64], z: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], int]:
    """``dist`` with the missing (non-positive or NaN) distances derived from
    ``z`` where it is usable, and how many were filled."""
    need = ~(dist > 0) & np.isfinite(z) & (z > 0)
    if not need.any():
        return dist, 0
    dist = dist.copy()
    dist[need] = distance_from_redshift(z[need])
    return dist, int(need.sum())


def distance_from_redshift(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Luminosity distance (Mpc) from redshift with astropy's Planck18 cosmology."""

    out = np.full(z.shape, np.nan)
    ok = np.isfinite(z) & (z > 0)
    if ok.any():
        out[ok] = Planck18.luminosity_distance(z[ok]).to_value("Mpc")
    return out


def catalog_from_table(table: Any, *, name: str, version: str = "", columns: dict[str, str] | None = None) -> Catalog:
    """Build a :class:`Catalog` from an astropy Table, recognising columns."""
    mapping = columns or {}
    for k in mapping:
        if k not in ALIASES:
            raise CatalogError(f"unknown column role {k!r}; use one of {', '.join(ALIASES)}")
    names = list(table.colnames)
    c_ra = find_column(names, "ra", mapping)
    c_dec = find_column(names, "dec", mapping)
    if c_ra is None or c_dec is None:
        raise CatalogError(
            f"{name}: cannot find the RA/Dec columns (columns: {', '.join(names)})",
            hint="map them explicitly, e.g. --columns ra=RA_deg,dec=DEC_deg")
    notes = [f"ra={c_ra}", f"dec={c_dec}"]
    ra, dec = parse_angles(table[c_ra], table[c_dec])
    c_dist = find_column(names, "dist", mapping)
    dist = numeric_column(table[c_dist]) if c_dist else np.full(len(ra), np.nan)
    if c_dist:
        notes.append(f"dist={c_dist} (Mpc)")
    c_z = find_column(names, "z", mapping)
    if c_z:
        dist, filled = fill_distances(dist, numeric_column(table[c_z]))
        if filled:
            notes.append(f"{filled} distance(s) from {c_z} with Planck18")
    c_b = find_column(names, "bmag", mapping)
    c_k = find_column(names, "kmag", mapping)
    ids = _ids(table, names, mapping)
    cat = Catalog.from_arrays(ra, dec, dist, ids=ids,
                              bmag=numeric_column(table[c_b]) if c_b else None,
                              kmag=numeric_column(table[c_k]) if c_k else None, name=name, version=version)
    return Catalog(cat.name, cat.version, cat.ids, cat.ra, cat.dec, cat.dist, cat.bmag, cat.kmag,
                   cat.dropped, tuple(notes) + cat.notes)


def read_catalog(path: str | os.PathLike[str], *, columns: dict[str, str] | None = None,
                 name: str | None = None) -> Catalog:
    """Read a local table: CSV (``,`` ``;`` or whitespace), VOTable, FITS, Parquet."""
    p = Path(path)
    t = read_table(p)
    return catalog_from_table(t, name=name or p.stem, version=f"file sha:{_sha_short(p)}", columns=columns)


def read_table(path: str | os.PathLike[str]):
    """A local table file (CSV, VOTable, FITS, Parquet) as an astropy Table."""

    p = Path(path)
    if not p.exists():
        raise CatalogError(f"{p}: no such file")
    suffix = "".join(p.suffixes[-2:]).lower()
    try:
        if suffix.endswith((".xml", ".vot", ".votable")):
            t = Table.read(p, format="votable")
        elif suffix.endswith((".fits", ".fit", ".fits.gz")):
            t = Table.read(p, format="fits")
        elif suffix.endswith(".parquet"):

            pt = pq.read_table(p)
            t = Table({name: pt.column(name).to_numpy(zero_copy_only=False) for name in pt.column_names})
        else:
            text = p.read_text(errors="replace")
            first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("#", "%"))), "")
            if ";" in first:
                t = Table.read(p, format="ascii.csv", delimiter=";", fast_reader=False)
            elif "," in first:
                t = Table.read(p, format="ascii.csv")
            else:
                t = Table.read(p, format="ascii.basic", comment=r"\s*[#%]")
    except CatalogError:
        raise
    except Exception as exc:  # astropy raises many kinds for bad tables
        raise CatalogError(f"{p}: cannot read the table ({exc})") from None
    return t


def _sha_short(p: Path) -> str:

    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@functools.cache
def openngc() -> Catalog:
    """The embedded default: the galaxies of OpenNGC (via the ``pyongc`` package).

    10,521 galaxies; 9,980 have a redshift, from which the luminosity
    distance is derived with Planck18.  OpenNGC is CC-BY-SA-4.0 (Mattia
    Verga et al.).
    """


    db = sqlite3.connect(f"file:{ongc.DBPATH}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT name, ra, dec, redshift, bmag, kmag FROM objects WHERE type = 'G'").fetchall()
    finally:
        db.close()
    names = np.array([r[0] for r in rows], dtype=str)
    ra = np.degrees(np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64))
    dec = np.degrees(np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64))
    z = np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=np.float64)
    bmag = np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64)
    kmag = np.array([np.nan if r[5] is None else r[5] for r in rows], dtype=np.float64)
    cat = Catalog.from_arrays(ra, dec, distance_from_redshift(z), ids=names, bmag=bmag, kmag=kmag,
                              name="OpenNGC", version=f"pyongc {ongc.version if hasattr(ongc, 'version') else ''} "
                              f"db {getattr(ongc, 'DBDATE', '')}".strip())
    return Catalog(cat.name, cat.version, cat.ids, cat.ra, cat.dec, cat.dist, cat.bmag, cat.kmag, cat.dropped,
                   ("OpenNGC galaxies (type G); distances from redshift with Planck18",) + cat.notes)


def load_catalog(name_or_path: str, *, columns: dict[str, str] | None = None) -> Catalog:
    """``openngc`` (the embedded default) or a path to a local table."""
    if name_or_path.lower() in ("openngc", "default"):
        return openngc()
    return read_catalog(name_or_path, columns=columns)


def parse_columns(text: str | None) -> dict[str, str]:
    """``ra=RA_deg,dec=DEC_deg,dist=D`` -> mapping (for ``--columns``)."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise CatalogError(f"--columns entry {part!r} is not role=column", hint="e.g. ra=RA_deg,dec=DEC_deg")
        k, v = part.split("=", 1)
        out[k.strip().lower()] = v.strip()
    return out
