"""The SQLite store: migrations, durable intake, idempotency, retractions."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from gwfollow.config import packaged_defaults
from gwfollow.errors import StoreError
from gwfollow.products.core import process_message
from gwfollow.store import MIGRATIONS, Store

from .conftest import shared_path


def _accept(store: Store, body: bytes, source: str = "test"):
    return store.accept_raw(body, source, "json", hashlib.sha256(body).hexdigest())


def test_migrations_and_wal(tmp_path) -> None:
    p = tmp_path / "db" / "g.sqlite"
    s = Store(p)
    assert s.schema_version == len(MIGRATIONS)
    assert s.query("PRAGMA journal_mode")[0][0] == "wal"
    s.close()
    s = Store(p)  # reopening applies nothing new
    assert s.schema_version == len(MIGRATIONS)
    s.close()
    db = sqlite3.connect(p)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(p)


def test_accept_raw_is_durable_and_deduplicated(tmp_path) -> None:
    s = Store(tmp_path / "g.sqlite")
    a = _accept(s, b"hello")
    b = _accept(s, b"hello")
    c = _accept(s, b"other")
    assert a.new and not b.new and a.raw_id == b.raw_id and c.raw_id != a.raw_id
    assert s.raw(a.raw_id).deliveries == 2 and s.raw(a.raw_id).body == b"hello"
    assert s.pending_raw_ids() == [a.raw_id, c.raw_id]
    s.close()
    # Another connection (another process after a crash) sees the committed rows.
    s2 = Store(tmp_path / "g.sqlite")
    assert s2.counts()["raw_messages"] == 2


def test_record_alert_idempotent_and_retraction(tmp_path) -> None:
    cfg = packaged_defaults().updated(telescopes=(), sites=())
    s = Store(tmp_path / "g.sqlite")
    pre = shared_path("alerts", "MS181101ab-preliminary.json").read_bytes()
    ret = shared_path("alerts", "MS181101ab-retraction.json").read_bytes()
    upd = shared_path("alerts", "MS181101ab-update.json").read_bytes()
    r1 = _accept(s, pre)
    res = process_message(pre, "pre", cfg)
    rec = s.record_alert(r1.raw_id, res, True)
    assert rec.alert_id is not None and rec.status == "processed"
    again = s.record_alert(r1.raw_id, res, True)  # same key: nothing added
    assert again.alert_id is None and again.status == "duplicate"
    assert s.counts()["alerts"] == 1 and s.counts()["products"] == 3
    prods = s.products_of("MS181101ab")
    assert {p["level"] for p in prods if p["kind"] == "moc"} == {0.5, 0.9}
    assert [p["name"] for p in prods if p["kind"] == "galaxies"] == ["OpenNGC"]
    assert not any(p["withdrawn"] for p in prods)
    r2 = _accept(s, ret)
    s.record_alert(r2.raw_id, process_message(ret, "ret", cfg), True)
    assert s.event("MS181101ab").state == "retracted"
    assert all(p["withdrawn"] for p in s.products_of("MS181101ab"))
    r3 = _accept(s, upd)
    late = s.record_alert(r3.raw_id, process_message(upd, "upd", cfg), True)
    assert late.status == "ignored" and "retracted" in late.note
    last = next(a for a in s.alerts_of("MS181101ab") if a["alert_type"] == "UPDATE")
    assert not last["acted"] and "retracted" in last["note"]
    assert s.raw(r3.raw_id).status == "ignored"
    assert s.counts()["skymaps"] == 1  # nothing computed for the late update is stored


def test_retraction_for_unknown_event_is_recorded(tmp_path) -> None:
    """The event is born retracted: a later alert of it is stored but not acted on (issue 13)."""
    s = Store(tmp_path / "g.sqlite")
    ret = shared_path("alerts", "S241126dm-retraction.json").read_bytes()
    r = _accept(s, ret)
    bare = packaged_defaults().updated(telescopes=(), sites=())
    rec = s.record_alert(r.raw_id, process_message(ret, "ret", bare), True)
    assert rec.status == "processed" and s.event("S241126dm").state == "retracted"
    assert s.counts()["alerts"] == 1 and s.dead_letters() == []


def test_migration_from_version_1_keeps_products(tmp_path) -> None:
    """A database written by schema 1 is upgraded in place without losing rows."""
    p = tmp_path / "old.sqlite"
    db = sqlite3.connect(p)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO raw_messages (received_at, source, kind, content_hash, size, body) "
               "VALUES ('t', 's', 'json', 'h', 1, x'00')")
    db.execute("INSERT INTO alerts (raw_id, superevent_id, alert_type, time_created, content_hash, kind, summary, "
               "stored_at) VALUES (1, 'S1', 'PRELIMINARY', 't', 'h', 'json', '{}', 't')")
    db.execute("INSERT INTO skymaps (superevent_id, alert_id, sha256, data, meta, stored_at) "
               "VALUES ('S1', 1, 'x', x'00', '{}', 't')")
    db.execute("INSERT INTO products (superevent_id, skymap_id, kind, level, boundary, format, data, provenance, "
               "created_at) VALUES ('S1', 1, 'moc', 0.9, 'split', 'fits', x'01', '{}', 't')")
    db.commit()
    db.close()
    s = Store(p)
    assert s.schema_version == len(MIGRATIONS)
    prods = s.products_of("S1")
    assert len(prods) == 1 and prods[0]["name"] == "" and prods[0]["level"] == 0.9


def test_concurrent_first_open_migrates_once(tmp_path) -> None:
    """Two processes opening a new database at once (the service and a tool) must not collide."""
    import multiprocessing

    p = tmp_path / "race.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=Store, args=(p,)) for _ in range(4)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
    assert all(pr.exitcode == 0 for pr in procs)
    assert Store(p).schema_version == len(MIGRATIONS)
