"""Galaxy catalogues from a TAP service (IVOA Table Access Protocol), via pyvo.

:class:`TapCatalogSource` turns a credible region (canonical depth-29 ranges)
into a :class:`~gwfollow.targets.catalogues.Catalog` in two phases, as the local
catalogues do:

* coarse, on the server: an ADQL constraint that contains the region --
  ``1=CONTAINS(POINT('ICRS', ra, dec), MOC('<ascii moc>'))`` with the region
  degraded to a few cells of order <= ``moc_order`` when the service declares
  an ADQL ``MOC`` function (DaCHS does), else the bounding cone
  ``CIRCLE('ICRS', ra0, dec0, r)`` of the region;
* fine, here: the exact membership of each row's depth-29 pixel in the
  region (:func:`gwfollow.kernels.ranges.contains`).

Columns are discovered through ``TAP_SCHEMA.columns`` (VOSI tables as the
fallback) and recognised by the names :func:`gwfollow.targets.catalogues.catalog_from_table`
knows (``ra``/``RAJ2000``..., ``columns=`` maps the others); only the columns
a catalogue uses are fetched.

Small regions are queried synchronously with an explicit ``MAXREC``
(``sync_max_rows``); large ones (coarse area above ``async_area_deg2``), and
synchronous queries the service truncated (``QUERY_STATUS=OVERFLOW``), run as
asynchronous UWS jobs with ``MAXREC`` = ``maxrec`` (default: the service's
hard output limit).  A truncated asynchronous result raises
:class:`TapOverflowError`: a catalogue is never silently cut.

Faults become :class:`TapError` subclasses carrying the service URL, the HTTP
status and the service's own message; transient ones (connection refused,
time-outs, HTTP 5xx / 429) are retried ``retries`` times with exponential
back-off (``backoff_s``, ``2 * backoff_s``, ...).
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import healpy as hp
import numpy as np
import numpy.typing as npt
import pyvo
import pyvo.dal.exceptions as pe
import requests
from astropy.table import Table
from pyvo.dal.exceptions import DALAccessError  # base of pyvo's DAL errors

from gwfollow.errors import (
    TapError,
    TapFormatError,
    TapOverflowError,
    TapQueryError,
    TapTimeoutError,
    TapUnavailableError,
)
from gwfollow.kernels.healpix import lonlat_to_nest, uniq_to_order_ipix
from gwfollow.kernels.ranges import contains, degrade, to_uniq
from gwfollow.regions.moc import ranges_area_deg2
from gwfollow.targets.catalogues import (
    ALIASES,
    Catalog,
    catalog_from_table,
    find_column,
)

__all__ = [
    "TapCatalogSource",
    "TapError",
    "TapFormatError",
    "TapOverflowError",
    "TapQueryError",
    "TapTimeoutError",
    "TapUnavailableError",
    "ascii_moc",
    "bounding_cone",
]

_T = TypeVar("_T")

#: Column roles fetched, in catalog_from_table's order of preference.
_ROLES = ("ra", "dec", "dist", "z", "bmag", "kmag")
_REGULAR_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# ----------------------------------------------------------------- errors
# ---------------------------------------------------------- ADQL geometry
def ascii_moc(ranges: npt.NDArray[np.int64], order: int) -> str:
    """The IVOA ASCII serialisation of ``ranges`` degraded to ``order``.

    Examples
    --------
    >>> import numpy as np
    >>> r = np.array([[389 << 52, 391 << 52]], dtype=np.int64)  # order-3 cells 389, 390
    >>> ascii_moc(r, 3)
    '3/389-390'
    """

    r = np.ascontiguousarray(ranges, dtype=np.int64).reshape(-1, 2)
    if r.shape[0] == 0:
        return f"{order}/"
    orders, ipix = uniq_to_order_ipix(to_uniq(degrade(r, int(order))))
    parts: list[str] = []
    for o in np.unique(orders):
        pix = np.sort(ipix[orders == o])
        runs = np.split(pix, np.flatnonzero(np.diff(pix) != 1) + 1)
        items = [f"{a[0]}" if a.size == 1 else f"{a[0]}-{a[-1]}" for a in runs]
        parts.append(f"{int(o)}/" + " ".join(items))
    return " ".join(parts)


def _coarse_order(ranges: npt.NDArray[np.int64], max_order: int, max_cells: int) -> int:
    """Deepest order <= ``max_order`` at which the degraded region has <= ``max_cells`` cells."""

    for order in range(int(max_order), -1, -1):
        if to_uniq(degrade(ranges, order)).shape[0] <= max_cells:
            return order
    return 0


def bounding_cone(ranges: npt.NDArray[np.int64], order: int = 8) -> tuple[float, float, float]:
    """(ra, dec, radius), degrees: a cone containing the region.

    The region is degraded to ``order`` (coarser when that gives more than
    ~200,000 cells); the cone is centred on the mean direction of the cell
    centres and its radius reaches the farthest centre plus the largest cell
    radius.  Radius 180 means the whole sky.
    """


    r = np.ascontiguousarray(ranges, dtype=np.int64).reshape(-1, 2)
    if r.shape[0] == 0:
        return 0.0, 0.0, 0.0
    while order > 0:
        d = degrade(r, order)
        if int(((d[:, 1] - d[:, 0]) >> (2 * (29 - order))).sum()) <= 200_000:
            break
        order -= 1
    d = degrade(r, order)
    shift = 2 * (29 - order)
    pix = np.concatenate([np.arange(a >> shift, b >> shift, dtype=np.int64) for a, b in d])
    nside = 1 << order
    vec = np.array(hp.pix2vec(nside, pix, nest=True)).T
    mean = vec.sum(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-9 * len(vec):
        return 0.0, 0.0, 180.0
    centre = mean / norm
    sep = np.degrees(np.arccos(np.clip(vec @ centre, -1.0, 1.0))).max()
    radius = float(sep + np.degrees(hp.max_pixrad(nside)) * 1.01)
    ra = float(np.degrees(np.arctan2(centre[1], centre[0])) % 360.0)
    dec = float(np.degrees(np.arcsin(np.clip(centre[2], -1.0, 1.0))))
    return ra, dec, min(radius, 180.0)


# ------------------------------------------------------------------ source
@dataclass(frozen=True)
class _Roles:
    ra: str
    dec: str
    fetch: tuple[str, ...]


class TapCatalogSource:
    """A galaxy table of a TAP service, queried by sky region.

    Parameters
    ----------
    url : str
        The TAP service's base URL (``http://host/tap``).
    table : str
        Fully qualified table name as in ``TAP_SCHEMA.tables`` (``gwf.glade``).
    columns : dict, optional
        Explicit role -> column mapping (``{"ra": "RA_deg"}``), as for
        :func:`gwfollow.targets.catalogues.catalog_from_table`.
    maxrec : int, optional
        MAXREC of asynchronous queries; by default the service's hard
        output limit (from its capabilities), else 10,000,000.
    timeout_s : float
        Time-out of each HTTP request, seconds.
    retries : int
        Retries of transient failures (so ``retries + 1`` attempts).
    backoff_s : float
        First back-off delay, seconds; doubled after each retry.
    sync_max_rows : int
        MAXREC of synchronous queries; a synchronous result truncated there
        is fetched again asynchronously (``execution="auto"``).
    constraint : {"auto", "moc", "cone"}
        Server-side constraint: ``moc`` (ADQL ``MOC()``), ``cone``
        (``CIRCLE``), ``auto``: ``moc`` when the service declares a MOC
        function in its capabilities.
    moc_order, max_moc_cells : int
        The MOC constraint uses the deepest order <= ``moc_order`` at which
        the region has at most ``max_moc_cells`` cells.
    execution : {"auto", "sync", "async"}
        ``auto``: asynchronous when the coarse area exceeds
        ``async_area_deg2`` or a synchronous answer overflows.
    async_area_deg2 : float
        Coarse-constraint area (square degrees) above which ``auto`` goes
        asynchronous directly.
    async_wait_s : float
        Longest wait for an asynchronous job to finish, seconds.
    order_by : str, optional
        Column to sort the rows by on the server (stable row order).
    name : str, optional
        Catalogue name for provenance (default: ``table``).
    """

    def __init__(self, url: str, table: str, columns: dict[str, str] | None = None, *,
                 maxrec: int | None = None, timeout_s: float = 30.0, retries: int = 3,
                 backoff_s: float = 1.0, sync_max_rows: int = 100_000, constraint: str = "auto",
                 moc_order: int = 8, max_moc_cells: int = 200, execution: str = "auto",
                 async_area_deg2: float = 3000.0, async_wait_s: float = 600.0,
                 order_by: str | None = None, name: str | None = None) -> None:
        if constraint not in ("auto", "moc", "cone"):
            raise ValueError(f"constraint {constraint!r} is not one of auto, moc, cone")
        if execution not in ("auto", "sync", "async"):
            raise ValueError(f"execution {execution!r} is not one of auto, sync, async")
        if not 0 <= moc_order <= 29:
            raise ValueError(f"moc_order {moc_order} is not in [0, 29]")
        if retries < 0 or timeout_s <= 0 or sync_max_rows < 1:
            raise ValueError("retries must be >= 0, timeout_s > 0 and sync_max_rows >= 1")
        self.url = url.rstrip("/")
        self.table = table
        self.columns = dict(columns or {})
        self.maxrec = maxrec
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.sync_max_rows = int(sync_max_rows)
        self.constraint = constraint
        self.moc_order = int(moc_order)
        self.max_moc_cells = int(max_moc_cells)
        self.execution = execution
        self.async_area_deg2 = float(async_area_deg2)
        self.async_wait_s = float(async_wait_s)
        self.order_by = order_by
        self.name = name or table
        self._service: Any = None
        self._capabilities: str | None = None
        self._table_columns: list[str] | None = None
        self._roles: _Roles | None = None
        self._spellings: dict[str, str] | None = None
        #: What the last :meth:`query_region` did (mode, execution, adql, rows).
        self.last_query: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TapCatalogSource({self.url!r}, {self.table!r})"

    # -------------------------------------------------------------- plumbing
    @property
    def service(self) -> Any:
        """The ``pyvo.dal.TAPService`` (HTTP requests time out after ``timeout_s``)."""
        if self._service is None:

            timeout = self.timeout_s

            class _Session(requests.Session):
                def request(self, *args: Any, **kwargs: Any) -> Any:
                    kwargs.setdefault("timeout", timeout)
                    if kwargs["timeout"] is None:
                        kwargs["timeout"] = timeout
                    return super().request(*args, **kwargs)

            self._service = pyvo.dal.TAPService(self.url, session=_Session())
        return self._service

    def _translate(self, exc: BaseException, what: str) -> TapError:
        """A pyvo / requests exception as a :class:`TapError`."""

        if isinstance(exc, TapError):
            return exc
        status: int | None = exc.code if isinstance(exc, pe.DALServiceError) else None
        # pyvo wraps requests' errors (as DALServiceError or DALFormatError): look down the chain.
        chain: list[BaseException] = []
        e: BaseException | None = exc
        while e is not None and e not in chain and len(chain) < 10:
            chain.append(e)
            e = getattr(e, "cause", None) or e.__cause__ or e.__context__
        if any(isinstance(c, (requests.Timeout, TimeoutError)) for c in chain):
            return TapTimeoutError(f"{what}: no answer within {self.timeout_s:g} s", url=self.url,
                                   hint="the service is slow or hanging; raise timeout_s or try later")
        if any(isinstance(c, (requests.ConnectionError, ConnectionError)) for c in chain):
            cause = next(c for c in chain if isinstance(c, (requests.ConnectionError, ConnectionError)))
            return TapUnavailableError(f"{what}: cannot connect ({_short(cause)})", url=self.url,
                                       hint="is the service running and the URL right?")
        if isinstance(exc, pe.DALQueryError):
            msg = str(exc.reason or exc)
            return TapQueryError(f"{what}: query rejected: {msg}", url=self.url, status=status,
                                 service_message=msg)
        if isinstance(exc, pe.DALFormatError):
            return TapFormatError(f"{what}: malformed answer ({_short(exc.cause or exc)})", url=self.url,
                                  status=status)
        if isinstance(exc, pe.DALServiceError):
            msg = str(exc.reason or exc)
            if status is not None and (status >= 500 or status == 429):
                return TapUnavailableError(f"{what}: HTTP {status}: {msg}", url=self.url, status=status,
                                           service_message=msg)
            if status is not None and 400 <= status < 500:
                return TapQueryError(f"{what}: HTTP {status}: {msg}", url=self.url, status=status,
                                     service_message=msg)
            return TapUnavailableError(f"{what}: {msg}", url=self.url, status=status, service_message=msg)
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            cls = TapUnavailableError if status >= 500 or status == 429 else TapQueryError
            return cls(f"{what}: HTTP {status}", url=self.url, status=status)
        if isinstance(exc, (pe.DALAccessError, requests.RequestException, OSError)):
            return TapUnavailableError(f"{what}: {_short(exc)}", url=self.url)
        return TapFormatError(f"{what}: unexpected answer ({_short(exc)})", url=self.url)

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        """``fn()``, its failures as :class:`TapError`, transient ones retried."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # overflow is checked by the caller
                    return fn()
            except (TapError, OSError, ValueError, _dal_errors()) as exc:  # VOTable parse errors are ValueErrors
                err = self._translate(exc, what)
                if not err.transient or attempt == self.retries:
                    raise err from exc
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _get(self, path: str) -> str:
        def fetch() -> str:
            r = self.service._session.get(f"{self.url}/{path}")
            r.raise_for_status()
            return r.text

        return self._call(f"GET {path}", fetch)

    # ------------------------------------------------------------ discovery
    @property
    def capabilities(self) -> str:
        """The service's VOSI capabilities document (XML text, fetched once)."""
        if self._capabilities is None:
            self._capabilities = self._get("capabilities")
        return self._capabilities

    def supports_moc(self) -> bool:
        """Whether the service declares an ADQL ``MOC`` function (a TAPRegExt language feature)."""
        try:
            caps = self.capabilities
        except TapQueryError:  # no VOSI capabilities (HTTP 4xx): assume no MOC
            return False
        return re.search(r"<form>\s*MOC\b", caps) is not None

    def hard_maxrec(self) -> int | None:
        """The service's hard output limit in rows (TAPRegExt ``outputLimit``), if declared."""
        m = re.search(r"<outputLimit>.*?<hard[^>]*unit=\"row\"[^>]*>\s*(\d+)", self.capabilities, re.S)
        return int(m.group(1)) if m else None

    def table_columns(self) -> list[str]:
        """Column names of the table, from ``TAP_SCHEMA.columns`` (VOSI tables as a fallback).

        Raises
        ------
        TapQueryError
            The service does not know the table.
        """
        if self._table_columns is None:
            tname = self.table.replace("'", "''")
            res = self._call(
                "TAP_SCHEMA query",
                lambda: self.service.run_sync(
                    f"SELECT column_name FROM TAP_SCHEMA.columns WHERE table_name = '{tname}'", maxrec=100_000))
            names = [str(v) for v in res.to_table()["column_name"]]
            if not names:
                names = self._vosi_columns()
            if not names:
                raise TapQueryError(f"no table {self.table!r} in TAP_SCHEMA or VOSI tables", url=self.url,
                                    hint="check the schema-qualified name in TAP_SCHEMA.tables")
            self._table_columns = [n[1:-1] if n.startswith('"') and n.endswith('"') else n for n in names]
        return self._table_columns

    def spellings(self) -> dict[str, str]:
        """Column name -> the spelling of ``SELECT *`` output.

        Some services (DaCHS) list regular identifiers in lower case in
        TAP_SCHEMA / VOSI but write the publisher's spelling (``PGC``) in
        ``SELECT *`` results; id prefixes (``PGC:123``) depend on it, so the
        query aliases each column to that spelling.  One ``TOP 0`` query.
        """
        if self._spellings is None:
            try:
                res = self._call("column spellings", lambda: self.service.run_sync(
                    f"SELECT TOP 0 * FROM {self.table}", maxrec=1))
                out = {c.lower(): c for c in res.to_table().colnames}
            except TapQueryError:
                out = {}
            self._spellings = {c: out.get(c.lower(), c) for c in self.table_columns()}
        return self._spellings

    def _vosi_columns(self) -> list[str]:
        try:
            tables = self._call("VOSI tables", lambda: self.service.tables)
            for t in tables:
                if t.name.lower() == self.table.lower():
                    return [c.name for c in t.columns]
        except TapError:
            pass
        return []

    def roles(self) -> dict[str, str]:
        """Role -> column as recognised (``ra``, ``dec``, ``dist``, ``z``, ``bmag``, ``kmag``)."""
        r = self._resolve()
        out = {}
        names = self.table_columns()
        for role in _ROLES:
            c = find_column(names, role, self.columns, check=False)
            if c is not None:
                out[role] = c
        ids = [c for c in r.fetch if c not in out.values()]
        if ids:
            out["id"] = ids[0]
        return out

    def _resolve(self) -> _Roles:
        if self._roles is None:
            names = self.table_columns()
            found = {role: find_column(names, role, self.columns, check=False) for role in _ROLES}
            if found["ra"] is None or found["dec"] is None:
                raise TapQueryError(f"{self.table}: cannot find the RA/Dec columns (columns: {', '.join(names)})",
                                    url=self.url, hint="map them explicitly, e.g. columns={'ra': 'RA_deg'}")
            if "id" in self.columns:
                ids = [find_column(names, "id", self.columns, check=False)]
            else:
                lower = {c.lower().strip(): c for c in names}
                ids = [lower[a] for a in ALIASES["id"] if a in lower]
            fetch = [c for c in found.values() if c is not None] + [c for c in ids if c is not None]
            self._roles = _Roles(found["ra"], found["dec"], tuple(dict.fromkeys(fetch)))  # type: ignore[arg-type]
        return self._roles

    # --------------------------------------------------------------- queries
    def adql_constraint(self, ranges: npt.NDArray[np.int64], mode: str | None = None) -> tuple[str, str, float]:
        """(mode, ADQL condition, coarse area in deg²) containing the region ``ranges``."""

        r = self._resolve()
        ranges = np.ascontiguousarray(ranges, dtype=np.int64).reshape(-1, 2)
        mode = mode or self.constraint
        if mode == "auto":
            mode = "moc" if self.supports_moc() else "cone"
        point = f"POINT('ICRS', {_ident(r.ra)}, {_ident(r.dec)})"
        if mode == "moc":
            order = _coarse_order(ranges, self.moc_order, self.max_moc_cells)
            area = ranges_area_deg2(degrade(ranges, order))
            return mode, f"1=CONTAINS({point}, MOC('{ascii_moc(ranges, order)}'))", area
        ra, dec, radius = bounding_cone(ranges, min(self.moc_order, 8))
        if radius >= 180.0:
            return mode, "", 41252.96
        area = 2 * math.pi * (1 - math.cos(math.radians(radius))) * (180 / math.pi) ** 2
        return mode, f"1=CONTAINS({point}, CIRCLE('ICRS', {ra:.10f}, {dec:.10f}, {radius:.10f}))", area

    def adql(self, where: str = "") -> str:
        """The ADQL query selecting the catalogue columns, with an optional condition."""
        r = self._resolve()
        spell = self.spellings()
        cols = [_ident(c) if spell.get(c, c) == c else f"{_ident(c)} AS {_ident(spell[c])}" for c in r.fetch]
        q = f"SELECT {', '.join(cols)} FROM {self.table}"
        if where:
            q += f" WHERE {where}"
        if self.order_by:
            q += f" ORDER BY {_ident(self.order_by)}"
        return q

    def run(self, query: str, *, execution: str = "sync", maxrec: int | None = None) -> Any:
        """Run ``query`` and return its astropy Table (raises on truncation)."""
        if execution == "sync":
            n = maxrec or self.sync_max_rows
            res = self._call("synchronous query", lambda: self.service.run_sync(query, maxrec=n))
        else:
            n = maxrec or self.maxrec or self.hard_maxrec() or 10_000_000
            res = self._call("asynchronous query",
                             lambda: self.service.run_async(query, maxrec=n, timeout=self.async_wait_s))
        if _overflowed(res):
            raise TapOverflowError(f"{execution} result truncated at MAXREC={n} rows", url=self.url,
                                   hint="raise maxrec / sync_max_rows or query a smaller region")
        return self._call("reading the VOTable", res.to_table)

    def query(self, where: str = "", *, area_deg2: float = 0.0) -> Any:
        """The table's catalogue columns (astropy Table), sync or async per ``execution``."""
        q = self.adql(where)
        execution = self.execution
        if execution == "auto":
            execution = "async" if area_deg2 > self.async_area_deg2 else "sync"
        self.last_query = {"adql": q, "execution": execution}
        try:
            return self.run(q, execution=execution)
        except TapOverflowError:
            if self.execution != "auto" or execution == "async":
                raise
            self.last_query = {"adql": q, "execution": "async", "overflowed_sync": True}
            return self.run(q, execution="async")

    def query_all(self) -> Catalog:
        """The whole table as a catalogue."""
        return self._catalog(self.query(area_deg2=41252.96), None)

    def query_region(self, ranges: npt.NDArray[np.int64], *, constraint: str | None = None) -> Catalog:
        """Galaxies inside ``ranges`` (canonical depth-29, int64 ``(n, 2)``).

        Coarse: the server returns the rows inside the MOC / cone constraint;
        fine: rows whose depth-29 pixel is outside ``ranges`` are removed
        here.  ``constraint`` overrides the instance's mode for this call.
        """
        ranges = np.ascontiguousarray(ranges, dtype=np.int64).reshape(-1, 2)
        if ranges.shape[0] == 0:
            self.last_query = {"rows_server": 0, "rows": 0}
            return self._catalog(None, ranges)
        mode, where, area = self.adql_constraint(ranges, constraint)
        table = self.query(where, area_deg2=area)
        self.last_query.update(mode=mode, coarse_area_deg2=area)
        return self._catalog(table, ranges)

    def _catalog(self, table: Any, ranges: npt.NDArray[np.int64] | None) -> Catalog:

        r = self._resolve()
        if table is None:
            spell = self.spellings()
            table = Table(names=[spell.get(c, c) for c in r.fetch], dtype=[np.float64] * len(r.fetch))
        spell = self.spellings() if self._table_columns is not None else {}
        mapping = {k: spell.get(v, v) for k, v in self.columns.items()}
        cat = catalog_from_table(table, name=self.name, version=f"tap {self.url} {self.table}",
                                 columns=mapping)
        self.last_query["rows_server"] = len(table)
        if ranges is not None and len(cat):

            pix = lonlat_to_nest(29, np.radians(cat.ra), np.radians(cat.dec))
            keep = np.flatnonzero(contains(ranges, pix))
            notes = cat.notes + (f"{len(cat) - keep.size} of {len(cat)} server rows outside the region",)
            sub = cat.subset(keep)
            cat = Catalog(sub.name, sub.version, sub.ids, sub.ra, sub.dec, sub.dist, sub.bmag, sub.kmag,
                          cat.dropped, notes)
        self.last_query["rows"] = len(cat)
        return cat


def _dal_errors() -> type[Exception]:

    return DALAccessError


def _ident(name: str) -> str:
    """An ADQL identifier: as is when regular, else delimited."""
    return name if _REGULAR_ID.match(name) else '"' + name.replace('"', '""') + '"'


def _overflowed(res: Any) -> bool:
    if getattr(res, "query_status", None) == "OVERFLOW":
        return True
    try:
        infos = res.votable.resources[0].infos
    except (AttributeError, IndexError):
        return False
    return any(i.name == "QUERY_STATUS" and i.value == "OVERFLOW" for i in infos)


def _short(exc: BaseException) -> str:
    s = str(exc) or type(exc).__name__
    return s if len(s) < 300 else s[:297] + "..."
