"""Listeners: bring raw messages into the pipeline.

* :class:`KafkaListener` — GCN Kafka (``igwn.gwalert``) with aiokafka:
  SASL OAUTHBEARER with OAuth2 client credentials (token refreshed before
  it expires) over TLS, or plaintext for a local broker.  At-least-once:
  each message is committed to the store *before* its offset is committed.
* :class:`SpoolListener` — a directory: files dropped there are ingested,
  then moved to ``done/`` (or ``failed/`` when they cannot even be read).

The HTTP push listener is the ``POST /api/v1/alerts`` route of the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from gwfollow.config import KafkaConfig, SpoolConfig
from gwfollow.errors import FetchError, GwfollowError
from gwfollow.pipeline.intake import RejectedAlert, submit_checked
from gwfollow.pipeline.intakeerrors import IntakeErrors
from gwfollow.pipeline.replay import read_input
from gwfollow.pipeline.runner import Pipeline
from gwfollow.records import Outcome

log = logging.getLogger("gwfollow.listeners")

#: Messages a Kafka listener remembers while they are processed (to count their failures).
MAX_TRACKED = 10_000


class _Health:
    """The state a listener shows in ``/api/v1/health`` (see :mod:`gwfollow.service.health`).

    ``link`` is ``starting``, ``ok`` or ``failing`` (can it reach its source);
    :attr:`state` is ``degraded`` instead of ``ok`` while intake errors keep
    happening (:class:`IntakeErrors`).
    """

    def __init__(self, pipeline: Pipeline) -> None:
        svc = pipeline.config.service
        self.link = "starting"
        self.errors = IntakeErrors(svc.degraded_intake_errors, svc.degraded_window_s)
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        if self.link == "ok" and self.errors.degraded:
            return "degraded"
        return self.link

    @property
    def intake_errors(self) -> int:
        return self.errors.total

    @property
    def recent_intake_errors(self) -> int:
        return self.errors.recent()

    def intake_error(self, reason: str) -> None:
        self.errors.add(reason)
        self.last_error = reason


class OAuthTokenProvider:
    """OAuth2 client-credentials tokens for SASL/OAUTHBEARER (GCN Kafka).

    The token is fetched from ``token_url`` and refreshed a minute before
    it expires.  Compatible with aiokafka's ``AbstractTokenProvider``.
    """

    def __init__(self, token_url: str, client_id: str, client_secret: str, margin_s: float = 60.0) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.margin_s = margin_s
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() > self._expires - self.margin_s:
                await self._refresh()
            assert self._token is not None
            return self._token

    async def _refresh(self) -> None:

        data = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret}
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(self.token_url, data=data, timeout=aiohttp.ClientTimeout(total=30)) as r:
                    if r.status != 200:
                        raise FetchError(f"token request refused: HTTP {r.status}", url=self.token_url,
                                         status=r.status, transient=r.status >= 500,
                                         hint="check kafka.client_id and kafka.client_secret")
                    body: dict[str, Any] = await r.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise FetchError(f"token request failed ({exc})", url=self.token_url) from None
        if "access_token" not in body:
            raise FetchError("token response without access_token", url=self.token_url, transient=False)
        self._token = str(body["access_token"])
        self._expires = time.monotonic() + float(body.get("expires_in", 3600))

    def extensions(self) -> dict[str, str]:
        return {}


def kafka_consumer_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """aiokafka consumer settings for ``cfg`` (security included)."""
    kw: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap,
        "group_id": cfg.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": cfg.auto_offset_reset,
        "session_timeout_ms": cfg.session_timeout_ms,
        "heartbeat_interval_ms": cfg.heartbeat_interval_ms,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):

        kw["ssl_context"] = create_ssl_context()
    if cfg.security_protocol.startswith("SASL"):

        provider = OAuthTokenProvider(cfg.token_url, cfg.client_id, cfg.client_secret)

        class _Provider(AbstractTokenProvider):  # adapter to aiokafka's ABC
            async def token(self) -> str:
                return await provider.token()

        kw["sasl_mechanism"] = cfg.sasl_mechanism
        kw["sasl_oauth_token_provider"] = _Provider()
    return kw


class KafkaListener(_Health):
    """Consume Kafka topics into the pipeline (at-least-once).

    Intake errors: a message the store refuses (it is consumed again after a
    reconnection, its offset not committed) and a message that ends as a dead
    letter (unparsable, wrong schema, unusable sky map).
    """

    def __init__(self, cfg: KafkaConfig, pipeline: Pipeline) -> None:
        super().__init__(pipeline)
        self.cfg = cfg
        self.pipeline = pipeline
        self.consumed = 0
        self.connected = False
        self._mine: dict[int, str] = {}  # raw id -> source, while processed
        pipeline.add_hook(self._on_outcome)

    async def _on_outcome(self, o: Outcome) -> None:
        source = self._mine.pop(o.raw_id, None)
        if source is not None and o.status == "dead":
            self.intake_error(f"{source}: {o.reason}")

    async def run(self) -> None:
        """Consume until cancelled; reconnect with backoff on broker failures."""

        backoff = 1.0
        while True:
            consumer = AIOKafkaConsumer(*self.cfg.topics, **kafka_consumer_kwargs(self.cfg))
            try:
                await consumer.start()
                self.connected = True
                self.link = "ok"
                backoff = 1.0
                log.info("kafka: consuming %s from %s", ",".join(self.cfg.topics), self.cfg.bootstrap)
                async for msg in consumer:
                    if msg.value is None:
                        continue
                    source = f"kafka:{msg.topic}[{msg.partition}]@{msg.offset}"
                    try:
                        acc = await self.pipeline.accept(msg.value, source)
                    except GwfollowError as exc:
                        # Not stored, offset not committed: consumed again after the reconnection.
                        self.intake_error(f"{source}: {exc}")
                        log.warning("kafka: %s not stored (%s); reconnecting in %.0f s", source, exc, backoff)
                        break
                    # The raw message is durable: now the offset may be committed.
                    await consumer.commit()
                    self.consumed += 1
                    if acc.new and len(self._mine) < MAX_TRACKED:
                        self._mine[acc.raw_id] = source
                    await self.pipeline.enqueue(acc)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, FetchError) as exc:
                self.link = "failing"
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("kafka: %s; reconnecting in %.0f s", exc, backoff)
            finally:
                self.connected = False
                try:
                    await consumer.stop()
                except Exception:  # stopping a half-started consumer may fail
                    pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)


class SpoolListener(_Health):
    """Ingest files dropped in a directory (polling; no extra dependency).

    Files whose name starts with ``.`` or ends with ``.part`` / ``.tmp``
    are still being written and are skipped until renamed.  A file is moved
    to ``done/`` once stored, or to ``failed/`` when it cannot be read or is
    not a usable alert (it is then kept as a dead letter with the reason).
    Any file name is accepted (bytes that are not UTF-8 are shown escaped),
    and no single file can stop the listener.
    """

    def __init__(self, cfg: SpoolConfig, pipeline: Pipeline, max_mib: float = 64.0) -> None:
        self.dir = Path(cfg.directory)
        self.poll_s = cfg.poll_s
        self.pipeline = pipeline
        self.max_mib = max_mib
        self.ingested = 0
        super().__init__(pipeline)

    def _ready(self) -> list[Path]:
        files = [p for p in self.dir.iterdir() if p.is_file() and not p.name.startswith(".")
                 and not p.name.endswith((".part", ".tmp"))]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    async def run(self) -> None:
        while True:
            try:
                for sub in ("done", "failed"):
                    await asyncio.to_thread((self.dir / sub).mkdir, parents=True, exist_ok=True)
                files = await asyncio.to_thread(self._ready)
                self.link = "ok"
            except OSError as exc:
                self.link = "failing"
                self.last_error = f"cannot list {self.dir}: {exc.strerror or exc}"
                log.warning("spool: %s", self.last_error)
                files = []
            for f in files:
                try:
                    await self._ingest(f)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one file never stops the spool
                    self._failed(f, f"{type(exc).__name__}: {exc}")
                    log.exception("spool: unexpected failure on %s", display_name(f))
            await asyncio.sleep(self.poll_s)

    async def _ingest(self, f: Path) -> None:
        source = f"spool:{display_name(f)}"
        try:
            body = await asyncio.to_thread(read_input, f, self.max_mib)
        except GwfollowError as exc:
            await asyncio.to_thread(self._move, f, "failed")
            self._failed(f, str(exc))
            return
        try:
            await submit_checked(self.pipeline, body, source)
        except RejectedAlert as exc:
            await asyncio.to_thread(self._move, f, "failed")
            self._failed(f, exc.reason)
            return
        await asyncio.to_thread(self._move, f, "done")
        self.ingested += 1

    def _failed(self, f: Path, reason: str) -> None:
        self.intake_error(f"{display_name(f)}: {reason}")
        log.warning("spool: %s moved to failed/ (%s)", display_name(f), reason)

    def _move(self, f: Path, sub: str) -> None:
        try:
            f.replace(self.dir / sub / f.name)
        except FileNotFoundError:
            pass  # already moved (a second service on the same directory)


def display_name(path: Path) -> str:
    """A file name safe to store and log: undecodable bytes shown as ``\\xNN``."""
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")
