"""Sky-map fetching under the policy for untrusted URLs, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections import Counter

import pytest
from aiohttp import web

from gwfollow.config import load_config, packaged_defaults
from gwfollow.errors import ConfigError, FetchError
from gwfollow.ingest.fetch import CheckedResolver, address_refusal, checked_session, fetch_bytes

#: Trusts the test servers on 127.0.0.1 explicitly, as a deployment would trust a mirror.
LOCAL = dataclasses.replace(packaged_defaults().fetch, timeout_s=2.0, retries=2, backoff_s=0.01, max_mib=1.0,
                            total_s=10.0, allowed_hosts=("127.0.0.1",), allowed_networks=("127.0.0.1/32",))


@pytest.fixture
async def server(aiohttp_server):
    hits: Counter[str] = Counter()
    body = b"SIMPLE  = T" + b" " * 100

    async def ok(request):
        hits["ok"] += 1
        return web.Response(body=body)

    async def flaky(request):
        hits["flaky"] += 1
        return web.Response(status=503)

    async def missing(request):
        hits["missing"] += 1
        return web.Response(status=404)

    async def chunked(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(40):  # 2.5 MiB without a Content-Length
            await resp.write(b"x" * 65536)
        return resp

    async def never(request):
        hits["never"] += 1
        await asyncio.sleep(3600)
        return web.Response()

    async def redirect(request):
        hits["redirect"] += 1
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def loop(request):
        hits["loop"] += 1
        return web.Response(status=302, headers={"Location": "/loop"})

    app = web.Application()
    for path, h in [("/ok", ok), ("/flaky", flaky), ("/missing", missing), ("/chunked", chunked),
                    ("/never", never), ("/redirect", redirect), ("/loop", loop)]:
        app.router.add_get(path, h)
    srv = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{srv.port}", srv.port, hits, body


@pytest.mark.parametrize("address,why", [
    ("127.0.0.1", "loopback"), ("127.5.5.5", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"),
    ("10.0.0.1", "private"), ("172.16.3.4", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.1.1.1", "private"),
    ("100.64.0.1", "not globally routable"),
])
def test_forbidden_addresses(address, why) -> None:
    assert address_refusal(address) == why


def test_public_and_exempted_addresses() -> None:
    import ipaddress

    assert address_refusal("131.215.125.1") is None
    assert address_refusal("2001:4860:4860::8888") is None
    nets = (ipaddress.ip_network("10.1.2.0/24"),)
    assert address_refusal("10.1.2.7", nets) is None
    assert address_refusal("::ffff:10.1.2.7", nets) is None
    assert address_refusal("10.1.3.7", nets) == "private"


def test_bad_network_in_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allowed_networks"):
        dataclasses.replace(packaged_defaults().fetch, allowed_networks=("not-a-net",)).validate()


def test_defaults_allow_only_gracedb_and_gcn() -> None:
    cfg = load_config(env={}).fetch
    assert "gracedb.ligo.org" in cfg.allowed_hosts and "gcn.nasa.gov" in cfg.allowed_hosts
    assert cfg.allowed_networks == () and cfg.local_dir == ""


@pytest.mark.parametrize("url", ["/etc/passwd", "file:///etc/passwd", "/proc/self/environ", "/dev/zero",
                                 "relative/skymap.fits"])
async def test_local_paths_are_refused_without_a_local_dir(url) -> None:
    with pytest.raises(FetchError, match="local sky-map paths are not read") as e:
        await fetch_bytes(url, load_config(env={}).fetch)
    assert not e.value.transient


@pytest.mark.parametrize("url", ["ftp://gracedb.ligo.org/x.fits", "gopher://gracedb.ligo.org/",
                                 "data:text/plain,abc", "jar:http://gracedb.ligo.org/x!/"])
async def test_other_schemes_are_refused(url) -> None:
    with pytest.raises(FetchError, match="scheme"):
        await fetch_bytes(url, load_config(env={}).fetch)


async def test_host_outside_the_allow_list_is_refused(server) -> None:
    base, port, hits, _ = server
    cfg = dataclasses.replace(LOCAL, allowed_hosts=("gracedb.ligo.org",))
    with pytest.raises(FetchError, match="not in fetch.allowed_hosts") as e:
        await fetch_bytes(f"{base}/ok", cfg)
    assert not e.value.transient and hits["ok"] == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "169.254.169.254", "[::ffff:127.0.0.1]", "0.0.0.0"])
async def test_internal_literal_addresses_are_refused_even_when_listed(server, host) -> None:
    base, port, hits, _ = server
    bare = host.strip("[]")
    cfg = dataclasses.replace(LOCAL, allowed_hosts=(bare, host), allowed_networks=())
    with pytest.raises(FetchError, match="address") as e:
        await fetch_bytes(f"http://{host}:{port}/ok", cfg)
    assert not e.value.transient and hits["ok"] == 0


async def test_a_name_resolving_to_loopback_is_refused_by_the_resolver(server) -> None:
    """``localhost`` is allowed by name but resolves to 127.0.0.1: checked at connection time."""
    base, port, hits, _ = server
    cfg = dataclasses.replace(LOCAL, allowed_hosts=("localhost",), allowed_networks=())
    t0 = time.perf_counter()
    with pytest.raises(FetchError, match="resolves to .*loopback") as e:
        await fetch_bytes(f"http://localhost:{port}/ok", cfg)
    assert not e.value.transient and hits["ok"] == 0
    assert time.perf_counter() - t0 < 1.0  # refused once, not retried


async def test_resolver_returns_the_checked_addresses() -> None:
    import ipaddress

    r = CheckedResolver((ipaddress.ip_network("127.0.0.0/8"),))
    infos = await r.resolve("localhost", 80)
    assert infos and all(ipaddress.ip_address(i["host"]).is_loopback for i in infos)
    await r.close()


async def test_allowed_server_is_fetched(server) -> None:
    base, port, hits, body = server
    assert await fetch_bytes(f"{base}/ok", LOCAL) == body
    sess = checked_session(LOCAL)
    try:
        assert await fetch_bytes(f"{base}/ok", LOCAL, sess) == body
    finally:
        await sess.close()


async def test_an_unchecked_session_is_refused(server) -> None:
    import aiohttp

    base, *_ = server
    async with aiohttp.ClientSession() as s:
        with pytest.raises(FetchError, match="checked session"):
            await fetch_bytes(f"{base}/ok", LOCAL, s)


async def test_redirects_are_checked_again(server) -> None:
    base, port, hits, body = server
    assert await fetch_bytes(f"{base}/redirect?to=/ok", LOCAL) == body
    for target, match in [(f"http://localhost:{port}/ok", "allowed_hosts"),
                          ("file:///etc/passwd", "scheme"),
                          ("http://169.254.169.254/latest/meta-data/", "allowed_hosts")]:
        hits.clear()
        with pytest.raises(FetchError, match=match):
            await fetch_bytes(f"{base}/redirect?to={target}", LOCAL)
        assert hits["ok"] == 0
    cfg = dataclasses.replace(LOCAL, allowed_hosts=("127.0.0.1", "169.254.169.254"))
    with pytest.raises(FetchError, match="link-local"):
        await fetch_bytes(f"{base}/redirect?to=http://169.254.169.254/latest/", cfg)
    hits.clear()
    with pytest.raises(FetchError, match="more than 3 redirects"):
        await fetch_bytes(f"{base}/loop", LOCAL)
    assert hits["loop"] == 4


async def test_only_transient_failures_are_retried(server) -> None:
    base, port, hits, _ = server
    with pytest.raises(FetchError, match="404") as e:
        await fetch_bytes(f"{base}/missing", LOCAL)
    assert not e.value.transient and hits["missing"] == 1
    with pytest.raises(FetchError, match="503") as e:
        await fetch_bytes(f"{base}/flaky", LOCAL)
    assert e.value.transient and hits["flaky"] == 3


async def test_size_limit_without_content_length(server) -> None:
    base, *_ = server
    with pytest.raises(FetchError, match="over the 1 MiB limit") as e:
        await fetch_bytes(f"{base}/chunked", LOCAL)
    assert not e.value.transient


async def test_total_deadline_bounds_a_server_that_never_answers(server) -> None:
    base, port, hits, _ = server
    cfg = dataclasses.replace(LOCAL, timeout_s=0.4, retries=50, backoff_s=0.01, total_s=1.0)
    t0 = time.perf_counter()
    with pytest.raises(FetchError, match="deadline|within"):
        await fetch_bytes(f"{base}/never", cfg)
    assert time.perf_counter() - t0 < 2.0
    assert 1 <= hits["never"] <= 4


async def test_local_dir_reads_regular_files_inside_only(tmp_path) -> None:
    root = tmp_path / "maps"
    root.mkdir()
    (root / "a.fits").write_bytes(b"SIMPLE")
    (tmp_path / "secret").write_bytes(b"token")
    os.symlink(tmp_path / "secret", root / "link.fits")
    os.symlink("/dev/zero", root / "zero.fits")
    os.mkfifo(root / "fifo.fits")
    cfg = dataclasses.replace(LOCAL, local_dir=str(root))
    assert await fetch_bytes(str(root / "a.fits"), cfg) == b"SIMPLE"
    assert await fetch_bytes("a.fits", cfg) == b"SIMPLE"
    assert await fetch_bytes(f"file://{root}/a.fits", cfg) == b"SIMPLE"
    for bad, match in [(str(root / ".." / "secret"), "outside"), (str(root / "link.fits"), "outside"),
                       (str(root / "zero.fits"), "outside"), ("/etc/passwd", "outside"),
                       (str(root / "fifo.fits"), "not a regular file")]:
        t0 = time.perf_counter()
        with pytest.raises(FetchError, match=match):
            await asyncio.wait_for(fetch_bytes(bad, cfg), 5)
        assert time.perf_counter() - t0 < 1.0
    (root / "big.fits").write_bytes(b"x" * (2 * 2**20))
    with pytest.raises(FetchError, match="limit"):
        await fetch_bytes(str(root / "big.fits"), cfg)


async def test_content_encoding_is_not_inflated_while_fetching(aiohttp_server) -> None:
    """A gzip Content-Encoding bomb arrives compressed (and counts at that size)."""
    import gzip

    bomb = gzip.compress(b"\0" * (16 * 2**20))

    async def h(request):
        assert request.headers.get("Accept-Encoding") == "identity"
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/bomb", h)
    srv = await aiohttp_server(app, host="127.0.0.1")
    assert await fetch_bytes(f"http://127.0.0.1:{srv.port}/bomb", LOCAL) == bomb


def test_replay_reads_local_sky_maps_only_with_skymap_dir(tmp_path, sim_bytes, capsys) -> None:
    from gwfollow.cli.main import main as cli_main

    from .conftest import shared_path

    d = tmp_path / "archive"
    d.mkdir()
    (d / "maps").mkdir()
    (d / "maps" / "sim.multiorder.fits.gz").write_bytes(__import__("gzip").compress(sim_bytes))
    xml = shared_path("voevents", "MS181101ab-2-Preliminary.xml").read_bytes()
    url = b"https://emfollow.docs.ligo.org/userguide/_static/bayestar.multiorder.fits,0"
    (d / "MS181101ab-2-Preliminary.xml").write_bytes(xml.replace(url, b"maps/sim.multiorder.fits.gz"))
    assert cli_main(["replay", str(d / "MS181101ab-2-Preliminary.xml"), "--quiet", "--workers", "1"]) == 1
    assert "local sky-map paths are not read" in capsys.readouterr().err
    assert cli_main(["replay", str(d / "MS181101ab-2-Preliminary.xml"), "--quiet", "--workers", "1",
                     "--skymap-dir", str(d / "maps")]) == 0
    assert "1 processed" in capsys.readouterr().out
