"""The web pages in a real browser: headless Debian Chromium driven by playwright, offline."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import numpy as np

from gwfollow.config import CoverageConfig, load_config, named_config
from gwfollow.kernels import ranges as kr
from gwfollow.regions.mocio import space_moc_fits_bytes
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.service import make_app
from gwfollow.service.auth import new_token, token_digest
from gwfollow.service.pages import ALADIN_JS, CSP, TEMPLATES
from gwfollow.store import Store

from .conftest import IN_CI, shared_path
from .system_tools import require_tool

ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         # Offline: every host but the test server's is unreachable.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
# What may fail offline: the survey background from CDS (names unresolved; Aladin Lite then
# also tries the survey id as a path on this server, which answers 404).
OFFLINE = re.compile(r"ERR_NAME_NOT_RESOLVED|alasky\.cds\.unistra\.fr|P/DSS2/color|HiPS|^pageerror: Failed to fetch$")


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_tool("chromium", "chromium")


@pytest.fixture(scope="module")
def aladin() -> Path:
    if not ALADIN_JS.is_file():
        msg = f"{ALADIN_JS} is missing: `make static` installs Aladin Lite from npm"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return ALADIN_JS


@pytest.fixture(scope="module")
def page_db(tmp_path_factory):
    import asyncio

    d = tmp_path_factory.mktemp("pages")
    db = d / "pages.sqlite"
    # A coverage (all of the sky at order 3) for the viewer's coverage layer.
    allsky = np.stack([np.arange(768, dtype=np.int64) << 52, (np.arange(768, dtype=np.int64) + 1) << 52], axis=1)
    (d / "allsky.fits").write_bytes(space_moc_fits_bytes(kr.normalize(allsky), 3))
    cov = named_config(CoverageConfig, "allsky", path=str(d / "allsky.fits"))
    cfg = load_config(env={}).updated(store=dict(path=str(db)), coverages=(cov,))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1))
    store = Store(db)
    names = ["S241102br-preliminary.json", "S241102br-initial.json", "MS181101ab-preliminary.json"]
    asyncio.run(replay_messages(order_messages([(shared_path("alerts", n).read_bytes(), n) for n in names]),
                                cfg, store))
    store.close()
    return cfg


async def test_pages_are_escaped_and_carry_a_csp(page_db, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(page_db))
    r = await client.get("/")
    assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
    html = await r.text()
    # Newest first: S241102br's alerts were processed after MS181101ab's (replayed in time_created order).
    assert html.index(">S241102br<") < html.index(">MS181101ab<")
    r = await client.get("/events/S241102br")
    page = await r.text()
    assert r.status == 200 and "<h2>Facts</h2>" in page and "PRELIMINARY -&gt; INITIAL" in page
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "<script>" not in page  # no inline script: the CSP would block it
    assert 'href="/api/v1/events/S241102br/plan?telescope=ZTF&amp;site=Palomar&amp;format=votable"' in page
    assert (await client.get("/events/S000000zz")).status == 404
    assert (await client.get("/static/event.js")).status == 200
    r = await client.get("/events/S241102br/coverage/allsky.json")
    assert r.status == 200
    from mocpy import MOC

    cut = MOC.from_json(await r.json())
    m90 = MOC.from_json(await (await client.get("/api/v1/events/S241102br/moc?level=0.9&format=json")).json())
    assert cut == m90  # all of the sky, cut to the 90 % region
    assert (await client.get("/events/S241102br/coverage/nope.json")).status == 404


def test_templates_escape_what_they_show() -> None:
    """Whatever an alert carries is untrusted: the templates escape it."""
    evil = "<script>alert(1)</script>"
    html = TEMPLATES.get_template("index.html").render(events=[
        {"superevent_id": evil, "state": "active", "group": evil, "significant": None, "updated_at": "now"}])
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_event_page_in_chromium(page_db, aiohttp_server, chromium, aladin) -> None:
    from playwright.async_api import async_playwright

    server = await aiohttp_server(make_app(page_db), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text} [{m.location.get('url', '')}]")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            await page.goto(f"{base}/", wait_until="load")
            # Selectors, not wait_for_function: the page's CSP forbids the eval that would need.
            await page.locator("#refreshed", has_text=re.compile(r"^refreshed ")).wait_for()
            rows = await page.locator("#events tbody tr td:first-child").all_text_contents()
            assert set(rows) == {"S241102br", "MS181101ab"}
            await page.goto(f"{base}/events/S241102br", wait_until="load")
            await page.wait_for_selector("body[data-ready]", state="attached", timeout=60_000)
            (ARTEFACTS / "console.txt").parent.mkdir(exist_ok=True)
            (ARTEFACTS / "console.txt").write_text("\n".join(errors))
            assert await page.evaluate("document.body.dataset.ready") == "true", errors
            assert await page.evaluate("typeof window.aladin === 'object' && window.aladin !== null")
            layers = await page.evaluate("window.gwfollowLayers")
            assert layers["mocs"] == ["90 % region", "50 % region", "coverage allsky"]
            assert layers["catalogs"][0]["name"] == "galaxies OpenNGC" and layers["catalogs"][0]["count"] > 10
            assert layers["overlays"][0]["name"] == "fields ZTF" and layers["overlays"][0]["count"] >= 1
            # The observation plan: its footprints as an overlay (one per exposure) and its table.
            plan = layers["plans"][0]
            assert plan["name"] == "ZTF@Palomar" and plan["exposures"] >= 1
            assert plan["footprints"] == plan["exposures"]
            assert {"name": "plan ZTF@Palomar", "count": plan["exposures"]} in layers["overlays"]
            rows = page.locator('details[data-plan="ZTF@Palomar"] table.plan-table tbody tr')
            assert await rows.count() == plan["exposures"]
            first = await rows.first.locator("td").all_text_contents()
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first[2]), first  # start (UTC)
            summary = await page.locator('details[data-plan="ZTF@Palomar"] summary').text_content()
            covered = re.search(r"(\d+) exposure\(s\) covering ([01]\.\d{3}) of the probability", summary)
            assert covered and int(covered[1]) == plan["exposures"], summary
            last = await rows.last.locator("td").all_text_contents()
            assert abs(float(last[-1]) - float(covered[2])) <= 1e-3  # the last cumprob is what the plan covers
            # The layers are in Aladin Lite itself, not only in our bookkeeping.
            n_cat = await page.evaluate("window.aladin.view.catalogs.length")
            n_ovl = await page.evaluate("window.aladin.view.overlays.length")
            assert n_cat >= 1 and n_ovl >= 2
            await page.wait_for_timeout(3000)  # let the WebGL canvas draw
            ARTEFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTEFACTS / "event-S241102br.png"), full_page=True)
        finally:
            await browser.close()
    unexpected = [e for e in errors if not OFFLINE.search(e)]
    assert unexpected == []


async def test_signin_with_a_read_token_in_chromium(page_db, aiohttp_server, chromium, aladin) -> None:
    """``read_open = false``: without a token the page says what to do; signed in, every layer loads;
    the token is kept in an HttpOnly SameSite=Strict cookie that grants reading, never writing."""
    from playwright.async_api import async_playwright

    token = new_token()
    cfg = dataclasses.replace(page_db, service=dataclasses.replace(
        page_db.service, read_open=False, read_tokens_sha256=(token_digest(token),)))
    server = await aiohttp_server(make_app(cfg), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            r = await page.goto(f"{base}/events/S241102br", wait_until="load")
            assert r.status == 401
            assert "read token" in await page.locator("main").text_content()
            assert await page.locator("#aladin").count() == 0  # no data before signing in
            await page.fill("input[name=token]", "not-a-token")
            await page.click("#signin button")
            await page.locator("#signin-error", has_text="unknown token").wait_for()
            ARTEFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTEFACTS / "signin.png"))
            await page.fill("input[name=token]", token)
            await page.click("#signin button")
            await page.wait_for_url(f"{base}/events/S241102br")
            await page.wait_for_selector("body[data-ready]", state="attached", timeout=60_000)
            assert await page.evaluate("document.body.dataset.ready") == "true", errors
            layers = await page.evaluate("window.gwfollowLayers")
            assert layers["mocs"][:2] == ["90 % region", "50 % region"] and layers["catalogs"] and layers["plans"]
            assert await page.evaluate("document.cookie") == ""  # no script can read the token
            (cookie,) = await context.cookies()
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] == token
            # The cookie reads the API, but never writes.
            r = await page.request.get(f"{base}/api/v1/events/S241102br/moc?level=0.9&format=json")
            assert r.status == 200
            r = await page.request.post(f"{base}/api/v1/alerts", data=b"{}", headers={"Content-Type": "application/json"})
            assert r.status == 401
            await page.click("form.signout button")
            await page.wait_for_url(f"{base}/")
            assert await context.cookies() == []
            assert "read token" in await page.locator("main").text_content()
        finally:
            await browser.close()


async def test_signin_refuses_other_sites_and_keeps_next_local(page_db, aiohttp_client) -> None:
    token = new_token()
    cfg = dataclasses.replace(page_db, service=dataclasses.replace(
        page_db.service, read_open=False, read_tokens_sha256=(token_digest(token),)))
    client = await aiohttp_client(make_app(cfg))
    r = await client.post("/signin", data={"token": token, "next": "/"}, headers={"Origin": "https://evil.example"},
                          allow_redirects=False)
    assert r.status == 403 and "gwfollow_read" not in r.cookies
    r = await client.post("/signin", data={"token": token, "next": "//evil.example/x"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    r = await client.get("/api/v1/events/S241102br/moc?level=0.9", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401  # a wrong bearer token is not rescued by the cookie


class _AcceptAll:
    """A SAMP Web Profile consent "dialog" that accepts every registration (the hub sets the queues)."""

    queue_request = None
    queue_result = None

    def start(self) -> threading.Thread:
        def run() -> None:
            while True:
                while self.queue_request is None:
                    time.sleep(0.05)
                req = self.queue_request.get()
                if req is None:
                    return
                self.queue_result.put(True)

        t = threading.Thread(target=run, daemon=True, name="samp-consent")
        t.start()
        return t


async def test_send_to_samp_from_the_page(page_db, aiohttp_server, chromium, aladin, tmp_path) -> None:
    """The page's "send" button reaches a SAMP hub's Web Profile; a desktop-side client receives
    the MOCs and tables and can load their URLs."""
    from playwright.async_api import async_playwright
    from pyvo.samp import SAMPHubServer, SAMPIntegratedClient

    server = await aiohttp_server(make_app(page_db), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    consent = _AcceptAll()
    hub = SAMPHubServer(addr="127.0.0.1", web_profile=True, web_profile_dialog=consent,
                        lockfile=str(tmp_path / "samp.lock"), label="gwfollow-test")
    hub.start()
    consent.start()
    got: list[tuple[str, dict, int]] = []

    got_aladin: list[tuple[str, dict, bytes]] = []

    def receive(private_key, sender_id, msg_id, mtype, params, extra) -> None:
        with urllib.request.urlopen(params["url"], timeout=20) as r:
            got.append((mtype, params, len(r.read())))
        rx.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    def receive_aladin(private_key, sender_id, msg_id, mtype, params, extra) -> None:
        with urllib.request.urlopen(params["url"], timeout=20) as r:
            got_aladin.append((mtype, params, r.read()))
        aladin_rx.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    rx = SAMPIntegratedClient(name="receiver")
    rx.connect(hub=hub)
    rx.bind_receive_call("coverage.load.moc.fits", receive)
    rx.bind_receive_call("table.load.votable", receive)
    # Subscribed as Aladin Desktop 12.0 is: no coverage.load.moc.fits, so the MOCs come as FITS images.
    aladin_rx = SAMPIntegratedClient(name="Aladin")
    aladin_rx.connect(hub=hub)
    aladin_rx.bind_receive_call("image.load.fits", receive_aladin)
    aladin_rx.bind_receive_call("table.load.votable", receive_aladin)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
            try:
                page = await browser.new_page()
                await page.goto(f"{base}/events/S241102br", wait_until="load")
                await page.click("#samp-send")
                await page.locator("#samp-status", has_text=re.compile("sent|no SAMP hub")).wait_for(timeout=120_000)  # a hang guard: loaded CI is slow
                status = await page.locator("#samp-status").text_content()
                # Two MOCs, two tables and the plan went to each receiver, which loaded them before replying.
                assert status.startswith("5 product(s) sent to the SAMP hub's clients, 10 loaded"), status
            finally:
                await browser.close()
    finally:
        rx.disconnect()
        aladin_rx.disconnect()
        hub.stop()
        consent.queue_request.put(None)
    assert sorted(m for m, _, _ in got) == ["coverage.load.moc.fits"] * 2 + ["table.load.votable"] * 3
    assert any("/plan?" in p["url"] and p["name"].endswith("plan (ZTF@Palomar)") for _, p, _ in got)
    assert all(n > 100 and p["url"].startswith(base) for _, p, n in got)
    assert sorted(m for m, _, _ in got_aladin) == ["image.load.fits"] * 2 + ["table.load.votable"] * 3
    from astropy.io import fits

    assert all(fits.getheader(io.BytesIO(b), 1)["MOCDIM"] == "SPACE" for m, _, b in got_aladin if m == "image.load.fits")
