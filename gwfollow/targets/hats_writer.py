"""Writing HEALPix-partitioned (HATS) catalogues: ``gwfollow catalog import``.

The reader and the region searches are in :mod:`gwfollow.targets.partitioned`,
which documents the layout; this module writes it, in three passes with memory
bounded by one input batch and the largest partition:

1. rows are counted per pixel of the histogram order and the sky is cut top
   down into cells of at most ``max_rows`` rows (:func:`plan_partitions`);
2. each input batch is sorted by depth-29 pixel into an Arrow IPC run file;
3. each partition gathers its slice of every run, sorts it (ties in source
   order) and writes Parquet row groups with statistics.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
from gwfollow.kernels.healpix import lonlat_to_nest
from gwfollow.kernels.sort import argsort_nonneg_i64
from gwfollow.targets.catalogues import ALIASES, clean_strings, find_column, parse_angles, read_table
from gwfollow.targets.partitioned import (
    DEPTH,
    HEALPIX_COLUMN,
    ROW_COLUMN,
    Partition,
    ProgressFn,
    column_values,
    is_partitioned,
)
from gwfollow.version import __version__

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


def _write_properties(path: Path, title: str, values: dict[str, Any]) -> None:
    lines = [f"#{title}"] + [f"{k}={v}" for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


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
    ra, dec = parse_angles(column_values(batch, ra_col), column_values(batch, dec_col))
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
