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
   With ``service.defer_slow_products`` (the default) this first step holds
   the sky map, its MOCs and ranked targets, and the same transaction
   queues a ``deferred_work`` row; the alert is then announced (hooks).
5. **second step** — observability, coverages, plans and the combined
   map's products, in their own (niced) worker processes so that they never
   delay a first step; stored in one transaction that marks the row done.
   Rows still pending at start-up are resumed.

The database is touched from one dedicated thread, the CPU-heavy work from a
process pool: the event loop only schedules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import multiprocessing
import os
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
from gwfollow.ingest.parse import parse_alert, sniff
from gwfollow.kernels import warm_up
from gwfollow.products.core import NeedsFetch, process_alert, process_deferred, process_message
from gwfollow.products.resources import Resources
from gwfollow.pipeline.worker import die_with_parent, run_and_release
from gwfollow.records import DeferredParts, Outcome, ProcessedAlert, ProcessedDeferred
from gwfollow.store import Accepted, DeferredWork, Recorded, Store

log = logging.getLogger("gwfollow.pipeline.runner")
T = TypeVar("T")


_WORKER_RESOURCES: Resources | None = None
"""The one :class:`Resources` of a worker process, made by :func:`_init_worker` (a process
pool gives its initializer no other way to hand state to the tasks)."""


def _init_worker(config: Config | None = None, nice: int = 0) -> None:
    """Worker-process start: load the numba kernels from their cache and, with
    a configuration, prepare what the first alert would otherwise wait for
    (catalogue indexes are built on first use, telescopes and their footprints now);
    ``nice`` lowers the process's CPU priority (second-step workers)."""
    global _WORKER_RESOURCES

    die_with_parent()
    if nice:
        os.nice(nice)
    warm_up()
    if config is not None:
        _WORKER_RESOURCES = Resources(config)
        _WORKER_RESOURCES.warm()


def _ping() -> bool:
    return True


def _process_in_worker(body: bytes, source: str, config: Config, apply_filters: bool,
                       resources: Resources | None = None) -> ProcessedAlert | NeedsFetch:
    return process_message(body, source, config, None, apply_filters, resources or _WORKER_RESOURCES,
                           defer=config.service.defer_slow_products)


def _process_fetched_in_worker(needs: NeedsFetch, source: str, config: Config, data: bytes, apply_filters: bool,
                               resources: Resources | None = None) -> ProcessedAlert | NeedsFetch:
    return process_alert(needs.alert, source, config, data, apply_filters, resources or _WORKER_RESOURCES,
                         defer=config.service.defer_slow_products)


def _process_deferred_in_worker(body: bytes, source: str, config: Config, gw_skymap: bytes,
                                parts: DeferredParts, resources: Resources | None = None) -> ProcessedDeferred:
    return process_deferred(body, source, config, gw_skymap, parts, resources or _WORKER_RESOURCES)


def check_message(body: bytes, source: str) -> None:
    """Parse a message and drop the result (intake checks in a worker: see :meth:`Pipeline.check`)."""
    parse_alert(body, source)


def outcome_of(raw_id: int, result: ProcessedAlert, recorded: Recorded, seconds: float = 0.0) -> Outcome:
    """The outcome of a message whose alert the store has recorded."""
    a = result.alert
    reason = recorded.note if recorded.note is not None else result.note
    return Outcome(raw_id, recorded.status, a.superevent_id, a.alert_type, recorded.alert_id,
                   reason=reason, seconds=seconds, deferred_id=recorded.deferred_id)


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
DeferredHook = Callable[[DeferredWork], Awaitable[None]]


class Pipeline:
    """Accepts raw messages and processes them into stored products.

    Parameters
    ----------
    config : Config
    store : Store
    executor : concurrent.futures.Executor, optional
        Where :func:`process_message` runs, and the second step too; by
        default a process pool of ``config.service.workers`` spawned workers
        for the first step and one of ``config.service.deferred_workers``
        (niced by ``deferred_nice``) for the second.
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
        self._slow_executor = executor
        self._db = ThreadPoolExecutor(1, thread_name_prefix="gwfollow-db")
        self._queue: asyncio.Queue[int] | None = None
        self._deferred_queue: asyncio.Queue[int] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._deferred_hooks: list[DeferredHook] = []
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

    def _make_executor(self, slow: bool = False) -> Executor:
        ctx = multiprocessing.get_context("spawn")
        svc = self.config.service
        if slow:
            return ProcessPoolExecutor(svc.deferred_workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(self.config, svc.deferred_nice))
        return ProcessPoolExecutor(svc.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.config,))

    async def start(self, resume: bool = True) -> None:
        """Start the workers; resume messages accepted before a crash, and second steps not done."""
        svc = self.config.service
        if self._executor is None:
            self._executor = self._make_executor()
        if self._slow_executor is None:
            self._slow_executor = self._make_executor(slow=True)
        loop = asyncio.get_running_loop()
        # Make sure every worker has started (and warmed its kernels) now,
        # not when the first alert arrives.
        pings = [loop.run_in_executor(self._executor, _ping) for _ in range(svc.workers)]
        if self._own_executor:
            # The second step's workers too: until its initializer has run, a worker
            # would not die with this process (die_with_parent).
            pings += [loop.run_in_executor(self._slow_executor, _ping) for _ in range(svc.deferred_workers)]
        await asyncio.gather(*pings)
        self._queue = asyncio.Queue(svc.queue_size)
        self._deferred_queue = asyncio.Queue()
        self._session = checked_session(self.config.fetch)
        self._workers = [asyncio.create_task(self._worker(i), name=f"gwfollow-worker-{i}")
                         for i in range(svc.workers)]
        self._workers += [asyncio.create_task(self._deferred_worker(), name=f"gwfollow-deferred-{i}")
                          for i in range(svc.deferred_workers)]
        self.started = True
        for work_id in await self.db(self.store.pending_deferred_ids):
            self._deferred_queue.put_nowait(work_id)  # ids only: unbounded is fine
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
            t_end = time.monotonic() + timeout
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
                if self._deferred_queue is not None:
                    await asyncio.wait_for(self._deferred_queue.join(), max(0.0, t_end - time.monotonic()))
            except asyncio.TimeoutError:
                log.warning("stopping with %d message(s) and %d second step(s) still queued; they resume at "
                            "the next start", self._queue.qsize(),
                            self._deferred_queue.qsize() if self._deferred_queue is not None else 0)
        self.started = False
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._own_executor:
            for ex in (self._executor, self._slow_executor):
                if ex is not None:
                    ex.shutdown(wait=True, cancel_futures=True)
            self._executor = self._slow_executor = None
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
        with self.store.transaction(derived=True):  # the raw message is durable; see Store's notes
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
        """Call ``await hook(outcome)`` after each message is stored (its first step)."""
        self._hooks.append(hook)

    def add_deferred_hook(self, hook: DeferredHook) -> None:
        """Call ``await hook(work)`` after each second step is stored (``done``) or given up (``failed``)."""
        self._deferred_hooks.append(hook)

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
        acc = await self.db(self._accept, body, source)
        self.stats["accepted" if acc.new else "redelivered"] += 1
        return acc

    def _accept(self, body: bytes, source: str) -> Accepted:
        # On the database thread: hashing megabytes (hashlib lets go of the GIL) stays off the event loop.
        return self.store.accept_raw(body, source, sniff(body), hashlib.sha256(body).hexdigest())

    async def check(self, body: bytes, source: str) -> None:
        """Parse ``body`` in a worker process (the event loop's process keeps its CPU and GIL for
        requests); raises the parser's :class:`~gwfollow.errors.AlertError` when it is not an alert."""
        await self._run(check_message, body, source)

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
        """Wait until every queued message is processed, second steps included."""
        if self._resume_task is not None:
            await asyncio.shield(self._resume_task)
        if self._queue is not None:
            await self._queue.join()
        if self._deferred_queue is not None:
            await self._deferred_queue.join()

    # ---------------------------------------------------------- processing

    async def _worker(self, i: int) -> None:
        assert self._queue is not None
        while True:
            raw_id = await self._queue.get()
            timings: dict[str, float] | None = None
            try:
                try:
                    outcome, timings = await self._process(raw_id)
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
                if timings:  # after the announcement: nobody waits for these
                    await self.db(self.store.record_timings, raw_id, timings)
            except asyncio.CancelledError:
                raise
            finally:
                self._owned.discard(raw_id)
                self._queue.task_done()

    async def _deferred_worker(self) -> None:
        assert self._deferred_queue is not None
        while True:
            work_id = await self._deferred_queue.get()
            try:
                try:
                    work = await self.process_deferred(work_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug: record it, never retry for ever
                    log.exception("unexpected failure in the second step %d", work_id)
                    await self.db(self.store.fail_deferred, work_id, f"internal error: {type(exc).__name__}: {exc}")
                    work = await self.db(self.store.deferred, work_id)
                for hook in self._deferred_hooks:
                    try:
                        await hook(work)
                    except Exception:  # a hook must never stop the pipeline
                        log.exception("second-step hook failed for work %d", work_id)
            except asyncio.CancelledError:
                raise
            finally:
                self._deferred_queue.task_done()

    async def process_deferred(self, work_id: int) -> DeferredWork:
        """Run and store one second step (idempotent: a step no longer pending is left alone)."""
        t_start = time.perf_counter()
        work = await self.db(self.store.deferred, work_id)
        if work.state != "pending":
            return work
        limit = self.config.service.crash_retries + 1
        attempts = await self.db(self.store.start_deferred, work_id)
        if attempts > limit:  # it killed its worker at every try, restarts included
            msg = f"the second step was started {attempts - 1} time(s) without finishing (worker killed?)"
            await self.db(self.store.fail_deferred, work_id, msg)
            return await self.db(self.store.deferred, work_id)
        raw = await self.db(self.store.raw, work.raw_id)
        gw = ""
        if "gw" in work.parts.parts:
            maps = await self.db(self.store.skymaps_of, work.superevent_id)
            gw_id = next((m["id"] for m in maps if m["alert_id"] == work.alert_id and m["role"] == "gw"), None)
            gw = await self.db(self.store.skymap_bytes, gw_id) if gw_id is not None else b""
        try:
            result = await self._run(_process_deferred_in_worker, raw.body, raw.source, self.config, gw,
                                     work.parts, self._resources, slow=True)
        except (GwfollowError, BrokenProcessPool) as exc:
            reason = str(exc) if isinstance(exc, GwfollowError) else \
                f"a worker process died in the second step {limit} time(s) (out of memory?)"
            await self.db(self.store.fail_deferred, work_id, reason)
            self.stats["deferred_failed"] += 1
            log.warning("second step %d of %s failed: %s", work_id, work.superevent_id, reason)
            return await self.db(self.store.deferred, work_id)
        assert isinstance(result, ProcessedDeferred)
        done = await self.db(self._record_deferred, work, result)
        self.stats["deferred_done"] += 1
        self.stage_seconds["deferred.total"] += time.perf_counter() - t_start
        for k, v in result.timings.items():
            self.stage_seconds[f"deferred.worker.{k}"] += v
        return done

    def _record_deferred(self, work: DeferredWork, result: ProcessedDeferred) -> DeferredWork:
        done = self.store.record_deferred(work.id, result)
        o = Outcome(work.raw_id, "processed", work.superevent_id, alert_id=work.alert_id)
        for fn in self._commit_listeners:
            try:
                fn(o)
            except Exception:  # a listener must never stop the pipeline
                log.exception("commit listener failed for second step %d", work.id)
        return done

    async def _run(self, fn: Callable[..., Any], *args: Any, slow: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        attr = "_slow_executor" if slow else "_executor"
        for attempt in range(self.config.service.crash_retries + 1):
            executor = getattr(self, attr)
            assert executor is not None
            try:
                return await loop.run_in_executor(executor, run_and_release, fn, *args)
            except BrokenProcessPool:
                # A worker died (out of memory, killed): every message in flight
                # sees this. Replace the pool once, then try the message again.
                self.stats["deferred_worker_crashes" if slow else "worker_crashes"] += 1
                if not self._own_executor:
                    raise
                if getattr(self, attr) is executor:
                    setattr(self, attr, self._make_executor(slow=slow))
                if attempt >= self.config.service.crash_retries:
                    raise
                log.warning("a worker process died; trying the message again (%d of %d)", attempt + 1,
                            self.config.service.crash_retries)
        raise AssertionError("unreachable")

    async def process(self, raw_id: int) -> Outcome:
        """Process one stored raw message (idempotent)."""
        outcome, timings = await self._process(raw_id)
        if timings:
            await self.db(self.store.record_timings, raw_id, timings)
        return outcome

    async def _process(self, raw_id: int) -> tuple[Outcome, dict[str, float] | None]:
        """:meth:`process` without recording its timings (returned, for after the announcement)."""
        t_start = time.perf_counter()
        raw = await self.db(self.store.raw, raw_id)
        if raw.status != "pending":
            return Outcome(raw_id, "duplicate", reason=f"already {raw.status}"), None
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
            return Outcome(raw_id, "dead", reason=str(err), seconds=time.perf_counter() - t_start), None
        t = time.perf_counter()
        o = await self.db(self._record, raw_id, raw.source, result)
        timings["store"] = time.perf_counter() - t
        if o.status == "dead":
            self.stats["dead"] += 1
            log.warning("dead letter %d: %s", raw_id, o.reason)
            return dataclasses.replace(o, seconds=time.perf_counter() - t_start), None
        timings.update({f"worker.{k}": v for k, v in result.timings.items()})
        total = time.perf_counter() - t_start
        timings["total"] = total
        for k, v in timings.items():
            self.stage_seconds[k] += v
        o = dataclasses.replace(o, seconds=total)
        self.stats[o.status] += 1
        self.stats[f"type.{o.alert_type}"] += 1
        if o.deferred_id is not None and self._deferred_queue is not None:
            self._deferred_queue.put_nowait(o.deferred_id)
        return o, timings
