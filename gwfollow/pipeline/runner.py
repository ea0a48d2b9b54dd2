"""The pipeline: raw message -> stored alert and products, for serve and replay alike.

Stages, each timed and recorded in the store:

1. **accept** — the raw bytes are committed to the store (a redelivered
   message is recognised by its content hash).  Only after this may the
   sender be acknowledged (Kafka offset commit, HTTP 202).
2. **queue** — a bounded :class:`asyncio.Queue`: when the workers fall
   behind, intake waits (back-pressure) instead of piling up memory.
3. **process** — :func:`gwfollow.products.core.process_message` in a worker
   process: parse, decode the sky map, credible-region MOCs.  VOEvent sky
   maps are downloaded on the event loop (aiohttp) in between.
4. **store** — one transaction: alert, event state, sky-map version,
   products; idempotent on (superevent id, alert type, time created,
   content hash).  Failures go to dead letters with the reason.

The database is touched from one dedicated thread, the CPU-heavy work from a
process pool: the event loop only schedules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse


from gwfollow.config import Config
from gwfollow.errors import (
    AlertError,
    FetchError,
    GwfollowError,
    SkyMapError,
    UnknownEventError,
)
from gwfollow.ingest.fetch import checked_session, fetch_bytes
from gwfollow.ingest.parse import sniff
from gwfollow.kernels import warm_up
from gwfollow.products.core import NeedsFetch, process_alert, process_message
from gwfollow.products.resources import Resources
from gwfollow.pipeline.worker import die_with_parent, run_and_release
from gwfollow.records import Outcome, ProcessedAlert
from gwfollow.store import Accepted, Recorded, Store

log = logging.getLogger("gwfollow.pipeline.runner")
T = TypeVar("T")


_WORKER_RESOURCES: Resources | None = None
"""The one :class:`Resources` of a worker process, made by :func:`_init_worker` (a process
pool gives its initializer no other way to hand state to the tasks)."""


def _init_worker(config: Config | None = None) -> None:
    """Worker-process start: load the numba kernels from their cache and, with
    a configuration, prepare what the first alert would otherwise wait for
    (catalogue indexes are built on first use, telescopes and their footprints now)."""
    global _WORKER_RESOURCES

    die_with_parent()
    warm_up()
    if config is not None:
        _WORKER_RESOURCES = Resources(config)
        _WORKER_RESOURCES.warm()


def _ping() -> bool:
    return True


def _process_in_worker(body: bytes, source: str, config: Config, apply_filters: bool,
                       resources: Resources | None = None) -> ProcessedAlert | NeedsFetch:
    return process_message(body, source, config, None, apply_filters, resources or _WORKER_RESOURCES)


def _process_fetched_in_worker(needs: NeedsFetch, source: str, config: Config, data: bytes, apply_filters: bool,
                               resources: Resources | None = None) -> ProcessedAlert | NeedsFetch:
    return process_alert(needs.alert, source, config, data, apply_filters, resources or _WORKER_RESOURCES)


def outcome_of(raw_id: int, result: ProcessedAlert, recorded: Recorded, seconds: float = 0.0) -> Outcome:
    """The outcome of a message whose alert the store has recorded."""
    a = result.alert
    reason = recorded.note if recorded.note is not None else result.note
    return Outcome(raw_id, recorded.status, a.superevent_id, a.alert_type, recorded.alert_id,
                   reason=reason, seconds=seconds)


def record_result(store: Store, raw_id: int, source: str, result: ProcessedAlert | BaseException,
                  seconds: float = 0.0, error_type: str | None = None, transient: bool | None = None) -> Outcome:
    """Store what processing a message gave: its alert and products, or a dead letter
    with the reason (the one recording step of the service, replay and Dask replay);
    ``transient`` marks a dead letter worth requeueing (see :meth:`Store.dead_letter`)."""
    if isinstance(result, BaseException):
        store.dead_letter(raw_id, source, result, error_type=error_type, transient=transient)
        return Outcome(raw_id, "dead", reason=str(result), seconds=seconds)
    try:
        recorded = store.record_alert(raw_id, result, result.acted, result.note)
    except UnknownEventError as exc:
        store.dead_letter(raw_id, source, exc)
        return Outcome(raw_id, "dead", reason=str(exc), seconds=seconds)
    return outcome_of(raw_id, result, recorded, seconds)


def resolve_skymap_url(url: str, source: str) -> str:
    """A relative sky-map path in an archived VOEvent is relative to the VOEvent file."""
    if urlparse(url).scheme or Path(url).is_absolute():
        return url
    src = Path(source)
    if src.is_file():
        return str(src.parent / url)
    return url


ProductHook = Callable[[Outcome], Awaitable[None]]


class Pipeline:
    """Accepts raw messages and processes them into stored products.

    Parameters
    ----------
    config : Config
    store : Store
    executor : concurrent.futures.Executor, optional
        Where :func:`process_message` runs; a process pool of
        ``config.service.workers`` spawned workers by default.
    apply_filters : bool
        Apply ``config.filters`` (replay processes everything by default).

    Use as ``async with Pipeline(...) as p:`` or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(self, config: Config, store: Store, executor: Executor | None = None,
                 apply_filters: bool = True) -> None:
        self.config = config
        self.apply_filters = apply_filters
        self.store = store
        self._own_executor = executor is None
        self._executor = executor
        # A pool given by the caller (threads, in tests) has no initializer: its
        # tasks share this process's resources instead.
        self._resources = None if executor is None else Resources(config)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="gwfollow-db")
        self._queue: asyncio.Queue[int] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._session: Any = None
        self._resume_task: asyncio.Task[None] | None = None
        self._hooks: list[ProductHook] = []
        self._commit_listeners: list[Callable[[Outcome], None]] = []
        self._record_hooks: list[Callable[[Outcome], None]] = []
        self._owned: set[int] = set()  # raw ids queued or being processed here
        self.stats: Counter[str] = Counter()
        self.stage_seconds: Counter[str] = Counter()
        self.started = False

    # ------------------------------------------------------------ lifetime

    def _make_executor(self) -> Executor:
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.config.service.workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(self.config,))

    async def start(self, resume: bool = True) -> None:
        """Start the workers; resume messages accepted before a crash."""
        if self._executor is None:
            self._executor = self._make_executor()
        loop = asyncio.get_running_loop()
        # Make sure every worker has started (and warmed its kernels) now,
        # not when the first alert arrives.
        await asyncio.gather(*(loop.run_in_executor(self._executor, _ping)
                               for _ in range(self.config.service.workers)))
        self._queue = asyncio.Queue(self.config.service.queue_size)
        self._session = checked_session(self.config.fetch)
        self._workers = [asyncio.create_task(self._worker(i), name=f"gwfollow-worker-{i}")
                         for i in range(self.config.service.workers)]
        self.started = True
        if resume:
            pending = await self.db(self.store.pending_raw_ids)
            if pending:
                log.info("resuming %d message(s) accepted before the last stop", len(pending))
                # In the background: a backlog larger than the queue must not hold up
                # start-up (the API answers while it drains).
                self._resume_task = asyncio.create_task(self._enqueue_all(pending), name="gwfollow-resume")

    async def _enqueue_all(self, raw_ids: list[int]) -> None:
        for raw_id in raw_ids:
            await self.enqueue(Accepted(raw_id, True, "pending"))

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish queued work (up to ``timeout`` s), then stop.

        Messages not finished stay ``pending`` in the store and are resumed
        at the next start: nothing accepted is lost.
        """
        if self._resume_task is not None:
            self._resume_task.cancel()
            await asyncio.gather(self._resume_task, return_exceptions=True)
            self._resume_task = None
        if self._queue is not None and self.started:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except asyncio.TimeoutError:
                log.warning("stopping with %d message(s) still queued; they resume at the next start",
                            self._queue.qsize())
        self.started = False
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._db.shutdown(wait=True)

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def add_commit_listener(self, fn: Callable[[Outcome], None]) -> None:
        """Call ``fn(outcome)`` on the database thread right after each message's
        outcome is committed (before the event loop hears of it): for caches that
        must never outlive the data they were computed from."""
        self._commit_listeners.append(fn)

    def add_record_hook(self, fn: Callable[[Outcome], None]) -> None:
        """Call ``fn(outcome)`` on the database thread *inside* the transaction that
        records each message's outcome: what ``fn`` writes to the store commits
        with the alert or not at all (the webhook outbox).  An error in ``fn``
        rolls the alert back; the message becomes a dead letter to requeue."""
        self._record_hooks.append(fn)

    def _record(self, raw_id: int, source: str, result: ProcessedAlert | BaseException,
                seconds: float = 0.0, error_type: str | None = None, transient: bool | None = None) -> Outcome:
        with self.store.transaction():
            o = record_result(self.store, raw_id, source, result, seconds, error_type, transient)
            for hook in self._record_hooks:
                hook(o)
        for fn in self._commit_listeners:
            try:
                fn(o)
            except Exception:  # a listener must never stop the pipeline
                log.exception("commit listener failed for raw message %d", raw_id)
        return o

    def add_hook(self, hook: ProductHook) -> None:
        """Call ``await hook(outcome)`` after each message is stored."""
        self._hooks.append(hook)

    # ------------------------------------------------------------- helpers

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # -------------------------------------------------------------- intake

    async def accept(self, body: bytes, source: str) -> Accepted:
        """Store a raw message durably; returns when committed."""
        digest = hashlib.sha256(body).hexdigest()
        acc = await self.db(self.store.accept_raw, body, source, sniff(body), digest)
        self.stats["accepted" if acc.new else "redelivered"] += 1
        return acc

    async def enqueue(self, acc: Accepted) -> None:
        """Queue an accepted message for processing (waits when the queue is full)."""
        if self._queue is None:
            raise RuntimeError("pipeline not started")
        if acc.new and acc.raw_id not in self._owned:  # never twice at once (see enqueue_requeued)
            self._owned.add(acc.raw_id)
            try:
                await self._queue.put(acc.raw_id)
            except BaseException:  # cancelled while the queue was full: not held here after all
                self._owned.discard(acc.raw_id)
                raise

    async def enqueue_requeued(self) -> list[int]:
        """Queue the messages requeued from outside (``gwfollow deadletters requeue`` on the
        database while the service runs) that this pipeline does not hold yet."""
        ids = [i for i in await self.db(self.store.requeued_raw_ids) if i not in self._owned]
        for raw_id in ids:
            await self.enqueue(Accepted(raw_id, True, "pending"))
        return ids

    async def submit(self, body: bytes, source: str) -> Accepted:
        """:meth:`accept` then :meth:`enqueue`."""
        acc = await self.accept(body, source)
        await self.enqueue(acc)
        return acc

    async def join(self) -> None:
        """Wait until every queued message is processed."""
        if self._resume_task is not None:
            await asyncio.shield(self._resume_task)
        if self._queue is not None:
            await self._queue.join()

    # ---------------------------------------------------------- processing

    async def _worker(self, i: int) -> None:
        assert self._queue is not None
        while True:
            raw_id = await self._queue.get()
            try:
                try:
                    outcome = await self.process(raw_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # A bug, not bad input: keep the message (dead letter with
                    # the error) so that it is neither lost nor retried forever.
                    log.exception("unexpected failure processing raw message %d", raw_id)
                    self.stats["failed"] += 1
                    err = GwfollowError(f"internal error: {type(exc).__name__}: {exc}",
                                        hint="a gwfollow bug; please report it with the raw message")
                    try:
                        await self.db(self.store.dead_letter, raw_id, "pipeline", err)
                    except Exception:
                        log.exception("cannot record the dead letter of raw message %d", raw_id)
                    outcome = Outcome(raw_id, "dead", reason=str(err))
                for hook in self._hooks:
                    try:
                        await hook(outcome)
                    except Exception:  # a hook must never stop the pipeline
                        log.exception("product hook failed for raw message %d", raw_id)
            except asyncio.CancelledError:
                raise
            finally:
                self._owned.discard(raw_id)
                self._queue.task_done()

    async def _run(self, fn: Callable[..., ProcessedAlert | NeedsFetch], *args: Any) -> ProcessedAlert | NeedsFetch:
        loop = asyncio.get_running_loop()
        for attempt in range(self.config.service.crash_retries + 1):
            assert self._executor is not None
            executor = self._executor
            try:
                return await loop.run_in_executor(executor, run_and_release, fn, *args)
            except BrokenProcessPool:
                # A worker died (out of memory, killed): every message in flight
                # sees this. Replace the pool once, then try the message again.
                self.stats["worker_crashes"] += 1
                if not self._own_executor:
                    raise
                if self._executor is executor:
                    self._executor = self._make_executor()
                if attempt >= self.config.service.crash_retries:
                    raise
                log.warning("a worker process died; trying the message again (%d of %d)", attempt + 1,
                            self.config.service.crash_retries)
        raise AssertionError("unreachable")

    async def process(self, raw_id: int) -> Outcome:
        """Process one stored raw message (idempotent)."""
        t_start = time.perf_counter()
        raw = await self.db(self.store.raw, raw_id)
        if raw.status != "pending":
            return Outcome(raw_id, "duplicate", reason=f"already {raw.status}")
        timings: dict[str, float] = {}
        try:
            t = time.perf_counter()
            result = await self._run(_process_in_worker, raw.body, raw.source, self.config, self.apply_filters,
                                    self._resources)
            timings["process"] = time.perf_counter() - t
            if isinstance(result, NeedsFetch):
                t = time.perf_counter()
                data = await fetch_bytes(resolve_skymap_url(result.url, raw.source), self.config.fetch, self._session)
                timings["fetch"] = time.perf_counter() - t
                t = time.perf_counter()
                result = await self._run(_process_fetched_in_worker, result, raw.source, self.config, data,
                                         self.apply_filters, self._resources)
                timings["process_fetched"] = time.perf_counter() - t
            assert isinstance(result, ProcessedAlert)
        except (AlertError, SkyMapError, FetchError, BrokenProcessPool) as exc:
            err: BaseException = exc
            transient = None
            if isinstance(exc, BrokenProcessPool):
                err = GwfollowError(f"a worker process died while processing this message, "
                                    f"{self.config.service.crash_retries + 1} time(s) (out of memory?)",
                                    hint="see the service log; requeue it with gwfollow deadletters requeue")
                transient = True
            await self.db(self._record, raw_id, raw.source, err, 0.0, None, transient)
            self.stats["dead"] += 1
            log.warning("dead letter %d: %s", raw_id, err)
            return Outcome(raw_id, "dead", reason=str(err), seconds=time.perf_counter() - t_start)
        t = time.perf_counter()
        o = await self.db(self._record, raw_id, raw.source, result)
        timings["store"] = time.perf_counter() - t
        if o.status == "dead":
            self.stats["dead"] += 1
            log.warning("dead letter %d: %s", raw_id, o.reason)
            return dataclasses.replace(o, seconds=time.perf_counter() - t_start)
        timings.update({f"worker.{k}": v for k, v in result.timings.items()})
        total = time.perf_counter() - t_start
        timings["total"] = total
        await self.db(self.store.record_timings, raw_id, timings)
        for k, v in timings.items():
            self.stage_seconds[k] += v
        o = dataclasses.replace(o, seconds=total)
        self.stats[o.status] += 1
        self.stats[f"type.{o.alert_type}"] += 1
        return o
