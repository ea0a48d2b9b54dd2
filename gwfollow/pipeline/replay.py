"""Replay archived alerts through the pipeline, deterministically.

Inputs are IGWN alert JSON files, VOEvents and FITS sky maps (files or
directories, searched recursively) or a Kafka topic read to its end.  They
are processed one at a time in order of ``time_created`` (then by name), by
the same :class:`~gwfollow.pipeline.runner.Pipeline` as ``gwfollow serve``, so the
same input always gives the same products (apart from wall-clock
timestamps).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition

from gwfollow.config import Config
from gwfollow.errors import GwfollowError
from gwfollow.ingest.parse import parse_alert
from gwfollow.pipeline.runner import Pipeline
from gwfollow.records import Outcome
from gwfollow.store import Store

SUFFIXES = (".json", ".xml", ".fits", ".fits.gz", ".fit", ".fits.fz", ".gz")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Message:
    """One input message and the key it is ordered by."""

    body: bytes
    source: str
    time_created: datetime


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """Alert files named, or found recursively under directories."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # Non-regular entries too: read_input rejects them by name instead of skipping them silently.
            out.extend(sorted(f for f in p.rglob("*") if not f.is_dir() and f.name.endswith(SUFFIXES)))
        elif p.exists():
            out.append(p)
        else:
            raise GwfollowError(f"{p}: no such file or directory")
    return out


def read_input(path: Path, max_mib: float) -> bytes:
    """The bytes of one archived input (a regular file of at most ``max_mib``).

    Raises
    ------
    GwfollowError
        Unreadable, not a regular file (a FIFO would block the replay), too large.
    """
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise GwfollowError(f"{path}: not a regular file")
            limit = int(max_mib * 2**20)
            data = fh.read(limit + 1)
    except OSError as exc:
        raise GwfollowError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > limit:
        raise GwfollowError(f"{path}: larger than {max_mib:g} MiB (service.max_body_mib)")
    return data


def rejection_summary(rejected: Sequence[tuple[str, str]], db: str | None = None, shown: int = 20) -> str:
    """A few lines naming each rejected input and why."""
    lines = [f"{len(rejected)} input(s) rejected" + (f" (kept as dead letters in {db})" if db else "") + ":"]
    for source, reason in rejected[:shown]:
        lines.append(f"  {source}: {reason}")
    if len(rejected) > shown:
        lines.append(f"  ... and {len(rejected) - shown} more")
    return "\n".join(lines)


def _time_created(body: bytes, source: str) -> datetime:

    try:
        return parse_alert(body, source).time_created
    except Exception:  # noqa: BLE001 - ordering never aborts a replay
        return _EPOCH  # unparseable: first, and it becomes a dead letter with the reason


def order_messages(items: Iterable[tuple[bytes, str]]) -> list[Message]:
    """Messages sorted by (time created, source)."""
    msgs = [Message(b, s, _time_created(b, s)) for b, s in items]
    return sorted(msgs, key=lambda m: (m.time_created, m.source))


def read_kafka(bootstrap: str, topic: str, from_beginning: bool = True, timeout_s: float = 30.0) -> list[tuple[bytes, str]]:
    """Every message of ``topic`` up to its current end (then stops)."""
    return asyncio.run(_read_kafka(bootstrap, topic, from_beginning, timeout_s))


async def _read_kafka(bootstrap: str, topic: str, from_beginning: bool, timeout_s: float) -> list[tuple[bytes, str]]:

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    out: list[tuple[bytes, str]] = []
    try:
        await consumer.topics()  # fetches the cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise GwfollowError(f"kafka topic {topic!r} not found on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        for tp in tps:
            while await consumer.position(tp) < end[tp]:
                if time.monotonic() > deadline:
                    raise GwfollowError(f"kafka replay of {topic!r} did not reach the end in {timeout_s:g} s")
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for msg in batch.get(tp, []):
                    if msg.offset < end[tp] and msg.value is not None:
                        out.append((msg.value, f"kafka:{topic}[{tp.partition}]@{msg.offset}"))
    finally:
        await consumer.stop()
    return out


class Progress:
    """A one-line progress bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, text: str) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        line = f"[{bar}] {self.done}/{self.total} {rate:5.1f}/s {text}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line[:200])
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


async def replay_messages(messages: Sequence[Message], config: Config, store: Store,
                          apply_filters: bool = False,
                          on_outcome: Callable[[Message, Outcome], None] | None = None) -> list[Outcome]:
    """Run ``messages`` through a pipeline, one after the other."""
    outcomes: list[Outcome] = []
    done: asyncio.Queue[Outcome] = asyncio.Queue()

    async def hook(o: Outcome) -> None:
        await done.put(o)

    pipe = Pipeline(config, store, apply_filters=apply_filters)
    pipe.add_hook(hook)
    await pipe.start(resume=False)
    try:
        for m in messages:
            acc = await pipe.submit(m.body, m.source)
            if acc.new:
                o = await done.get()
            else:
                o = Outcome(acc.raw_id, "duplicate", reason="same bytes already stored")
            outcomes.append(o)
            if on_outcome:
                on_outcome(m, o)
        await pipe.join()  # the second steps too: a replay ends with every product stored
    finally:
        await pipe.stop()
    return outcomes
