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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from gwfollow.errors import CatalogError
from gwfollow.kernels import rank as krank
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
)
from gwfollow.targets.rank import (
    RankedGalaxies,
    check_options,
    limbs_to_float,
    order_ranking,
    ranking_provenance,
)

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
        ra, dec = parse_angles(column_values(table, r["ra"]), column_values(table, r["dec"]))
        dist = _distance(table, r)
        n = ra.shape[0]
        ids = _ids_of(table, self.id_columns, self.has_source_row)
        bmag = column_values(table, r["bmag"]) if r["bmag"] else np.full(n, np.nan)
        kmag = column_values(table, r["kmag"]) if r["kmag"] else np.full(n, np.nan)
        cat = Catalog.from_arrays(ra, dec, dist, ids=ids, bmag=_num(bmag), kmag=_num(kmag), name=self.name,
                                  version=self.version)
        pix = table.column(self.healpix_column).to_numpy()
        if cat.dropped == 0:
            cat._index["pix"] = pix
            cat._index["order"] = np.arange(n, dtype=np.int64)
        return cat


def column_values(table: Any, name: str | None) -> np.ndarray:
    """An Arrow column as numpy (object dtype where nulls prevent a typed array)."""
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
    dist = _num(column_values(table, roles["dist"])) if roles["dist"] else np.full(n, np.nan)
    if roles["z"]:
        dist, _ = fill_distances(dist, _num(column_values(table, roles["z"])))
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
        mag = _num(column_values(table, col)) if col else np.full(pix.shape[0], np.nan)
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
