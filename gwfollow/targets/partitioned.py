"""HEALPix-partitioned catalogues on disk (the HATS layout), pruned by MOCs.

A catalogue too large for one process is cut into partitions, each one
HEALPix cell of some order holding at most ``max_rows`` rows, one Parquet
file per partition, rows sorted by their depth-29 NESTED pixel.  The layout
is that of HATS (Hierarchical Adaptive Tiling Scheme; LINCC Frameworks,
https://hats.readthedocs.io, format version 1.0), which ``hats`` and ``lsdb``
read::

    DIR/hats.properties          catalogue name, row count, column roles
    DIR/partition_info.csv       Norder,Npix of every partition
    DIR/point_map.fits           row counts per pixel of the histogram order
    DIR/dataset/_common_metadata the Arrow schema
    DIR/dataset/_metadata        every file's row groups and statistics
    DIR/dataset/Norder=K/Dir=D/Npix=N.parquet

with ``D = (N // 10000) * 10000`` and the depth-29 pixel of each row in the
column ``_healpix_29``.  gwfollow adds ``_source_row``, the row's position in
the table it was imported from: ties rank in source order and galaxies
without an identifier are named as in the source.

Search is coarse then fine: the region's MOC selects the partitions that
overlap it and, from their Parquet statistics, the row groups; the rows'
pixels (sorted) select the rows; the kernels evaluate them.  A ranking is
computed per partition (on a Dask cluster if one is given) and merged into
the ranking :func:`gwfollow.targets.rank.rank_galaxies` gives for the same rows read
from one file: same galaxies, same order, same numbers bit for bit.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from astropy.io import fits

from gwfollow.errors import CatalogError
from gwfollow.kernels import rank as krank
from gwfollow.kernels.healpix import lonlat_to_nest
from gwfollow.kernels.rank import select_sorted
from gwfollow.kernels.sort import argsort_nonneg_i64
from gwfollow.regions.moc import credible_ranges
from gwfollow.targets import rank as grank
from gwfollow.targets.catalogues import (
    ALIASES,
    Catalog,
    clean_strings,
    fill_distances,
    find_column,
    first_ids,
    numeric_column,
    parse_angles,
    read_table,
)
from gwfollow.targets.rank import (
    RankedGalaxies,
    check_options,
    limbs_to_float,
    order_ranking,
    ranking_provenance,
)
from gwfollow.version import __version__

HEALPIX_COLUMN = "_healpix_29"
ROW_COLUMN = "_source_row"
DEPTH = 29

#: ``progress(stage, done, total)``
ProgressFn = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Partition:
    """One partition: the HEALPix cell ``pixel`` at ``order``."""

    order: int
    pixel: int

    @property
    def start(self) -> int:
        """First depth-29 pixel of the cell."""
        return self.pixel << (2 * (DEPTH - self.order))

    @property
    def stop(self) -> int:
        """One past the last depth-29 pixel of the cell."""
        return (self.pixel + 1) << (2 * (DEPTH - self.order))

    def relpath(self, suffix: str = ".parquet") -> str:
        """The file of the partition, relative to the catalogue directory."""
        return f"dataset/Norder={self.order}/Dir={(self.pixel // 10000) * 10000}/Npix={self.pixel}{suffix}"


def plan_partitions(counts: npt.NDArray[np.int64], histogram_order: int, max_rows: int,
                    lowest_order: int = 0) -> list[Partition]:
    """Cut the sky into partitions of at most ``max_rows`` rows.

    Top down (as HATS importers do): a non-empty cell of ``lowest_order``
    or finer becomes a partition when it holds at most ``max_rows`` rows
    (or is at ``histogram_order``, which cannot be cut further); otherwise
    its non-empty children are considered.  Empty cells get no partition.

    Parameters
    ----------
    counts : ndarray of int64, shape (12 * 4**histogram_order,)
        Rows per NESTED pixel at ``histogram_order``.
    """
    if counts.shape[0] != 12 * 4**histogram_order:
        raise CatalogError(f"histogram has {counts.shape[0]} pixels, not 12 * 4**{histogram_order}")
    if max_rows < 1:
        raise CatalogError("max_rows must be >= 1")
    if not 0 <= lowest_order <= histogram_order:
        raise CatalogError(f"lowest order {lowest_order} must be in 0..{histogram_order}")
    by_order = {histogram_order: counts}
    for o in range(histogram_order - 1, lowest_order - 1, -1):
        by_order[o] = by_order[o + 1].reshape(-1, 4).sum(axis=1)
    out: list[Partition] = []
    active = np.flatnonzero(by_order[lowest_order] > 0)
    for o in range(lowest_order, histogram_order + 1):
        c = by_order[o][active]
        done = (c <= max_rows) | (o == histogram_order)
        out.extend(Partition(o, int(p)) for p in active[done])
        if o == histogram_order:
            break
        children = (active[~done][:, None] * 4 + np.arange(4)).ravel()
        active = children[by_order[o + 1][children] > 0]
    out.sort(key=lambda q: q.start)
    return out


def _read_properties(path: Path) -> dict[str, str]:
    """A Java properties file (``key=value``, ``#`` comments) as a dict."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s or s.startswith(("#", "!")):
            continue
        sep = min((i for i in (s.find("="), s.find(":")) if i > 0), default=-1)
        if sep < 0:
            continue
        out[s[:sep].strip()] = s[sep + 1:].strip().replace("\\:", ":").replace("\\=", "=").replace("\\\\", "\\")
    return out


def _write_properties(path: Path, title: str, values: dict[str, Any]) -> None:
    lines = [f"#{title}"] + [f"{k}={v}" for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def is_partitioned(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a HATS catalogue (or a HATS collection) directory."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("hats.properties", "properties", "collection.properties"))


# --------------------------------------------------------------------------- reading


@dataclass
class ScanStats:
    """What a search read: the pruning at work."""

    partitions_total: int = 0
    partitions_touched: int = 0
    row_groups_read: int = 0
    rows_read: int = 0
    rows_total: int = 0
    candidates: int = 0
    worker_peak_rss_mib: dict[str, float] = field(default_factory=dict)

    def add(self, other: dict[str, Any]) -> None:
        self.row_groups_read += other["row_groups_read"]
        self.rows_read += other["rows_read"]
        self.candidates += other["candidates"]
        w = other["worker"]
        self.worker_peak_rss_mib[w] = max(self.worker_peak_rss_mib.get(w, 0.0), other["peak_rss_mib"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "partitions_total": self.partitions_total, "partitions_touched": self.partitions_touched,
            "row_groups_read": self.row_groups_read, "rows_read": self.rows_read, "rows_total": self.rows_total,
            "candidates": self.candidates, "worker_peak_rss_mib": dict(self.worker_peak_rss_mib),
        }


class PartitionedCatalog:
    """A HATS catalogue directory, opened for region searches.

    Parameters
    ----------
    path : path-like
        The catalogue directory (with ``hats.properties``), or a HATS
        collection directory (its primary catalogue is used).
    columns : dict, optional
        Column roles (``ra``, ``dec``, ``dist``, ``z``, ``bmag``, ``kmag``,
        ``id``) for columns that are not recognised by name.
    """

    def __init__(self, path: str | os.PathLike[str], columns: dict[str, str] | None = None) -> None:
        root = Path(path).expanduser().resolve()  # workers of a cluster see absolute paths
        if not root.is_dir():
            raise CatalogError(f"{root}: not a directory", hint="make one with: gwfollow catalog import FILE --out DIR")
        if (root / "collection.properties").is_file() and not (root / "hats.properties").is_file():
            coll = _read_properties(root / "collection.properties")
            primary = coll.get("hats_primary_table_url")
            if not primary:
                raise CatalogError(f"{root}/collection.properties names no hats_primary_table_url")
            root = root / primary
        props_file = next((root / f for f in ("hats.properties", "properties") if (root / f).is_file()), None)
        if props_file is None:
            raise CatalogError(f"{root}: no hats.properties; not a HATS catalogue",
                               hint="make one with: gwfollow catalog import FILE --out DIR")
        self.path = root
        self.properties = _read_properties(props_file)
        self.name = self.properties.get("obs_collection", root.name)
        self.healpix_column = self.properties.get("hats_col_healpix", HEALPIX_COLUMN)
        hp_order = self.properties.get("hats_col_healpix_order", str(DEPTH))
        if not hp_order.strip().isdigit():
            raise CatalogError(f"{props_file}: hats_col_healpix_order {hp_order!r} is not an order")
        if int(hp_order) != DEPTH:
            raise CatalogError(f"{root}: pixel column {self.healpix_column} is of order "
                               f"{self.properties['hats_col_healpix_order']}; gwfollow needs order 29",
                               hint="re-import the table with: gwfollow catalog import")
        self.suffix = self.properties.get("hats_npix_suffix", ".parquet")
        self.partitions = self._read_partitions()
        self.starts = np.array([q.start for q in self.partitions], dtype=np.int64)
        self.stops = np.array([q.stop for q in self.partitions], dtype=np.int64)
        if np.any(self.starts[1:] < self.stops[:-1]):
            raise CatalogError(f"{root}: partitions overlap (partition_info.csv is inconsistent)")
        self.schema = self._read_schema()
        names = list(self.schema.names)
        if self.healpix_column not in names:
            raise CatalogError(f"{root}: no {self.healpix_column} column in the schema")
        mapping = dict(columns or {})
        for role, key in (("ra", "hats_col_ra"), ("dec", "hats_col_dec")):
            if role not in mapping and self.properties.get(key) in names:
                mapping[role] = self.properties[key]
        for role in ALIASES:  # roles mapped at import (gwfollow catalog import --columns)
            col = self.properties.get(f"gwfollow_col_{role}")
            if role not in mapping and col in names:
                mapping[role] = col
        self.roles = {k: find_column(names, k, mapping) for k in ALIASES}
        if self.roles["ra"] is None or self.roles["dec"] is None:
            raise CatalogError(f"{root}: cannot find the RA/Dec columns (columns: {', '.join(names)})",
                               hint="map them explicitly, e.g. --columns ra=RA_deg,dec=DEC_deg")
        lower = {c.lower().strip(): c for c in names}
        self.id_columns = ([mapping["id"]] if "id" in mapping else
                           [lower[a] for a in ALIASES["id"] if a in lower])
        self.has_source_row = ROW_COLUMN in names
        nrows = self.properties.get("hats_nrows")
        self.nrows = int(nrows) if nrows and nrows.isdigit() else self._count_rows()
        self.version = (f"HATS {self.properties.get('hats_version', '')} "
                        f"{self.properties.get('hats_creation_date', '')}".strip())

    def _read_partitions(self) -> list[Partition]:
        info = self.path / "partition_info.csv"
        parts: list[Partition] = []
        if info.is_file():
            lines = [ln.strip() for ln in info.read_text().splitlines() if ln.strip()]
            head = [h.strip() for h in lines[0].split(",")] if lines else []
            if "Norder" not in head or "Npix" not in head:
                raise CatalogError(f"{info}: header must name Norder and Npix (got {lines[:1]})")
            io_, ip = head.index("Norder"), head.index("Npix")
            for k, ln in enumerate(lines[1:], start=2):
                f = ln.split(",")
                try:
                    parts.append(Partition(int(f[io_]), int(f[ip])))
                except (ValueError, IndexError):
                    raise CatalogError(f"{info}, line {k}: cannot read {ln!r}") from None
        else:
            for f in sorted((self.path / "dataset").glob(f"Norder=*/Dir=*/Npix=*{self.suffix}")):
                parts.append(Partition(int(f.parent.parent.name.split("=")[1]),
                                       int(f.name[len("Npix="):-len(self.suffix)])))
        if not parts:
            raise CatalogError(f"{self.path}: no partitions")
        for q in parts:
            if not 0 <= q.order <= DEPTH or not 0 <= q.pixel < 12 * 4**q.order:
                raise CatalogError(f"{self.path}: partition Norder={q.order} Npix={q.pixel} is not a HEALPix cell")
        return sorted(parts, key=lambda q: q.start)

    def _count_rows(self) -> int:
        """Rows from ``dataset/_metadata`` (or the files' footers) when the properties omit them."""

        meta = self.path / "dataset" / "_metadata"
        try:
            if meta.is_file():
                return int(pq.read_metadata(meta).num_rows)
            return sum(int(pq.read_metadata(self.file(q)).num_rows) for q in self.partitions)
        except Exception as exc:  # pyarrow raises several kinds
            raise CatalogError(f"{self.path}: cannot count the rows ({exc})") from None

    def _read_schema(self):

        for name in ("_common_metadata", "_metadata"):
            f = self.path / "dataset" / name
            if f.is_file():
                try:
                    return pq.read_schema(f)
                except Exception as exc:  # pyarrow raises several kinds
                    raise CatalogError(f"{f}: cannot read the schema ({exc})") from None
        first = self.path / self.partitions[0].relpath(self.suffix)
        try:
            return pq.read_schema(first)
        except Exception as exc:
            raise CatalogError(f"{first}: cannot read the schema ({exc})") from None

    def __len__(self) -> int:
        return self.nrows

    def file(self, part: Partition) -> Path:
        """The Parquet file of ``part``."""
        return self.path / part.relpath(self.suffix)

    def touched(self, region: npt.NDArray[np.int64] | None) -> npt.NDArray[np.int64]:
        """Indices of the partitions overlapping canonical depth-29 ``region`` (coarse)."""
        if region is None:
            return np.arange(len(self.partitions))
        if region.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        # The first region range ending after a partition's start must begin before its stop.
        k = np.searchsorted(region[:, 1], self.starts, side="right")
        ok = k < region.shape[0]
        ok[ok] = region[k[ok], 0] < self.stops[ok]
        return np.flatnonzero(ok)

    def read_columns(self) -> list[str]:
        """The columns a ranking reads (the roles found, the identifiers, the pixel)."""
        cols = [self.healpix_column]
        cols += [c for k, c in self.roles.items() if c is not None and k != "id" and c not in cols]
        cols += [c for c in self.id_columns if c not in cols]
        if self.has_source_row:
            cols.append(ROW_COLUMN)
        return cols

    def read_region(self, region: npt.NDArray[np.int64] | None) -> tuple[Catalog, ScanStats]:
        """The rows inside ``region`` as a :class:`Catalog` in sky order (its index prebuilt).

        Reads only the touched partitions and row groups.  The catalogue's
        columns are converted as :func:`gwfollow.targets.catalogues.catalog_from_table`
        converts those of a single file.
        """
        stats = ScanStats(partitions_total=len(self.partitions), rows_total=self.nrows)
        touched = self.touched(region)
        stats.partitions_touched = int(touched.size)
        pieces = []
        for i in touched:
            t, st = read_partition(self.file(self.partitions[i]), region, self.read_columns(), self.healpix_column)
            stats.add(st)
            pieces.append(t)
        if pieces:

            table = pa.concat_tables(pieces)
        else:
            table = self.schema.empty_table().select(self.read_columns())
        cat = self.catalog_of(table)
        return cat, stats

    def catalog_of(self, table: Any) -> Catalog:
        """Arrow rows (in sky order) of this catalogue's partitions -> Catalog, with
        conversions and ids as for a single file."""
        r = self.roles
        ra, dec = parse_angles(_np(table, r["ra"]), _np(table, r["dec"]))
        dist = _distance(table, r)
        n = ra.shape[0]
        ids = _ids_of(table, self.id_columns, self.has_source_row)
        bmag = _np(table, r["bmag"]) if r["bmag"] else np.full(n, np.nan)
        kmag = _np(table, r["kmag"]) if r["kmag"] else np.full(n, np.nan)
        cat = Catalog.from_arrays(ra, dec, dist, ids=ids, bmag=_num(bmag), kmag=_num(kmag), name=self.name,
                                  version=self.version)
        pix = table.column(self.healpix_column).to_numpy()
        if cat.dropped == 0:
            cat._index["pix"] = pix
            cat._index["order"] = np.arange(n, dtype=np.int64)
        return cat


def _np(table: Any, name: str | None) -> np.ndarray:
    col = table.column(name)
    try:
        return col.to_numpy()
    except Exception:  # nulls in an integer or string column
        return np.asarray(col.to_pylist(), dtype=object)


def _num(a: np.ndarray) -> np.ndarray:

    return numeric_column(a) if a.dtype.kind not in "f" else a.astype(np.float64, copy=False)


def _distance(table: Any, roles: dict[str, str | None]) -> np.ndarray:
    """Luminosity distance as a single-file catalogue derives it (z with Planck18 where missing)."""
    n = table.num_rows
    dist = _num(_np(table, roles["dist"])) if roles["dist"] else np.full(n, np.nan)
    if roles["z"]:
        dist, _ = fill_distances(dist, _num(_np(table, roles["z"])))
    return dist


def _ids_of(table: Any, id_columns: list[str], has_row: bool) -> np.ndarray:
    """Identifiers as a single-file catalogue makes them (``row{i}`` from the source row)."""
    cols = []
    for c in id_columns:
        # Converted as the single-file reader converts them (an integer column
        # with nulls becomes float, as there), so the ids are the same strings.
        cols.append((c, clean_strings(table.column(c).to_numpy(zero_copy_only=False))))
    return first_ids(cols, table.num_rows, table.column(ROW_COLUMN).to_numpy() if has_row else None)


def read_partition(path: Path, region: npt.NDArray[np.int64] | None, columns: list[str],
                   healpix_column: str = HEALPIX_COLUMN) -> tuple[Any, dict[str, Any]]:
    """Rows of one partition file inside ``region`` (sorted by pixel), and what was read.

    Row groups whose pixel statistics miss the region are not read (their
    bytes never leave the disk); within those read, the sorted pixels
    select the rows.
    """


    try:
        pf = pq.ParquetFile(path)
        md = pf.metadata
        # Statistics are per Parquet leaf column (a struct has several): find the pixel's.
        j = next((i for i in range(md.num_columns) if md.schema.column(i).path == healpix_column), -1)
        groups = []
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(j).statistics if j >= 0 else None
            if region is not None and st is not None and st.has_min_max:
                k = np.searchsorted(region[:, 1], st.min, side="right")
                if k >= region.shape[0] or region[k, 0] > st.max:
                    continue
            groups.append(g)
        table = pf.read_row_groups(groups, columns=columns, use_threads=False) if groups else \
            pf.schema_arrow.empty_table().select(columns)
    except CatalogError:
        raise
    except Exception as exc:  # pyarrow: ArrowInvalid, OSError, KeyError for missing columns...
        raise CatalogError(f"{path}: cannot read the partition ({type(exc).__name__}: {exc})",
                           hint="re-import the catalogue: gwfollow catalog import FILE --out DIR") from None
    rows_read = table.num_rows
    pix = table.column(healpix_column).to_numpy()
    if pix.size > 1 and np.any(pix[1:] < pix[:-1]):
        order = argsort_nonneg_i64(pix)
        table = table.take(order)
        pix = pix[order]
    if region is not None:
        table = table.take(select_sorted(pix, region))
    return table, {"row_groups_read": len(groups), "rows_read": rows_read, "candidates": table.num_rows,
                   "worker": f"{os.uname().nodename}:{os.getpid()}", "peak_rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB) since start or :func:`reset_peak_rss`."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Restart this process's peak-memory count (Linux ``clear_refs``), so that
    the next measurement covers one step only.  False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class _MapArrays:
    """The sky-map arrays the density kernels need (small; shipped to workers)."""

    starts: np.ndarray
    ends: np.ndarray
    rows: np.ndarray
    probdensity: np.ndarray
    distmu: np.ndarray
    distsigma: np.ndarray
    distnorm: np.ndarray
    has_distance: bool

    @classmethod
    def of(cls, skymap: Any) -> _MapArrays:
        bs = skymap.by_start
        e = np.empty(0)
        d = skymap.has_distance
        return cls(skymap.ranges[bs, 0].copy(), skymap.ranges[bs, 1].copy(), bs, skymap.probdensity,
                   skymap.distmu if d else e, skymap.distsigma if d else e, skymap.distnorm if d else e, d)


def rank_partition(cat: PartitionedCatalog, index: int, region: npt.NDArray[np.int64] | None, m: _MapArrays,
                   weighting: str | None, limit: int | None) -> dict[str, Any]:
    """Rank one partition: the candidates that can reach the merged top ``limit``.

    Returns the kept candidates (a :class:`Catalog` in sky order with their
    2-D / 3-D densities and raw scores), the exact sum of all raw scores of
    the partition as fixed-point limbs (for the merged normalisation) and
    what was read.
    """

    table, st = read_partition(cat.file(cat.partitions[index]), region, cat.read_columns(), cat.healpix_column)
    pix = table.column(cat.healpix_column).to_numpy()
    dist = _distance(table, cat.roles)
    dist = np.where(dist > 0, dist, np.nan)
    cells = krank.locate_sorted(pix, m.starts, m.ends, m.rows)
    p2, p3 = krank.posterior_densities(cells, dist, m.probdensity, m.distmu, m.distsigma, m.distnorm,
                                       m.has_distance)
    mag = None
    if weighting:
        col = cat.roles["bmag" if weighting == "B" else "kmag"]
        mag = _num(_np(table, col)) if col else np.full(pix.shape[0], np.nan)
    raw = grank.raw_scores(p2, p3, m.has_distance, mag, dist)
    partials = krank.exact_sum_limbs(raw)
    keep = grank.keep_for_merge(raw, p2, limit)
    kept = cat.catalog_of(table.take(keep))
    st["peak_rss_mib"] = peak_rss_mib()  # after the ranking, not just the read
    return {"catalog": kept, "p2": p2[keep], "p3": p3[keep], "raw": raw[keep], "partials": partials,
            "stats": st}


def rank_partitioned(
    skymap: Any,
    catalog: PartitionedCatalog | str | os.PathLike[str],
    *,
    region: npt.NDArray[np.int64] | None = None,
    level: float | None = 0.999,
    weighting: str | None = None,
    limit: int | None = None,
    client: Any = None,
    progress: ProgressFn | None = None,
):
    """Rank the galaxies of a partitioned catalogue, partition by partition.

    Each touched partition is ranked on its own (in this process, or as a
    task on the Dask ``client``'s workers); the partial rankings are merged.
    The result equals :func:`gwfollow.targets.rank.rank_galaxies` on a single file
    holding the same rows: the same galaxies in the same order with the same
    densities and scores, bit for bit (scores are normalised by the
    correctly rounded exact sum of all raw scores, whatever the grouping).

    Parameters
    ----------
    skymap : SkyMap
    catalog : PartitionedCatalog or path
    region, level, weighting, limit
        As for :func:`gwfollow.targets.rank.rank_galaxies`.
    client : dask.distributed.Client, optional
        Run the partitions as tasks on this cluster.
    progress : callable, optional
        ``progress("partitions", done, total)`` as partitions finish.

    Returns
    -------
    RankedGalaxies
        With ``scan``: partitions touched / total, row groups and rows
        read, candidates, seconds, peak RSS per worker (MiB).
    """

    check_options(weighting, limit)
    cat = catalog if isinstance(catalog, PartitionedCatalog) else PartitionedCatalog(catalog)
    if region is None and level is not None:
        region = credible_ranges(skymap, [level], "include")[0]
    m = _MapArrays.of(skymap)
    touched = cat.touched(region)
    stats = ScanStats(partitions_total=len(cat.partitions), partitions_touched=int(touched.size),
                      rows_total=cat.nrows)
    results: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()
    if client is None:
        for k, i in enumerate(touched):
            results[int(i)] = rank_partition(cat, int(i), region, m, weighting, limit)
            if progress:
                progress("partitions", k + 1, int(touched.size))
    elif touched.size:
        # Dask is heavy and optional: only --dask uses it.
        from distributed import as_completed

        # hash=False: unique keys, so that releasing an earlier call's data cannot
        # cancel this call's tasks (scattered data with equal content shares a key).
        shared = client.scatter([cat, region, m], broadcast=True, hash=False)
        futures = {client.submit(rank_partition, shared[0], int(i), shared[1], shared[2], weighting, limit,
                                 pure=False): int(i) for i in touched}
        try:
            for k, fut in enumerate(as_completed(futures)):
                results[futures[fut]] = fut.result()  # a partition's typed error is raised here
                if progress:
                    progress("partitions", k + 1, int(touched.size))
        finally:  # on an error, the other tasks and the scattered data are released now
            client.cancel(list(futures) + list(shared))
    parts = [results[int(i)] for i in touched]
    for r in parts:
        stats.add(r["stats"])
    total = limbs_to_float(*(r["partials"] for r in parts))
    merged = _merge_catalogs([r["catalog"] for r in parts], cat)
    p2 = np.concatenate([r["p2"] for r in parts]) if parts else np.empty(0)
    p3 = np.concatenate([r["p3"] for r in parts]) if parts else np.empty(0)
    raw = np.concatenate([r["raw"] for r in parts]) if parts else np.empty(0)
    idx, score, cum = order_ranking(raw, p2, total, limit)
    mode = "3d" if m.has_distance else "2d"
    prov = ranking_provenance(skymap, cat.name, cat.version, level if region is not None else None, weighting, mode)
    prov.update(partitions_touched=stats.partitions_touched, partitions_total=stats.partitions_total,
                rows_read=stats.rows_read)
    scan = stats.as_dict() | {"seconds": time.perf_counter() - t0}
    return RankedGalaxies(merged, idx, p2[idx], p3[idx], score, cum, mode,
                          stats.candidates, prov, scan)


def _merge_catalogs(cats: list[Catalog], cat: PartitionedCatalog) -> Catalog:
    if not cats:
        e = np.empty(0)
        return Catalog(cat.name, cat.version, np.empty(0, dtype=str), e, e, e, e, e)
    return Catalog(cat.name, cat.version, np.concatenate([c.ids for c in cats]),
                   *(np.concatenate([getattr(c, a) for c in cats]) for a in ("ra", "dec", "dist", "bmag", "kmag")))


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_catalog` wrote."""

    path: Path
    rows: int
    dropped: int
    partitions: int
    max_partition_rows: int
    orders: dict[int, int]
    seconds: float
    notes: tuple[str, ...] = ()


def _source_batches(src: Path, columns: list[str] | None, batch_rows: int) -> Iterator[Any]:
    """The source table as Arrow record batches (Parquet and CSV stream; others are read whole)."""

    suffix = "".join(src.suffixes[-2:]).lower()
    if suffix.endswith(".parquet"):

        yield from pq.ParquetFile(src).iter_batches(batch_size=batch_rows, columns=columns, use_threads=True)
        return
    if suffix.endswith((".csv", ".csv.gz")) or not suffix.endswith(
            (".xml", ".vot", ".votable", ".fits", ".fit", ".fits.gz")):
        skip = 0
        first = ""
        with (__import__("gzip").open(src, "rt", errors="replace") if suffix.endswith(".gz")
              else src.open(errors="replace")) as f:
            for ln in f:  # leading comments and blank lines, as astropy skips them
                if ln.strip() and not ln.startswith(("#", "%")):
                    first = ln
                    break
                skip += 1
        delim = ";" if ";" in first else "," if "," in first else None
        if delim is not None:

            reader = pcsv.open_csv(src, read_options=pcsv.ReadOptions(block_size=1 << 24, skip_rows=skip),
                                   parse_options=pcsv.ParseOptions(delimiter=delim),
                                   convert_options=pcsv.ConvertOptions(include_columns=columns))
            for b in reader:
                for off in range(0, b.num_rows, batch_rows):
                    yield b.slice(off, batch_rows)
            return
    # VOTable, FITS, whitespace-separated text: astropy reads them whole.

    t = read_table(src)
    arrays = {}
    for name in (columns or t.colnames):
        col = t[name]
        data = np.asarray(col)
        mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else None
        if data.dtype.kind in "SU":
            data = clean_strings(data)
        arrays[name] = pa.array(data, mask=mask if mask is not None and mask.any() else None)
    table = pa.table(arrays)
    yield from table.to_batches(max_chunksize=batch_rows)


def _positions(batch: Any, ra_col: str, dec_col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra, dec, usable) of a batch: the same conversion as a single-file catalogue."""
    ra, dec = parse_angles(_np(batch, ra_col), _np(batch, dec_col))
    ok = np.isfinite(ra) & np.isfinite(dec) & (dec >= -90) & (dec <= 90)
    return np.mod(ra, 360.0), dec, ok


def import_catalog(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    columns: dict[str, str] | None = None,
    name: str | None = None,
    max_rows: int = 1_000_000,
    lowest_order: int = 0,
    histogram_order: int = 8,
    row_group_rows: int = 65_536,
    batch_rows: int = 2_000_000,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ImportSummary:
    """Write ``src`` (CSV, VOTable, FITS or Parquet) as a HATS catalogue in ``out``.

    Three passes, memory bounded by one input batch plus the largest
    partition (Parquet and CSV are read in batches; VOTable, FITS and
    whitespace-separated text are read whole, once per pass): (1) count
    rows per pixel of ``histogram_order`` and plan the partitions
    (:func:`plan_partitions`); (2) sort each input batch by pixel
    into a run file on disk (Arrow IPC, memory-mapped later); (3) per
    partition, gather its slice of every run, sort stably by pixel (ties
    keep the source order) and write it in row groups of ``row_group_rows``
    with statistics.  The catalogue appears in ``out`` only when complete.

    Rows without a usable position are left out and counted (as a
    single-file catalogue leaves them out).  RA/Dec columns that are not in
    degrees as numbers (sexagesimal strings) are replaced by degrees.
    """


    t0 = time.perf_counter()
    src_p, out_p = Path(src), Path(out)
    if not src_p.is_file():
        raise CatalogError(f"{src_p}: no such file")
    if (out_p.is_dir() and any(out_p.iterdir())) or out_p.is_file():
        if not overwrite:
            raise CatalogError(f"{out_p} exists", hint="choose a new --out directory or pass --overwrite")
        if not is_partitioned(out_p):
            raise CatalogError(f"{out_p} exists and is not a partitioned catalogue; --overwrite only replaces one",
                               hint="choose a new --out directory")
    if not 0 <= histogram_order <= 10:  # order 10: 12.6 million counters, 100 MB
        raise CatalogError(f"histogram order {histogram_order} must be in 0..10")
    if row_group_rows < 1 or batch_rows < 1:
        raise CatalogError("row_group_rows and batch_rows must be >= 1")
    mapping = dict(columns or {})
    for k in mapping:
        if k not in ALIASES:
            raise CatalogError(f"unknown column role {k!r}; use one of {', '.join(ALIASES)}")
    try:
        first = next(_source_batches(src_p, None, 1), None)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{src_p}: cannot read the table ({exc})") from None
    if first is None:
        raise CatalogError(f"{src_p}: the table is empty")
    names = list(first.schema.names)
    for reserved in (HEALPIX_COLUMN, ROW_COLUMN):
        if reserved in names:
            raise CatalogError(f"{src_p}: column {reserved} is reserved for the partitioned catalogue",
                               hint="rename it in the source table")
    ra_col, dec_col = find_column(names, "ra", mapping), find_column(names, "dec", mapping)
    if ra_col is None or dec_col is None:
        raise CatalogError(f"{src_p}: cannot find the RA/Dec columns (columns: {', '.join(names)})",
                           hint="map them explicitly, e.g. --columns ra=RA_deg,dec=DEC_deg")
    degrees = pa.types.is_floating(first.schema.field(ra_col).type) and \
        pa.types.is_floating(first.schema.field(dec_col).type)
    notes = [f"ra={ra_col}", f"dec={dec_col}"]
    if not degrees:
        notes.append(f"{ra_col}/{dec_col} converted to degrees (float64)")
    shift = 2 * (DEPTH - histogram_order)
    name = name or src_p.name.split(".")[0]

    tmp = out_p.parent / f".{out_p.name}.importing-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "runs").mkdir(parents=True)
    try:
        # Pass 1: histogram.
        counts = np.zeros(12 * 4**histogram_order, dtype=np.int64)
        total = dropped = 0
        for b in _source_batches(src_p, [ra_col, dec_col], batch_rows):
            ra, dec, ok = _positions(b, ra_col, dec_col)
            pix = lonlat_to_nest(DEPTH, np.radians(ra[ok]), np.radians(dec[ok]))
            counts += np.bincount(pix >> shift, minlength=counts.size)
            total += b.num_rows
            dropped += int((~ok).sum())
            if progress:
                progress("count", total, -1)
        if total == dropped:
            raise CatalogError(f"{src_p}: no row has a usable position ({ra_col}, {dec_col})")
        parts = plan_partitions(counts, histogram_order, max_rows, lowest_order)
        starts = np.array([q.start for q in parts], dtype=np.int64)

        # Pass 2: runs sorted by pixel.
        runs: list[tuple[Path, np.ndarray]] = []
        seen = 0
        for k, b in enumerate(_source_batches(src_p, None, batch_rows)):
            ra, dec, ok = _positions(b, ra_col, dec_col)
            keep = np.flatnonzero(ok)
            pix = lonlat_to_nest(DEPTH, np.radians(ra[keep]), np.radians(dec[keep]))
            o = argsort_nonneg_i64(pix)
            rows = keep[o]
            t = pa.Table.from_batches([b]).take(rows)
            if not degrees:
                t = t.set_column(t.schema.get_field_index(ra_col), ra_col, pa.array(ra[rows]))
                t = t.set_column(t.schema.get_field_index(dec_col), dec_col, pa.array(dec[rows]))
            t = t.append_column(ROW_COLUMN, pa.array(rows + seen, type=pa.int64()))
            t = t.append_column(HEALPIX_COLUMN, pa.array(pix[o], type=pa.int64()))
            f = tmp / "runs" / f"run{k:06d}.arrow"
            with pa.OSFile(str(f), "wb") as sink, ipc.new_file(sink, t.schema) as w:
                w.write_table(t)
            runs.append((f, np.searchsorted(pix[o], np.append(starts, np.iinfo(np.int64).max))))
            seen += b.num_rows
            if progress:
                progress("sort", seen, total)
        schema = pa.ipc.open_file(pa.memory_map(str(runs[0][0]))).schema

        # Pass 3: one file per partition.
        tables = [ipc.open_file(pa.memory_map(str(f))).read_all() for f, _ in runs]
        collected = []
        biggest = 0
        for i, q in enumerate(parts):
            pieces = [t.slice(off[i], off[i + 1] - off[i]) for t, (_, off) in zip(tables, runs)]
            t = pa.concat_tables([p for p in pieces if p.num_rows] or pieces[:1])
            o = argsort_nonneg_i64(t.column(HEALPIX_COLUMN).to_numpy())
            t = t.take(o)
            pix = t.column(HEALPIX_COLUMN).to_numpy()
            if pix.size and (pix[0] < q.start or pix[-1] >= q.stop):  # passes 1 and 2 disagree: never write it
                raise CatalogError(f"{src_p}: rows of pixel {pix[0]}..{pix[-1]} fell into partition "
                                   f"Norder={q.order} Npix={q.pixel}; the table changed during the import?")
            biggest = max(biggest, t.num_rows)
            f = tmp / q.relpath()
            f.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, f, row_group_size=row_group_rows, metadata_collector=collected,
                           write_statistics=True)
            collected[-1].set_file_path(q.relpath()[len("dataset/"):])
            if progress:
                progress("write", i + 1, len(parts))
        del tables
        shutil.rmtree(tmp / "runs")

        pq.write_metadata(schema, tmp / "dataset" / "_common_metadata")
        pq.write_metadata(schema, tmp / "dataset" / "_metadata", metadata_collector=collected)
        (tmp / "partition_info.csv").write_text(
            "Norder,Npix\n" + "".join(f"{q.order},{q.pixel}\n" for q in parts))
        _write_point_map(tmp / "point_map.fits", counts, histogram_order)
        stamp = time.strftime("%Y-%m-%dT%H:%MUTC", time.gmtime())

        nrows = total - dropped
        _write_properties(tmp / "hats.properties", "HATS catalog", {
            "obs_collection": name,
            "dataproduct_type": "object",
            "hats_nrows": nrows,
            "hats_col_ra": ra_col,
            "hats_col_dec": dec_col,
            "hats_col_healpix": HEALPIX_COLUMN,
            "hats_col_healpix_order": DEPTH,
            "hats_npix_suffix": ".parquet",
            "hats_max_rows": max_rows,
            "hats_order": max(q.order for q in parts),
            "moc_sky_fraction": f"{np.count_nonzero(counts) / counts.size:.5f}",
            "hats_builder": f"gwfollow v{__version__}",
            "hats_creation_date": stamp,
            "hats_version": "v1.0",
            "gwfollow_source": src_p.name,
            "gwfollow_dropped_rows": dropped,
            **{f"gwfollow_col_{k}": v for k, v in mapping.items()},
        })
        if out_p.exists():  # an empty directory, or a catalogue to replace: swap, then delete the old
            old = out_p.parent / f".{out_p.name}.replaced-{os.getpid()}"
            out_p.rename(old)
            tmp.rename(out_p)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_p)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # a bad row late in a CSV, disk full...
        raise CatalogError(f"{src_p}: import failed ({type(exc).__name__}: {exc})",
                           hint="nothing was written; fix the table or free space and run the import again") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    orders: dict[int, int] = {}
    for q in parts:
        orders[q.order] = orders.get(q.order, 0) + 1
    if dropped:
        notes.append(f"{dropped} row(s) without a usable position were left out")
    return ImportSummary(out_p, nrows, dropped, len(parts), biggest, dict(sorted(orders.items())),
                         time.perf_counter() - t0, tuple(notes))


def _write_point_map(path: Path, counts: np.ndarray, order: int) -> None:
    """Rows per pixel as an explicit (sparse) HEALPix FITS table, as HATS readers expect."""

    nz = np.flatnonzero(counts)
    hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="PIXEL", format="K", array=nz.astype(np.int64)),
        fits.Column(name="VALUE", format="K", array=counts[nz].astype(np.int64)),
    ], name="xtension")
    h = hdu.header
    h["PIXTYPE"] = "HEALPIX"
    h["INDXSCHM"] = "EXPLICIT"
    h["ORDERING"] = "NESTED"
    h["COORDSYS"] = "C"
    h["NSIDE"] = 2**order
    h["OBS_NPIX"] = int(nz.size)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
