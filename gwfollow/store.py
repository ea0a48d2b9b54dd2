"""Durable storage: SQLite in WAL mode, schema with migrations.

What is kept (see ``MIGRATIONS``):

* ``raw_messages``: every message accepted, byte for byte, before anything
  else happens to it (at-least-once delivery: the Kafka offset is committed
  only after this row is); unique by content hash, so a redelivered message
  is recognised and never stored twice.
* ``events``: one row per superevent, ``active`` or ``retracted``.
* ``alerts``: parsed alerts, unique on (superevent id, alert type, time
  created, content hash): processing is idempotent.
* ``skymaps``: sky-map versions (sha256, bytes, summary).
* ``products``: MOCs per sky map and level (MOC 2.0 FITS bytes), with a
  ``withdrawn`` flag set by retractions.
* ``dead_letters``: messages that could not be parsed or processed, with
  the reason; the raw bytes stay in ``raw_messages``.
* ``timings``: seconds spent in each pipeline stage per message.
* ``deferred_work``: the second processing step of an alert (observability,
  coverages, plans, the combined sky map's products), inserted in the
  transaction that stores the first step's products and ``pending`` until
  the transaction that stores the slow ones marks it ``done``: a crash in
  between leaves it pending, and the next start does it.

The store is synchronous (``sqlite3``) and owned by one thread at a time;
the asynchronous service calls it through a single-thread executor
(:class:`gwfollow.pipeline.runner.Pipeline`), so the event loop never waits on a
disk write.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gwfollow.errors import StoreError
from gwfollow.records import DeferredParts, EventRecord, ProcessedAlert, ProcessedDeferred

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema.
    """
    CREATE TABLE raw_messages (
        id INTEGER PRIMARY KEY,
        received_at TEXT NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        content_hash TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        body BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'processed', 'ignored', 'dead')),
        status_reason TEXT,
        deliveries INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX raw_messages_status ON raw_messages(status);
    CREATE TABLE events (
        superevent_id TEXT PRIMARY KEY,
        state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retracted')),
        grp TEXT,
        significant INTEGER,
        is_mock INTEGER NOT NULL DEFAULT 0,
        first_seen TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        retracted_at TEXT
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        raw_id INTEGER NOT NULL REFERENCES raw_messages(id),
        superevent_id TEXT NOT NULL,
        alert_type TEXT NOT NULL,
        time_created TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        kind TEXT NOT NULL,
        acted INTEGER NOT NULL DEFAULT 1,
        note TEXT,
        summary TEXT NOT NULL,
        stored_at TEXT NOT NULL,
        UNIQUE (superevent_id, alert_type, time_created, content_hash)
    );
    CREATE INDEX alerts_event ON alerts(superevent_id, time_created);
    CREATE TABLE skymaps (
        id INTEGER PRIMARY KEY,
        superevent_id TEXT NOT NULL,
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        role TEXT NOT NULL DEFAULT 'gw' CHECK (role IN ('gw', 'combined')),
        sha256 TEXT NOT NULL,
        data BLOB NOT NULL,
        meta TEXT NOT NULL,
        stored_at TEXT NOT NULL,
        UNIQUE (alert_id, role)
    );
    CREATE INDEX skymaps_event ON skymaps(superevent_id);
    CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        superevent_id TEXT NOT NULL,
        skymap_id INTEGER NOT NULL REFERENCES skymaps(id),
        kind TEXT NOT NULL,
        level REAL,
        boundary TEXT,
        format TEXT NOT NULL,
        data BLOB NOT NULL,
        area_deg2 REAL,
        probability REAL,
        n_cells INTEGER,
        provenance TEXT NOT NULL,
        created_at TEXT NOT NULL,
        withdrawn INTEGER NOT NULL DEFAULT 0,
        UNIQUE (skymap_id, kind, level, boundary)
    );
    CREATE INDEX products_event ON products(superevent_id);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        raw_id INTEGER REFERENCES raw_messages(id),
        at TEXT NOT NULL,
        source TEXT NOT NULL,
        error_type TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE timings (
        id INTEGER PRIMARY KEY,
        raw_id INTEGER NOT NULL,
        stage TEXT NOT NULL,
        seconds REAL NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX timings_raw ON timings(raw_id);
    """,
    # 2: products get a name (catalogue, telescope, site, coverage), part of their key.
    """
    CREATE TABLE products_v2 (
        id INTEGER PRIMARY KEY,
        superevent_id TEXT NOT NULL,
        skymap_id INTEGER NOT NULL REFERENCES skymaps(id),
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        level REAL,
        boundary TEXT,
        format TEXT NOT NULL,
        data BLOB NOT NULL,
        area_deg2 REAL,
        probability REAL,
        n_cells INTEGER,
        provenance TEXT NOT NULL,
        created_at TEXT NOT NULL,
        withdrawn INTEGER NOT NULL DEFAULT 0,
        UNIQUE (skymap_id, kind, name, level, boundary)
    );
    INSERT INTO products_v2 (id, superevent_id, skymap_id, kind, name, level, boundary, format, data, area_deg2,
                             probability, n_cells, provenance, created_at, withdrawn)
        SELECT id, superevent_id, skymap_id, kind, '', level, boundary, format, data, area_deg2, probability,
               n_cells, provenance, created_at, withdrawn FROM products;
    DROP TABLE products;
    ALTER TABLE products_v2 RENAME TO products;
    CREATE INDEX products_event ON products(superevent_id);
    """,
    # 3: the delivery log of webhooks.
    """
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        delivery TEXT NOT NULL,
        url TEXT NOT NULL,
        superevent_id TEXT NOT NULL,
        change TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        status INTEGER,
        error TEXT,
        at TEXT NOT NULL
    );
    CREATE INDEX webhook_deliveries_delivery ON webhook_deliveries(delivery);
    """,
    # 4: dead letters say whether trying again may succeed, and when they were requeued.
    """
    ALTER TABLE dead_letters ADD COLUMN transient INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE dead_letters ADD COLUMN requeued_at TEXT;
    """,
    # 5: the webhook outbox: announcements survive a restart until delivered.
    """
    CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL,
        delivery TEXT NOT NULL UNIQUE,
        superevent_id TEXT NOT NULL,
        change TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
        last_error TEXT,
        done_at TEXT
    );
    CREATE INDEX webhook_outbox_pending ON webhook_outbox(url, state, id);
    """,
    # 6: the second processing step of an alert (slow products), pending until done.
    """
    CREATE TABLE deferred_work (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL UNIQUE REFERENCES alerts(id),
        raw_id INTEGER NOT NULL REFERENCES raw_messages(id),
        superevent_id TEXT NOT NULL,
        parts TEXT NOT NULL,
        start TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at TEXT NOT NULL,
        done_at TEXT
    );
    CREATE INDEX deferred_work_state ON deferred_work(state);
    CREATE INDEX deferred_work_event ON deferred_work(superevent_id);
    """,
)


def utcnow() -> str:
    """Current UTC time, ISO 8601 with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class RawMessage:
    """A stored raw message."""

    id: int
    received_at: str
    source: str
    kind: str
    content_hash: str
    body: bytes
    status: str
    status_reason: str | None
    deliveries: int


@dataclass(frozen=True)
class Accepted:
    """Outcome of :meth:`Store.accept_raw`."""

    raw_id: int
    new: bool
    status: str


class Store:
    """The SQLite store.

    Parameters
    ----------
    path : str or Path
        Database file (created with its directory), or ``":memory:"``.

    Notes
    -----
    One connection, guarded by a lock: methods may be called from any one
    thread at a time (the service uses a dedicated thread).  Every write is
    a transaction committed before the method returns (``synchronous=FULL``
    in WAL mode survives a process kill and a power cut).  Transactions that
    only hold what can be computed again from a durable raw message (an
    alert's products, with the status that marks the message processed) are
    committed with ``synchronous=NORMAL``: they survive a process kill; a
    power cut may undo the last of them, never partly, and the message is
    then ``pending`` again and processed at the next start.  The next
    ``FULL`` commit (the next accepted message) makes them durable too.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the database ({exc})",
                             hint="check the path and its permissions") from None
        self._lock = threading.RLock()
        self._depth = 0  # transactions open on the connection (see transaction)
        self.migrate()

    # ----------------------------------------------------------------- basics

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self, derived: bool = False) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error).

        Nested in another transaction (on the same thread), it is a ``SAVEPOINT``
        of the outer one: its writes commit (or roll back) with the outer
        transaction, and an error inside it undoes only its own writes.
        ``derived`` (outermost transaction only): it holds only data that a
        durable raw message can give again, committed without a sync (see the
        class notes).
        """
        with self._lock:
            if self._depth:
                name = f"gwfollow_sp{self._depth}"
                self._db.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield self._db
                except BaseException:
                    self._db.execute(f"ROLLBACK TO {name}")
                    self._db.execute(f"RELEASE {name}")
                    raise
                else:
                    self._db.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1
                return
            if derived:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StoreError(f"{self.path}: cannot start a transaction ({exc})") from None
                self._depth = 1
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                else:
                    self._db.execute("COMMIT")
                finally:
                    self._depth = 0
            finally:
                if derived:
                    self._db.execute("PRAGMA synchronous=FULL")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, args)
            cur.row_factory = sqlite3.Row  # type: ignore[assignment]
            return cur.fetchall()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply the migrations this database has not seen yet."""
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {current} is newer than this gwfollow knows "
                f"({len(MIGRATIONS)})", hint="upgrade gwfollow")
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self.transaction() as db:
                # Another process may have migrated meanwhile: re-read under the lock.
                if int(db.execute("PRAGMA user_version").fetchone()[0]) >= version:
                    continue
                for stmt in MIGRATIONS[version - 1].split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version={version}")

    # ------------------------------------------------------------ raw intake

    def accept_raw(self, body: bytes, source: str, kind: str, content_hash: str) -> Accepted:
        """Store a message durably (or recognise a redelivery).

        Returns once the row is committed: only then may the message be
        acknowledged to its sender (Kafka offset commit, HTTP 202).

        Raises
        ------
        StoreError
            The message could not be stored (disk full, database locked...):
            the sender must not be acknowledged.
        """
        try:
            with self.transaction() as db:
                row = db.execute("SELECT id, status FROM raw_messages WHERE content_hash = ?",
                                 (content_hash,)).fetchone()
                if row is not None:
                    db.execute("UPDATE raw_messages SET deliveries = deliveries + 1 WHERE id = ?", (row[0],))
                    return Accepted(int(row[0]), False, row[1])
                cur = db.execute(
                    "INSERT INTO raw_messages (received_at, source, kind, content_hash, size, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (utcnow(), source, kind, content_hash, len(body), bytes(body)),
                )
                return Accepted(int(cur.lastrowid), True, "pending")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot store a message from {source} ({exc})",
                             hint="check the disk and the database; the sender should retry") from exc

    def raw(self, raw_id: int) -> RawMessage:
        rows = self.query("SELECT * FROM raw_messages WHERE id = ?", (raw_id,))
        if not rows:
            raise StoreError(f"no raw message {raw_id}")
        r = rows[0]
        return RawMessage(r["id"], r["received_at"], r["source"], r["kind"], r["content_hash"],
                          bytes(r["body"]), r["status"], r["status_reason"], r["deliveries"])

    def pending_raw_ids(self) -> list[int]:
        """Messages accepted but not yet processed (to resume after a crash)."""
        return [r[0] for r in self.query("SELECT id FROM raw_messages WHERE status = 'pending' ORDER BY id")]

    def requeued_raw_ids(self) -> list[int]:
        """Messages made pending again by :meth:`requeue` and not processed since (oldest first)."""
        return [int(r[0]) for r in self.query(
            "SELECT id FROM raw_messages WHERE status = 'pending' AND status_reason = 'requeued' ORDER BY id")]

    def set_raw_status(self, raw_id: int, status: str, reason: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE raw_messages SET status = ?, status_reason = ? WHERE id = ?",
                       (status, reason, raw_id))

    def dead_letter(self, raw_id: int | None, source: str, error: BaseException,
                    error_type: str | None = None, transient: bool | None = None) -> None:
        """Record why a message could not be used; its raw bytes stay stored.

        ``transient`` (default: the error's own ``transient`` attribute, else
        False) says that requeueing the message may succeed.
        """
        reason = str(error)
        if transient is None:
            transient = bool(getattr(error, "transient", False))
        with self.transaction() as db:
            db.execute("INSERT INTO dead_letters (raw_id, at, source, error_type, reason, transient) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (raw_id, utcnow(), source, error_type or type(error).__name__, reason, int(transient)))
            if raw_id is not None:
                db.execute("UPDATE raw_messages SET status = 'dead', status_reason = ? WHERE id = ?",
                           (reason, raw_id))

    def record_timings(self, raw_id: int, timings: dict[str, float]) -> None:
        now = utcnow()
        with self.transaction(derived=True) as db:
            db.executemany("INSERT INTO timings (raw_id, stage, seconds, at) VALUES (?, ?, ?, ?)",
                           [(raw_id, k, float(v), now) for k, v in timings.items()])

    # --------------------------------------------------------------- reading

    def event(self, superevent_id: str) -> EventRecord | None:
        rows = self.query("SELECT * FROM events WHERE superevent_id = ?", (superevent_id,))
        return _event(rows[0]) if rows else None

    def events(self) -> list[EventRecord]:
        return [_event(r) for r in self.query("SELECT * FROM events ORDER BY first_seen, superevent_id")]

    def alerts_of(self, superevent_id: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT id, raw_id, superevent_id, alert_type, time_created, content_hash, kind, acted, note, "
            "summary, stored_at FROM alerts WHERE superevent_id = ? ORDER BY time_created, id", (superevent_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["summary"] = json.loads(d["summary"])
            out.append(d)
        return out

    def skymaps_of(self, superevent_id: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT s.id, s.alert_id, s.role, s.sha256, s.meta, s.stored_at, a.time_created, a.alert_type "
            "FROM skymaps s JOIN alerts a ON a.id = s.alert_id WHERE s.superevent_id = ? "
            # Ties in time_created (mock alerts share one) are broken by the alert, then the GW map
            # first: a combined map is stored by the second step, so its row id depends on timing.
            "ORDER BY a.time_created, s.alert_id, s.role != 'gw', s.id", (superevent_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["meta"] = json.loads(d["meta"])
            out.append(d)
        return out

    def skymap_bytes(self, skymap_id: int) -> bytes:
        rows = self.query("SELECT data FROM skymaps WHERE id = ?", (skymap_id,))
        if not rows:
            raise StoreError(f"no sky map {skymap_id}")
        return bytes(rows[0][0])

    def latest_skymap(self, superevent_id: str, role: str = "gw") -> dict[str, Any] | None:
        """The event's newest sky-map version of ``role`` (by alert creation time), or None."""
        return next((m for m in reversed(self.skymaps_of(superevent_id)) if m["role"] == role), None)

    def products_of(self, superevent_id: str, include_withdrawn: bool = True) -> list[dict[str, Any]]:
        sql = ("SELECT id, superevent_id, skymap_id, kind, name, level, boundary, format, area_deg2, probability, "
               "n_cells, provenance, created_at, withdrawn FROM products WHERE superevent_id = ?")
        if not include_withdrawn:
            sql += " AND withdrawn = 0"
        out = []
        for r in self.query(sql + " ORDER BY skymap_id, kind, name, level", (superevent_id,)):
            d = dict(r)
            d["provenance"] = json.loads(d["provenance"])
            out.append(d)
        return out

    def product_data(self, product_id: int) -> bytes:
        rows = self.query("SELECT data FROM products WHERE id = ?", (product_id,))
        if not rows:
            raise StoreError(f"no product {product_id}")
        return bytes(rows[0][0])

    def log_delivery(self, delivery: str, url: str, superevent_id: str, change: str, attempt: int,
                     status: int | None, error: str | None) -> None:
        """One webhook delivery attempt."""
        with self.transaction() as db:
            db.execute("INSERT INTO webhook_deliveries (delivery, url, superevent_id, change, attempt, status, error, "
                       "at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (delivery, url, superevent_id, change, attempt, status, error, utcnow()))

    def outbox_add(self, urls: Sequence[str], superevent_id: str, change: str, body: bytes) -> list[str]:
        """Queue one announcement per URL durably; returns the delivery ids."""
        now = utcnow()
        ids = []
        with self.transaction() as db:
            for url in urls:
                delivery = str(uuid.uuid4())
                db.execute("INSERT INTO webhook_outbox (url, delivery, superevent_id, change, body, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (url, delivery, superevent_id, change, bytes(body), now))
                ids.append(delivery)
        return ids

    def outbox_next(self, url: str) -> dict[str, Any] | None:
        """The oldest pending announcement for ``url`` (deliveries to a URL keep their order)."""
        rows = self.query("SELECT * FROM webhook_outbox WHERE url = ? AND state = 'pending' ORDER BY id LIMIT 1",
                          (url,))
        return dict(rows[0]) if rows else None

    def outbox_attempt(self, outbox_id: int, error: str | None, final: bool) -> None:
        """Count an attempt; ``error`` None means delivered; ``final`` gives up (state failed)."""
        state = "delivered" if error is None else ("failed" if final else "pending")
        with self.transaction() as db:
            db.execute("UPDATE webhook_outbox SET attempts = attempts + 1, state = ?, last_error = ?, "
                       "done_at = CASE WHEN ? != 'pending' THEN ? END WHERE id = ?",
                       (state, error, state, utcnow(), outbox_id))

    def outbox(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT * FROM webhook_outbox ORDER BY id")]

    def deliveries(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT * FROM webhook_deliveries ORDER BY id")]

    def dead_letters(self, only_open: bool = False) -> list[dict[str, Any]]:
        """Dead letters, oldest first; ``only_open``: those whose message is still dead (not requeued)."""
        sql = "SELECT d.* FROM dead_letters d"
        if only_open:
            sql += (" JOIN raw_messages r ON r.id = d.raw_id WHERE r.status = 'dead' AND d.requeued_at IS NULL"
                    " AND d.id = (SELECT MAX(id) FROM dead_letters WHERE raw_id = d.raw_id)")
        return [dict(r) for r in self.query(sql + " ORDER BY d.id")]

    def requeue(self, dead_letter_ids: Sequence[int] | None = None, transient_only: bool = False) -> list[int]:
        """Make dead messages pending again; returns their raw ids (to enqueue).

        Parameters
        ----------
        dead_letter_ids : sequence of int, optional
            Which dead letters; all open ones when None.
        transient_only : bool
            Only dead letters marked transient (worker crash, fetch time-out...).
        """
        now = utcnow()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT d.id, d.raw_id, d.transient FROM dead_letters d JOIN raw_messages r ON r.id = d.raw_id "
                "WHERE r.status = 'dead' AND d.requeued_at IS NULL").fetchall()
            wanted = None if dead_letter_ids is None else {int(i) for i in dead_letter_ids}
            raw_ids: list[int] = []
            for dl_id, raw_id, transient in rows:
                if wanted is not None and dl_id not in wanted:
                    continue
                if transient_only and not transient:
                    continue
                db.execute("UPDATE dead_letters SET requeued_at = ? WHERE id = ?", (now, dl_id))
                if raw_id not in raw_ids:
                    db.execute("UPDATE raw_messages SET status = 'pending', status_reason = 'requeued' "
                               "WHERE id = ?", (raw_id,))
                    raw_ids.append(int(raw_id))
            return raw_ids

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("raw_messages", "events", "alerts", "skymaps", "products", "dead_letters"):
            out[table] = int(self.query(f"SELECT COUNT(*) FROM {table}")[0][0])
        return out

    # ---------------------------------------------------------- processing

    def record_alert(self, raw_id: int, result: ProcessedAlert, acted: bool, note: str | None = None) -> Recorded:
        """Store a processed alert and its products in one transaction.

        Idempotent: when the alert's idempotency key is already stored,
        nothing is added (status ``duplicate``, no alert id).  A retraction
        marks the event retracted and withdraws all its products; an alert
        for an event already retracted is stored but not acted on (status
        ``ignored``, with the reason).  The raw message becomes
        ``processed`` (or ``ignored`` when not acted on) in the same
        transaction.
        """
        a = result.alert
        now = utcnow()
        with self.transaction(derived=True) as db:  # the raw message is durable; see the class notes
            exists = db.execute(
                "SELECT id FROM alerts WHERE superevent_id = ? AND alert_type = ? AND time_created = ? "
                "AND content_hash = ?", (a.superevent_id, a.alert_type, a.time_created, a.content_hash),
            ).fetchone()
            status = "processed" if acted else "ignored"
            if exists is not None:
                db.execute("UPDATE raw_messages SET status = ?, status_reason = ? WHERE id = ?",
                           (status, "duplicate of alert %d" % exists[0], raw_id))
                return Recorded(None, "duplicate", f"same alert already stored (alert {exists[0]})")
            ev = db.execute("SELECT state FROM events WHERE superevent_id = ?", (a.superevent_id,)).fetchone()
            if ev is None and a.alert_type == "RETRACTION" and acted:
                # A retraction that overtook its event (or whose event was never
                # received) is kept: the event is born retracted, so the alerts
                # that arrive later are stored but never produce live products.
                db.execute(
                    "INSERT INTO events (superevent_id, state, is_mock, first_seen, updated_at, retracted_at) "
                    "VALUES (?, 'retracted', ?, ?, ?, ?)",
                    (a.superevent_id, int(a.superevent_id.startswith("M")), now, now, now))
                ev = ("retracted",)
            if ev is not None and ev[0] == "retracted" and a.alert_type != "RETRACTION" and acted:
                acted = False
                note = "event already retracted: stored, not acted on"
                status = "ignored"
            event = a.event or {}
            if ev is None and acted:
                db.execute(
                    "INSERT INTO events (superevent_id, state, grp, significant, is_mock, first_seen, updated_at) "
                    "VALUES (?, 'active', ?, ?, ?, ?, ?)",
                    (a.superevent_id, event.get("group"), _bool(event.get("significant")),
                     int(a.superevent_id.startswith("M")), now, now))
            elif acted:
                db.execute(
                    "UPDATE events SET updated_at = ?, grp = COALESCE(?, grp), "
                    "significant = COALESCE(?, significant) WHERE superevent_id = ?",
                    (now, event.get("group"), _bool(event.get("significant")), a.superevent_id))
            cur = db.execute(
                "INSERT INTO alerts (raw_id, superevent_id, alert_type, time_created, content_hash, kind, acted, "
                "note, summary, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (raw_id, a.superevent_id, a.alert_type, a.time_created, a.content_hash, a.kind,
                 int(acted), note, json.dumps(a.as_dict()), now))
            alert_id = int(cur.lastrowid)
            if acted and a.alert_type == "RETRACTION":
                db.execute("UPDATE events SET state = 'retracted', retracted_at = ?, updated_at = ? "
                           "WHERE superevent_id = ?", (now, now, a.superevent_id))
                db.execute("UPDATE products SET withdrawn = 1 WHERE superevent_id = ?", (a.superevent_id,))
            if acted:
                for sm in result.skymaps:
                    cur = db.execute(
                        "INSERT INTO skymaps (superevent_id, alert_id, role, sha256, data, meta, stored_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (a.superevent_id, alert_id, sm.role, sm.sha256, sm.data, json.dumps(sm.meta), now))
                    sid = int(cur.lastrowid)
                    for p in sm.products:
                        db.execute(
                            "INSERT INTO products (superevent_id, skymap_id, kind, name, level, boundary, format, "
                            "data, area_deg2, probability, n_cells, provenance, created_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (a.superevent_id, sid, str(p.kind), p.name, p.level, p.boundary, p.format, p.data,
                             p.area_deg2, p.probability, p.n_cells, json.dumps(p.provenance), now))
            deferred_id = None
            if acted and result.deferred is not None and result.deferred.parts:
                cur = db.execute(
                    "INSERT INTO deferred_work (alert_id, raw_id, superevent_id, parts, start, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (alert_id, raw_id, a.superevent_id,
                                                  json.dumps(list(result.deferred.parts)), result.deferred.start,
                                                  now))
                deferred_id = int(cur.lastrowid)
            db.execute("UPDATE raw_messages SET status = ?, status_reason = ? WHERE id = ?",
                       (status, note, raw_id))
            return Recorded(alert_id, status, note, deferred_id)

    # ----------------------------------------------------- the second step

    def deferred(self, work_id: int) -> DeferredWork:
        """One second-step work item."""
        rows = self.query("SELECT * FROM deferred_work WHERE id = ?", (work_id,))
        if not rows:
            raise StoreError(f"no deferred work {work_id}")
        return _deferred(rows[0])

    def pending_deferred_ids(self) -> list[int]:
        """Second steps not done yet (to resume after a restart), oldest first."""
        return [r[0] for r in self.query("SELECT id FROM deferred_work WHERE state = 'pending' ORDER BY id")]

    def deferred_of(self, superevent_id: str) -> list[DeferredWork]:
        """The second steps of an event's alerts, oldest first."""
        return [_deferred(r) for r in self.query("SELECT * FROM deferred_work WHERE superevent_id = ? ORDER BY id",
                                                 (superevent_id,))]

    def start_deferred(self, work_id: int) -> int:
        """Count an attempt at a second step (before it runs); returns the attempts so far, this one included.

        Counted durably, so a second step that kills its worker every time is
        given up after a bounded number of restarts too.
        """
        with self.transaction() as db:
            db.execute("UPDATE deferred_work SET attempts = attempts + 1 WHERE id = ?", (work_id,))
            row = db.execute("SELECT attempts FROM deferred_work WHERE id = ?", (work_id,)).fetchone()
            if row is None:
                raise StoreError(f"no deferred work {work_id}")
            return int(row[0])

    def fail_deferred(self, work_id: int, error: str) -> None:
        """The second step cannot be done: ``failed`` with the reason (the first step's products stay)."""
        with self.transaction() as db:
            db.execute("UPDATE deferred_work SET state = 'failed', error = ?, done_at = ? WHERE id = ?",
                       (error, utcnow(), work_id))

    def record_deferred(self, work_id: int, result: ProcessedDeferred) -> DeferredWork:
        """Store the slow products of a second step and mark it done, in one transaction.

        Products of the GW map join its stored version; a combined map is
        stored as a new version with its products.  When the event was
        retracted meanwhile they are stored withdrawn.  Recording a step
        that is no longer pending changes nothing.
        """
        now = utcnow()
        with self.transaction(derived=True) as db:  # pending again if a power cut undoes it
            cur = db.execute("SELECT * FROM deferred_work WHERE id = ?", (work_id,))
            cur.row_factory = sqlite3.Row  # type: ignore[assignment]
            row = cur.fetchone()
            if row is None:
                raise StoreError(f"no deferred work {work_id}")
            work = _deferred(row)
            if work.state != "pending":
                return work
            ev = db.execute("SELECT state FROM events WHERE superevent_id = ?", (work.superevent_id,)).fetchone()
            withdrawn = int(ev is not None and ev[0] == "retracted")
            for sm in result.skymaps:
                found = db.execute("SELECT id FROM skymaps WHERE alert_id = ? AND role = ?",
                                   (work.alert_id, sm.role)).fetchone()
                if found is not None:
                    sid = int(found[0])
                else:
                    sid = int(db.execute(
                        "INSERT INTO skymaps (superevent_id, alert_id, role, sha256, data, meta, stored_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (work.superevent_id, work.alert_id, sm.role, sm.sha256, sm.data, json.dumps(sm.meta),
                         now)).lastrowid)
                db.executemany(
                    "INSERT INTO products (superevent_id, skymap_id, kind, name, level, boundary, format, data, "
                    "area_deg2, probability, n_cells, provenance, created_at, withdrawn) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(work.superevent_id, sid, str(p.kind), p.name, p.level, p.boundary, p.format, p.data,
                      p.area_deg2, p.probability, p.n_cells, json.dumps(p.provenance), now, withdrawn)
                     for p in sm.products])
            if not withdrawn:
                db.execute("UPDATE events SET updated_at = ? WHERE superevent_id = ?", (now, work.superevent_id))
            db.execute("UPDATE deferred_work SET state = 'done', error = NULL, done_at = ? WHERE id = ?",
                       (now, work_id))
            return dataclasses.replace(work, state="done", done_at=now)


@dataclass(frozen=True)
class DeferredWork:
    """A second processing step (see ``deferred_work`` in the schema).

    ``state`` is ``pending``, ``done`` or ``failed``; ``parts`` and
    ``start`` are the :class:`~gwfollow.records.DeferredParts` of the alert.
    """

    id: int
    alert_id: int
    raw_id: int
    superevent_id: str
    parts: DeferredParts
    state: str
    attempts: int
    error: str | None
    created_at: str
    done_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {"parts": list(self.parts.parts), "state": self.state, "attempts": self.attempts,
                "error": self.error, "created_at": self.created_at, "done_at": self.done_at}


def _deferred(row: Any) -> DeferredWork:
    return DeferredWork(id=int(row["id"]), alert_id=int(row["alert_id"]), raw_id=int(row["raw_id"]),
                        superevent_id=row["superevent_id"],
                        parts=DeferredParts(tuple(json.loads(row["parts"])), row["start"]), state=row["state"],
                        attempts=int(row["attempts"]), error=row["error"], created_at=row["created_at"],
                        done_at=row["done_at"])


def _event(row: Any) -> EventRecord:
    return EventRecord(superevent_id=row["superevent_id"], state=row["state"], group=row["grp"],
                       significant=None if row["significant"] is None else bool(row["significant"]),
                       is_mock=bool(row["is_mock"]), first_seen=row["first_seen"], updated_at=row["updated_at"],
                       retracted_at=row["retracted_at"])


@dataclass(frozen=True)
class Recorded:
    """What :meth:`Store.record_alert` did.

    Attributes
    ----------
    alert_id : int or None
        The new alert row (None for a duplicate).
    status : str
        ``processed`` (acted on), ``ignored`` (stored, not acted on) or
        ``duplicate`` (nothing added).
    note : str or None
        Why, when not simply processed.
    deferred_id : int or None
        The second-step work queued in the same transaction (see :meth:`Store.deferred`).
    """

    alert_id: int | None
    status: str
    note: str | None = None
    deferred_id: int | None = None


def _bool(v: Any) -> int | None:
    return None if v is None else int(bool(v))

