"""gwfollow.targets.tap against a real TAP service: a private GAVO DaCHS instance.

The DaCHS instance (``tests/dachs_server.py``) publishes the shared GLADE+
NGC 4993 cone (``gwf.glade``) and gwemopt's S190814bv catalogue
(``gwf.gwemopt``); the TAP-sourced catalogues must rank exactly like the
same CSV files read locally.  Faults that need a misbehaving server (HTTP
500, a malformed VOTable, a hanging socket) use tiny loopback stubs.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gwfollow.regions.moc import credible_ranges
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.targets.catalogues import Catalog, read_catalog
from gwfollow.targets.rank import rank_galaxies
from gwfollow.targets.tap import (
    TapCatalogSource,
    TapError,
    TapFormatError,
    TapOverflowError,
    TapQueryError,
    TapTimeoutError,
    TapUnavailableError,
    ascii_moc,
)

from .conftest import IN_CI, shared_path
from .dachs_server import (
    CATALOGS,
    DachsServer,
    DachsUnavailable,
    ensure_dachs,
    free_port,
)

pytestmark = pytest.mark.shared_data

CASES = {
    # table -> (sky map, CSV)
    "gwf.glade": ("MS181101ab_bayestar.multiorder.fits", CATALOGS["gwf.glade"]),
    "gwf.gwemopt": ("S190814bv_bayestar.multiorder.fits", CATALOGS["gwf.gwemopt"]),
}


@pytest.fixture(scope="module")
def dachs() -> Iterator[DachsServer]:
    """A private DaCHS serving the shared catalogues (installed on first use)."""
    catalog_dir = shared_path("catalogs", CATALOGS["gwf.glade"]).parent
    try:
        ensure_dachs()
        server = DachsServer(catalog_dir).start()
    except DachsUnavailable as exc:
        if IN_CI:
            pytest.fail(f"DaCHS is required under CI=true: {exc}")
        pytest.skip(f"no DaCHS here: {exc}")
    try:
        yield server
    finally:
        server.stop()


def source(dachs: DachsServer, table: str = "gwf.glade", **kw) -> TapCatalogSource:
    kw.setdefault("order_by", "row_no")
    kw.setdefault("timeout_s", 30)
    return TapCatalogSource(dachs.url, table, **kw)


def local(table: str) -> Catalog:
    return read_catalog(shared_path("catalogs", CASES[table][1]))


def region90(table: str) -> tuple[object, np.ndarray]:
    sm = read_skymap(shared_path("skymaps", CASES[table][0]))
    return sm, credible_ranges(sm, [0.9], "include")[0]


def same_rows(a: Catalog, b: Catalog) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    for attr in ("ra", "dec", "dist", "bmag", "kmag"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


# ------------------------------------------------------------------ discovery
def test_discovers_columns_roles_and_capabilities(dachs: DachsServer) -> None:
    s = source(dachs)
    cols = s.table_columns()
    assert {"raj2000", "dej2000", "dist", "bmag", "pgc"} <= set(cols)
    assert s.roles() == {"ra": "raj2000", "dec": "dej2000", "dist": "dist", "z": "z_best", "bmag": "bmag",
                         "id": "glade"}
    assert s.spellings()["pgc"] == "PGC"  # DaCHS: lower case in TAP_SCHEMA, RD spelling in results
    assert s.supports_moc()
    assert s.hard_maxrec() == 20_000_000
    g = source(dachs, "gwf.gwemopt")
    assert g.roles()["dist"] == "distmpc" and g.roles()["kmag"] == "magk"
    assert "2MASS" in g.table_columns()  # a delimited identifier
    assert '"2MASS"' in g.adql()


@pytest.mark.parametrize("table", sorted(CASES))
def test_whole_table_equals_local_csv(dachs: DachsServer, table: str) -> None:
    s = source(dachs, table, execution="sync", sync_max_rows=10_000)
    same_rows(s.query_all(), local(table))
    assert s.last_query["execution"] == "sync"


# ------------------------------------------------------- sync, async, MAXREC
def test_sync_overflow_is_detected(dachs: DachsServer) -> None:
    # DaCHS's default MAXREC is 2000: an explicit MAXREC must be sent and a
    # truncated answer must never pass for the catalogue.
    s = source(dachs, execution="sync", sync_max_rows=100)
    with pytest.raises(TapOverflowError, match="MAXREC=100") as info:
        s.query_all()
    assert info.value.url == dachs.url


def test_auto_switches_to_async_after_overflow(dachs: DachsServer) -> None:
    s = source(dachs, execution="auto", sync_max_rows=100, async_area_deg2=1e9)
    cat = s.query_all()
    assert s.last_query["execution"] == "async" and s.last_query["overflowed_sync"]
    same_rows(cat, local("gwf.glade"))


def test_async_overflow_raises(dachs: DachsServer) -> None:
    s = source(dachs, execution="async", maxrec=50)
    with pytest.raises(TapOverflowError):
        s.query_all()


@pytest.mark.parametrize("table", sorted(CASES))
def test_sync_and_async_region_queries_agree(dachs: DachsServer, table: str) -> None:
    _, reg = region90(table)
    sync = source(dachs, table, execution="sync")
    a = sync.query_region(reg)
    assert sync.last_query["execution"] == "sync"
    asy = source(dachs, table, execution="async")
    b = asy.query_region(reg)
    assert asy.last_query["execution"] == "async"
    assert len(a) > 0
    same_rows(a, b)


def test_large_area_goes_async(dachs: DachsServer) -> None:
    _, reg = region90("gwf.glade")
    s = source(dachs, async_area_deg2=1.0)
    s.query_region(reg)
    assert s.last_query["execution"] == "async"


# ----------------------------------------------- coarse constraint, fine filter
@pytest.mark.parametrize("table", sorted(CASES))
def test_moc_and_cone_constraints_give_the_same_rows(dachs: DachsServer, table: str) -> None:
    from gwfollow.kernels.healpix import lonlat_to_nest
    from gwfollow.kernels.ranges import contains

    _, reg = region90(table)
    s = source(dachs, table)
    by_moc = s.query_region(reg)
    moc_q = dict(s.last_query)
    by_cone = s.query_region(reg, constraint="cone")
    cone_q = dict(s.last_query)
    assert moc_q["mode"] == "moc" and "MOC('" in moc_q["adql"]  # auto: DaCHS declares MOC
    assert cone_q["mode"] == "cone" and "CIRCLE(" in cone_q["adql"]
    # The MOC is the tighter coarse filter; both are exact after the local filter.
    assert moc_q["rows_server"] <= cone_q["rows_server"]
    same_rows(by_moc, by_cone)
    # ... and equal the local file filtered exactly.
    cat = local(table)
    inside = contains(reg, lonlat_to_nest(29, np.radians(cat.ra), np.radians(cat.dec)))
    same_rows(by_moc, cat.subset(np.flatnonzero(inside)))


def test_ascii_moc_is_accepted_by_dachs(dachs: DachsServer) -> None:
    s = source(dachs)
    r = np.array([[389 << 52, 390 << 52]], dtype=np.int64)
    assert ascii_moc(r, 3) == "3/389"
    t = s.run(f"SELECT COUNT(*) AS n FROM gwf.glade WHERE 1=CONTAINS(POINT('ICRS', raj2000, dej2000), "
              f"MOC('{ascii_moc(r, 3)}'))")
    assert int(t["n"][0]) == len(s.query_region(r))


def test_empty_region(dachs: DachsServer) -> None:
    cat = source(dachs).query_region(np.empty((0, 2), dtype=np.int64))
    assert len(cat) == 0


# ------------------------------------------------------------------- ranking
@pytest.mark.parametrize("table", sorted(CASES))
def test_rank_on_tap_catalogue_equals_local(dachs: DachsServer, table: str) -> None:
    sm, reg = region90(table)
    tap_cat = source(dachs, table).query_region(reg)
    loc_cat = local(table)
    a = rank_galaxies(sm, tap_cat, region=reg)
    b = rank_galaxies(sm, loc_cat, region=reg)
    assert len(a) == len(b) > 0
    assert a.catalog.ids[a.rows].tolist() == b.catalog.ids[b.rows].tolist()
    np.testing.assert_array_equal(a.probdensity_2d, b.probdensity_2d)
    np.testing.assert_array_equal(a.probdensity_3d, b.probdensity_3d)
    np.testing.assert_array_equal(a.score, b.score)
    # With the sorted-index (coarse-then-fine) path as well (ties then go in sky-index order).
    tap_cat.index()
    loc_cat.index()
    c = rank_galaxies(sm, tap_cat, region=reg)
    d = rank_galaxies(sm, loc_cat, region=reg)
    assert c.catalog.ids[c.rows].tolist() == d.catalog.ids[d.rows].tolist()
    np.testing.assert_array_equal(c.probdensity_3d, d.probdensity_3d)


# -------------------------------------------------------------------- faults
def test_service_down_is_a_transient_typed_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/tap"
    s = TapCatalogSource(url, "gwf.glade", retries=2, backoff_s=0.01, timeout_s=5)
    with pytest.raises(TapUnavailableError) as info:
        s.query_all()
    err = info.value
    assert err.url == url and err.transient and url in str(err)
    assert isinstance(err, TapError) and isinstance(err, OSError)


def test_unknown_table_is_a_rejected_query(dachs: DachsServer) -> None:
    s = TapCatalogSource(dachs.url, "gwf.no_such_table", retries=0)
    with pytest.raises(TapQueryError) as info:
        s.query_all()
    assert info.value.url == dachs.url and not info.value.transient
    # Rejected by the service itself when queried directly:
    with pytest.raises(TapQueryError) as info:
        source(dachs).run("SELECT * FROM gwf.no_such_table")
    assert "gwf.no_such_table" in (info.value.service_message or "")
    assert isinstance(info.value, ValueError)


def test_unknown_column_mapping_is_rejected(dachs: DachsServer) -> None:
    s = source(dachs, columns={"ra": "no_such_column"})
    with pytest.raises(TapQueryError):
        s.query_all()


@pytest.fixture()
def hanging_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_timeout_is_a_typed_error(hanging_port: int) -> None:
    url = f"http://127.0.0.1:{hanging_port}/tap"
    s = TapCatalogSource(url, "gwf.glade", timeout_s=0.5, retries=1, backoff_s=0.01)
    with pytest.raises(TapTimeoutError) as info:
        s.table_columns()
    assert info.value.url == url and info.value.transient
    assert isinstance(info.value, TimeoutError)


class _Stub(http.server.BaseHTTPRequestHandler):
    status = 500
    body = b"internal error"
    ctype = "text/plain"
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        self.send_response(self.status)
        self.send_header("Content-Type", self.ctype)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Stub", (_Stub,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tap", handler
    finally:
        server.shutdown()
        server.server_close()


def test_http_500_is_retried_then_typed(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    s = TapCatalogSource(url, "gwf.glade", retries=2, backoff_s=0.01)
    with pytest.raises(TapUnavailableError) as info:
        s.table_columns()
    assert info.value.status == 500 and info.value.url == url
    assert handler.hits == 3


def test_malformed_votable_is_a_format_error(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    handler.status, handler.ctype = 200, "application/x-votable+xml"
    handler.body = b"<?xml version='1.0'?><VOTABLE version='1.4'><RESOURCE><TABLE><DATA>"
    s = TapCatalogSource(url, "gwf.glade", retries=2, backoff_s=0.01)
    with pytest.raises(TapFormatError) as info:
        s.table_columns()
    assert info.value.url == url and not info.value.transient
    assert handler.hits == 1


def test_setup_is_reported(dachs: DachsServer) -> None:
    # The set-up time is a figure (benchmarks/bench_tap.py prints it), not a test.
    assert dachs.setup_seconds["total"] > 0
    assert any("dachs serve" in c for c in dachs.commands)
    assert Path(dachs.root / "inputs" / "gwf" / "q.rd").exists()


def test_pipeline_and_rank_command_use_tap(dachs: DachsServer, capsys) -> None:
    """A TAP catalogue in [targets] catalogs and on the command line, equal to the local file."""
    import dataclasses
    import json as _json

    from gwfollow.cli.main import main
    from gwfollow.config import load_config
    from gwfollow.products.core import process_message

    skymap = shared_path("skymaps", CASES["gwf.glade"][0])
    cfg = load_config(env={})
    spec = f"tap:{dachs.url}#gwf.glade"
    cfg = dataclasses.replace(cfg, targets=dataclasses.replace(cfg.targets, catalogs=(spec, str(shared_path(
        "catalogs", CASES["gwf.glade"][1]))), galaxy_limit=50), telescopes=(), sites=())
    res = process_message(skymap.read_bytes(), "t", cfg)
    gal = [_json.loads(p.data) for p in res.skymaps[0].products if p.kind == "galaxies"]
    assert len(gal) == 2 and "error" not in gal[0]
    assert [r["id"] for r in gal[0]["rows"]] == [r["id"] for r in gal[1]["rows"]]
    assert [r["probdensity_3d"] for r in gal[0]["rows"]] == [r["probdensity_3d"] for r in gal[1]["rows"]]
    assert main(["rank", str(skymap), "--catalog", spec, "--limit", "5", "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 6
    # A TAP service that is down is recorded for that catalogue; the others go on.
    down = dataclasses.replace(cfg, targets=dataclasses.replace(cfg.targets, catalogs=(
        "tap:http://127.0.0.1:9/tap#gwf.glade", "openngc")))
    res = process_message(skymap.read_bytes(), "t", down)
    gal = [_json.loads(p.data) for p in res.skymaps[0].products if p.kind == "galaxies"]
    assert "error" in gal[0] and gal[1]["rows"]
