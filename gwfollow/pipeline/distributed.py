"""Replay on a Dask cluster: events in parallel, products identical to a sequential replay.

Each superevent's messages are processed in order by one task (a
retraction must follow the alerts it withdraws) with the same pure
:func:`gwfollow.products.core.process_message` as the service; the tasks of
different events run in parallel on the cluster.  Results come back to the
client, which writes them to the store in the global time-created order,
exactly as :func:`gwfollow.pipeline.replay.replay_messages` would: the store has one
writer and the products do not depend on the cluster.  A task that fails
(a worker dies, an unexpected error) is reported for its event, whose
messages become dead letters with the reason; the other events go on.

Without an address a ``LocalCluster`` of worker processes on 127.0.0.1 is
started for the run; with one, the client connects to an existing
scheduler (``tcp://host:8786``), see the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gwfollow.config import Config
from gwfollow.errors import (
    AlertError,
    ConfigError,
    FetchError,
    GwfollowError,
    SkyMapError,
)
from gwfollow.ingest.fetch import fetch_bytes
from gwfollow.ingest.parse import parse_alert, sniff
from gwfollow.kernels import warm_up
from gwfollow.pipeline.replay import Message
from gwfollow.pipeline.runner import record_result, resolve_skymap_url
from gwfollow.products.core import NeedsFetch, process_alert, process_message
from gwfollow.products.resources import Resources
from gwfollow.records import Outcome, ProcessedAlert
from gwfollow.store import Store


@dataclass(frozen=True)
class Failure:
    """Why a message could not be used (picklable)."""

    error_type: str
    reason: str


def _one(body: bytes, source: str, config: Config, apply_filters: bool,
         resources: Resources) -> ProcessedAlert | Failure:
    try:
        res = process_message(body, source, config, None, apply_filters, resources)
        if isinstance(res, NeedsFetch):
            data = asyncio.run(fetch_bytes(resolve_skymap_url(res.url, source), config.fetch))
            res = process_alert(res.alert, source, config, data, apply_filters, resources)
        assert isinstance(res, ProcessedAlert)
        return res
    except (AlertError, SkyMapError, FetchError) as exc:
        return Failure(type(exc).__name__, str(exc))


def process_event(items: list[tuple[bytes, str]], config: Config, apply_filters: bool) -> list[Any]:
    """All messages of one event, in order (runs on a Dask worker), with one set of resources."""
    warm_up()
    resources = Resources(config)
    return [_one(body, source, config, apply_filters, resources) for body, source in items]


def _event_key(m: Message) -> str:
    try:
        return parse_alert(m.body, m.source).superevent_id
    except GwfollowError:
        return f"unparsed:{m.source}"


@contextlib.contextmanager
def dask_client(address: str | None = None, n_workers: int = 2) -> Iterator[Any]:
    """A ``distributed.Client``: to the scheduler at ``address``, or to a new
    ``LocalCluster`` of ``n_workers`` single-threaded worker processes on
    127.0.0.1 (closed on exit)."""
    # Dask is heavy and optional: only --dask uses it.
    from distributed import Client, LocalCluster

    cluster = None
    if address is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0")
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    else:
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({exc})",
                              hint="start one with `dask scheduler`, or omit the address for a local cluster") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def replay_on_dask(messages: Sequence[Message], config: Config, store: Store, *, address: str | None = None,
                   apply_filters: bool = False, n_workers: int = 2,
                   on_outcome: Callable[[Message, Outcome], None] | None = None,
                   on_event: Callable[[str, int, int], None] | None = None) -> list[Outcome]:
    """Process ``messages`` (sorted by time created) on a Dask cluster.

    Parameters
    ----------
    messages : sequence of Message
        As from :func:`gwfollow.pipeline.replay.order_messages`.
    config : Config
    store : Store
        Written by this process only, in message order.
    address : str, optional
        Scheduler address; a ``LocalCluster`` of ``n_workers`` processes when omitted.
    on_event : callable, optional
        Called as ``on_event(superevent_id, done, total)`` as events finish (progress).

    Returns
    -------
    list of Outcome
        One per message, in message order.
    """
    # Dask is heavy and optional: only --dask uses it.
    from distributed import as_completed

    groups: dict[str, list[int]] = {}
    for i, m in enumerate(messages):
        groups.setdefault(_event_key(m), []).append(i)
    results: dict[int, Any] = {}
    with dask_client(address, n_workers) as client:
        cfg_future = client.scatter(config, broadcast=True)
        futures = {}
        for key, idx in groups.items():
            items = [(messages[i].body, messages[i].source) for i in idx]
            fut = client.submit(process_event, items, cfg_future, apply_filters, key=f"gwfollow-event-{key}-"
                                + hashlib.sha256(json.dumps([s for _, s in items]).encode()).hexdigest()[:12],
                                pure=False)
            futures[fut] = key
        done = 0
        for fut in as_completed(list(futures)):
            key = futures[fut]
            idx = groups[key]
            try:
                out = fut.result()
            except Exception as exc:  # the task failed as a whole (worker died, bug)
                out = [Failure(type(exc).__name__, f"event task failed on the cluster: {exc}")] * len(idx)
            for i, r in zip(idx, out):
                results[i] = r
            done += 1
            if on_event:
                on_event(key, done, len(groups))
    return _record(messages, results, store, on_outcome)


def _record(messages: Sequence[Message], results: dict[int, Any], store: Store,
            on_outcome: Callable[[Message, Outcome], None] | None) -> list[Outcome]:
    outcomes = []
    for i, m in enumerate(messages):
        acc = store.accept_raw(m.body, m.source, sniff(m.body), hashlib.sha256(m.body).hexdigest())
        r = results[i]
        if not acc.new:
            o = Outcome(acc.raw_id, "duplicate", reason="same bytes already stored")
        elif isinstance(r, Failure):
            o = record_result(store, acc.raw_id, m.source, GwfollowError(r.reason), error_type=r.error_type)
        else:
            o = record_result(store, acc.raw_id, m.source, r)
            if o.status != "dead":
                store.record_timings(acc.raw_id, {f"worker.{k}": v for k, v in r.timings.items()})
        outcomes.append(o)
        if on_outcome:
            on_outcome(m, o)
    return outcomes
