"""Signed webhooks on new, updated and retracted events.

Each delivery is a JSON POST with headers ``X-Gwfollow-Event``,
``X-Gwfollow-Delivery`` (a UUID, the same for all retries) and
``X-Gwfollow-Signature: sha256=<hex>``, the HMAC-SHA256 of the body under
the shared secret (verify it with :func:`verify`).  Failed deliveries
(connection errors, time-outs, non-2xx answers) are retried with
exponential backoff; every attempt is logged in the store.  Each URL has its
own task delivering in order (a receiver sees ``new`` before ``retracted``),
and a slow receiver never holds up the pipeline or the other receivers.

Announcements go through a durable outbox in SQLite (``webhook_outbox``):
one row per URL is written in the very transaction that records the alert
(an alert is never stored without its announcement), before any delivery is tried, and a row stays
pending until delivered or out of retries, so a restart (even after
``kill -9``) delivers what was not delivered, with the same delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from typing import Any

import aiohttp

from gwfollow.config import ServiceConfig
from gwfollow.pipeline.runner import Pipeline
from gwfollow.records import Outcome

log = logging.getLogger("gwfollow.webhooks")


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` of the HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Check a delivery's ``X-Gwfollow-Signature`` (constant time)."""
    return hmac.compare_digest(sign(secret, body), signature)


class WebhookDispatcher:
    """Turns pipeline outcomes into signed deliveries to the configured URLs."""

    def __init__(self, cfg: ServiceConfig, pipeline: Pipeline) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.wake: dict[str, asyncio.Event] = {u: asyncio.Event() for u in cfg.webhook_urls}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def attach(self) -> None:
        """Write announcements in the transaction of each alert (call before the pipeline starts,
        so that messages resumed at start-up are announced too)."""
        self.pipeline.add_record_hook(self.announce)
        self.pipeline.add_hook(self.on_outcome)

    async def start(self) -> None:
        """Start delivering (one task per URL)."""
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._run(url, ev), name=f"gwfollow-webhook-{i}")
                       for i, (url, ev) in enumerate(self.wake.items())]

    async def stop(self, timeout: float = 10.0) -> None:
        """Give pending deliveries ``timeout`` s; what is left stays in the outbox for the next start."""
        store = self.pipeline.store

        async def drained() -> None:
            while any([await self.pipeline.db(store.outbox_next, u) for u in self.wake]):
                await asyncio.sleep(0.05)

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(drained(), timeout)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session:
            await self._session.close()

    def announce(self, o: Outcome) -> None:
        """Queue the announcement of ``o`` in the outbox: runs on the database thread inside the
        transaction that records the alert, so the two commit together (see :meth:`attach`)."""
        if o.status not in ("processed",) or o.superevent_id is None:
            return
        store = self.pipeline.store
        acted = [a for a in store.alerts_of(o.superevent_id) if a["acted"]]
        if o.alert_type == "RETRACTION":
            change = "retracted"
        elif len(acted) <= 1:
            change = "new"
        else:
            change = "updated"
        products = store.products_of(o.superevent_id)
        base = f"/api/v1/events/{o.superevent_id}"
        payload = {
            "superevent_id": o.superevent_id,
            "change": change,
            "alert_type": o.alert_type,
            "links": {"event": base, "moc": f"{base}/moc?level=0.9", "targets": f"{base}/targets"},
            "products": [{"kind": p["kind"], "name": p["name"], "level": p["level"], "withdrawn": bool(p["withdrawn"])}
                         for p in products if p["skymap_id"] == max(q["skymap_id"] for q in products)]
            if products else [],
        }
        store.outbox_add(tuple(self.wake), o.superevent_id, change, json.dumps(payload, sort_keys=True).encode())

    async def on_outcome(self, o: Outcome) -> None:
        """Wake the deliveries once an announced outcome is committed."""
        if o.status == "processed" and o.superevent_id is not None:
            for ev in self.wake.values():
                ev.set()

    async def _run(self, url: str, wake: asyncio.Event) -> None:
        store = self.pipeline.store
        while True:
            wake.clear()
            row = await self.pipeline.db(store.outbox_next, url)
            if row is None:
                await wake.wait()
                continue
            try:
                await self._deliver(url, row)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failing delivery must not stop the others
                log.exception("webhook delivery to %s failed", url)
                await self.pipeline.db(store.outbox_attempt, row["id"], "internal error", True)

    async def _deliver(self, url: str, row: dict[str, Any]) -> None:
        body = bytes(row["body"])
        payload = {"superevent_id": row["superevent_id"], "change": row["change"]}
        delivery = row["delivery"]
        headers = {"Content-Type": "application/json", "X-Gwfollow-Event": row["change"],
                   "X-Gwfollow-Delivery": delivery, "X-Gwfollow-Signature": sign(self.cfg.webhook_secret, body)}
        assert self._session is not None
        store = self.pipeline.store
        for attempt in range(row["attempts"] + 1, self.cfg.webhook_retries + 2):
            status = None
            error = None
            try:
                async with self._session.post(url, data=body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=self.cfg.webhook_timeout_s)) as r:
                    status = r.status
                    if 200 <= r.status < 300:
                        await self._log(delivery, url, payload, attempt, status, None)
                        await self.pipeline.db(store.outbox_attempt, row["id"], None, True)
                        return
                    error = f"HTTP {r.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            await self._log(delivery, url, payload, attempt, status, error)
            final = attempt > self.cfg.webhook_retries
            await self.pipeline.db(store.outbox_attempt, row["id"], error, final)
            if not final:
                await asyncio.sleep(self.cfg.webhook_backoff_s * 2 ** (attempt - 1))
        if row["attempts"] > self.cfg.webhook_retries:  # out of retries before this start
            await self.pipeline.db(store.outbox_attempt, row["id"], row["last_error"] or "out of retries", True)
            return
        log.warning("webhook %s to %s failed after %d attempts", delivery, url, self.cfg.webhook_retries + 1)

    async def _log(self, delivery: str, url: str, payload: dict[str, Any], attempt: int, status: int | None,
                   error: str | None) -> None:
        store = self.pipeline.store
        await self.pipeline.db(store.log_delivery, delivery, url, payload["superevent_id"], payload["change"],
                               attempt, status, error)
