"""SAMP: products sent to a real hub (pyvo's) and received by a real client, all on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import io
import urllib.request
import warnings

import pytest
from astropy.io import fits, votable

from gwfollow.cli.main import main
from gwfollow.config import load_config
from gwfollow.errors import SampError
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.products.samp import (IMAGE_MTYPE, MOC_MTYPE, TABLE_MTYPE, products_from_skymap,
                                    products_from_store, send_products)
from gwfollow.store import Store

from .conftest import shared_path

MTYPES = (MOC_MTYPE, TABLE_MTYPE, IMAGE_MTYPE)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A SAMP hub on 127.0.0.1 with its own lock file (found through $SAMP_HUB)."""
    from pyvo.samp import SAMPHubServer

    lock = tmp_path / "samp.lock"
    h = SAMPHubServer(addr="127.0.0.1", web_profile=False, lockfile=str(lock), label="gwfollow-test")
    h.start()
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{lock.as_uri()}")
    yield h
    h.stop()


class Receiver:
    """A client subscribed to the three message types; it loads each URL as it arrives, then replies.

    With ``fail_on`` it answers calls of that message type with ``samp.error``,
    as TOPCAT does for a table it cannot read.
    """

    def __init__(self, hub, fail_on: str | None = None, name: str = "receiver", mtypes=MTYPES) -> None:
        from pyvo.samp import SAMPIntegratedClient

        self.got: list[tuple[str, dict, bytes]] = []
        self.fail_on = fail_on
        self.client = SAMPIntegratedClient(name=name)
        self.client.connect(hub=hub)
        for mt in mtypes:
            self.client.bind_receive_call(mt, self._receive)

    def _receive(self, private_key, sender_id, msg_id, mtype, params, extra) -> None:
        if mtype == self.fail_on:
            self.client.reply(msg_id, {"samp.status": "samp.error",
                                       "samp.error": {"samp.errortxt": "cannot read this"}})
            return
        with urllib.request.urlopen(params["url"], timeout=10) as r:  # the URL must be loadable
            body = r.read()
        self.got.append((mtype, params, body))
        self.client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    def close(self) -> None:
        self.client.disconnect()


def _check(got, n_tables: int) -> None:
    assert sorted(m for m, _, _ in got) == sorted([MOC_MTYPE, IMAGE_MTYPE] + [TABLE_MTYPE] * n_tables)
    for mtype, params, body in got:
        if mtype == MOC_MTYPE:
            hdu = fits.open(io.BytesIO(body))[1]
            assert hdu.header["ORDERING"] == "NUNIQ" and hdu.header["CREDLEV"] == 0.9
            assert len(hdu.data["UNIQ"]) > 0
        elif mtype == TABLE_MTYPE:
            t = votable.parse(io.BytesIO(body)).get_first_table()
            assert {f.name: f.ucd for f in t.fields}["ra"] == "pos.eq.ra;meta.main"
            assert params["table-id"]
        else:
            assert fits.open(io.BytesIO(body))[1].header["ORDERING"] == "NUNIQ"  # the multi-order sky map


def test_send_a_skymap_over_file_and_http_urls(hub, sim_path, tmp_path) -> None:
    rx = Receiver(hub)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = load_config(env={})
            products = products_from_skymap(sim_path, cfg, level=0.9, telescopes=["ZTF"])
            sent = send_products(products, directory=tmp_path / "out", hub_params=hub.params)
        assert [m["samp.mtype"] for m in sent] == [MOC_MTYPE, TABLE_MTYPE, TABLE_MTYPE, IMAGE_MTYPE]
        assert all(m["samp.params"]["url"].startswith("file://") for m in sent)
        assert all(rx.client.get_public_id() in m["recipients"] for m in sent)
        # Synchronous calls: every file has been loaded, and acknowledged, when the send returns.
        assert all(m["replies"] == {rx.client.get_public_id(): "ok"} for m in sent)
        assert all(m["names"] == {rx.client.get_public_id(): "receiver"} for m in sent)
        _check(rx.got, 2)
        first_ids = {m["samp.params"].get("table-id") for m in sent} - {None}
        rx.got.clear()
        sent = send_products(products, hub_params=hub.params, serve_seconds=0.1)
        assert all(m["samp.params"]["url"].startswith("http://127.0.0.1:") for m in sent)
        _check(rx.got, 2)
        # TOPCAT refuses a table-id it has seen ("Duplicate table-id"): each send has its own.
        assert first_ids.isdisjoint({m["samp.params"].get("table-id") for m in sent})
    finally:
        rx.close()


def test_cli_sends_a_stored_event(hub, tmp_path, capsys) -> None:
    import asyncio

    db = tmp_path / "s.sqlite"
    cfg = load_config(env={}).updated(store=dict(path=str(db)))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1))
    store = Store(db)
    msgs = order_messages([(shared_path("alerts", "S241102br-preliminary.json").read_bytes(), "p.json")])
    asyncio.run(replay_messages(msgs, cfg, store))
    store.close()
    rx = Receiver(hub)
    try:
        assert main(["samp", "--event", "S241102br", "--db", str(db), "--dir", str(tmp_path / "f")]) == 0
        _check(rx.got, 3)  # OpenNGC galaxies, ZTF fields and the ZTF@Palomar plan of the default configuration
        plan = next(b for mt, p, b in rx.got if p["name"] == "S241102br plan (ZTF@Palomar)")
        assert "s_region" in votable.parse(io.BytesIO(plan)).get_first_table().to_table().colnames
        out = capsys.readouterr().out
        # The client's id and its name from the hub's metadata, with its reply.
        assert "coverage.load.moc.fits" in out and f"{rx.client.get_public_id()} receiver (ok)" in out
    finally:
        rx.close()
    store = Store(db)
    try:
        with pytest.raises(SampError, match="no MOC at level 0.7"):
            products_from_store(store, "S241102br", level=0.7)
        with pytest.raises(SampError, match="no event"):
            products_from_store(store, "S000000x")
    finally:
        store.close()


def test_no_hub_is_a_transient_error(tmp_path, monkeypatch, sim_path) -> None:
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'none.lock').as_uri()}")
    products = products_from_skymap(sim_path, load_config(env={}), catalogs=[])
    with pytest.raises(SampError) as err:
        send_products(products, directory=tmp_path)
    assert err.value.transient and "TOPCAT" in str(err.value)


def test_a_client_refusing_a_file_is_reported(hub, sim_path, tmp_path) -> None:
    rx = Receiver(hub, fail_on=TABLE_MTYPE)
    try:
        products = products_from_skymap(sim_path, load_config(env={}), catalogs=[], telescopes=["ZTF"])
        sent = send_products(products, directory=tmp_path, hub_params=hub.params, reply_seconds=5)
        me = rx.client.get_public_id()
        by_type = {m["samp.mtype"]: m["replies"][me] for m in sent}
        assert by_type[MOC_MTYPE] == "ok" and by_type[IMAGE_MTYPE] == "ok"
        assert by_type[TABLE_MTYPE] == "samp.error: cannot read this"
    finally:
        rx.close()


def test_aladin_gets_the_moc_as_a_fits_image(hub, sim_path, tmp_path) -> None:
    """Aladin Desktop 12.0 does not subscribe to coverage.load.moc.fits but draws a MOC sent as
    image.load.fits: a client named Aladin with those subscriptions gets the MOC that way."""
    aladin = Receiver(hub, name="Aladin", mtypes=(IMAGE_MTYPE, TABLE_MTYPE))
    other = Receiver(hub, name="ds9", mtypes=(IMAGE_MTYPE,))  # not Aladin: no MOC for it
    try:
        products = products_from_skymap(sim_path, load_config(env={}), catalogs=[], telescopes=[])
        sent = send_products(products, directory=tmp_path, hub_params=hub.params)
        moc = next(m for m in sent if m["samp.mtype"] == MOC_MTYPE)
        me = aladin.client.get_public_id()
        assert moc["recipients"] == [me] and moc["as"] == {me: IMAGE_MTYPE} and moc["replies"] == {me: "ok"}
        assert moc["names"] == {me: "Aladin"}
        got = [(mt, p["name"]) for mt, p, _ in aladin.got]
        assert (IMAGE_MTYPE, moc["samp.params"]["name"]) in got
        assert fits.getheader(io.BytesIO(next(b for mt, p, b in aladin.got if p["name"] == moc["samp.params"]["name"])),
                              1)["MOCDIM"] == "SPACE"
        assert [p["name"] for _, p, _ in other.got] == [m["samp.params"]["name"] for m in sent
                                                        if m["samp.mtype"] == IMAGE_MTYPE]
    finally:
        aladin.close()
        other.close()
