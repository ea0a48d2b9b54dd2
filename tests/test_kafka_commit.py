"""The Kafka listener's commit order, pinned against the real broker (tansu).

At-least-once (DESIGN.md, "Raw first"): a message's offset is committed only
after the raw message is durable in the store.  The listener runs against a
real broker and a real pipeline and store; only its intake is *held* (or made
to fail) message by message, so the committed offset can be read from the
broker at the moment the store has not yet got the message.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from gwfollow.config import Config, packaged_defaults
from gwfollow.pipeline.listeners import KafkaListener
from gwfollow.pipeline.runner import Pipeline
from gwfollow.store import Accepted, Store

from .kafka_broker import FAST_GROUP_SETTINGS

STEP = 60.0  # seconds any one step may take on a loaded machine before the test fails


class HeldPipeline(Pipeline):
    """The real pipeline, whose :meth:`accept` waits for the test's word per message.

    Each message arriving at intake is announced on ``arrived``; the test then
    puts ``"store"`` (accept it for real) or ``"fail"`` (raise ``OSError``, as a
    full disk would) on ``verdicts``.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.arrived: asyncio.Queue[bytes] = asyncio.Queue()
        self.verdicts: asyncio.Queue[str] = asyncio.Queue()

    async def accept(self, body: bytes, source: str) -> Accepted:
        await self.arrived.put(body)
        verdict = await self.verdicts.get()
        if verdict == "fail":
            raise OSError("intake failed on purpose (test)")
        return await super().accept(body, source)


def _config(bootstrap: str, topic: str, group: str, db: Path) -> Config:
    return packaged_defaults().updated(
        telescopes=(), sites=(), store=dict(path=str(db)), service=dict(workers=1, queue_size=4),
        kafka=dict(enabled=True, bootstrap=bootstrap, topics=(topic,), group_id=group,
                   auto_offset_reset="earliest", security_protocol="PLAINTEXT", **FAST_GROUP_SETTINGS),
    )


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    """The group's committed offset as the broker has it (a separate, non-member client)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return await c.committed(tp)
    finally:
        await c.stop()


async def _next(q: asyncio.Queue[bytes]) -> bytes:
    return await asyncio.wait_for(q.get(), STEP)


async def test_offset_committed_only_after_the_store_and_exactly_once_after_restart(
        kafka_broker, tmp_path) -> None:
    topic, group = f"c-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await kafka_broker.acreate_topic(topic, partitions=1)
    tp = TopicPartition(topic, 0)
    bodies = [f"message {i}: not an alert".encode() for i in range(3)]
    prod = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await prod.start()
    try:
        for b in bodies:
            await prod.send_and_wait(topic, b)
    finally:
        await prod.stop()

    cfg = _config(kafka_broker.bootstrap, topic, group, tmp_path / "k.sqlite")
    store = Store(cfg.store.path)
    pipe = HeldPipeline(cfg, store, executor=ThreadPoolExecutor(1))
    await pipe.start()
    listener = KafkaListener(cfg.kafka, pipe)
    task = asyncio.create_task(listener.run())
    try:
        # Message 0 is at intake, held: nothing stored, so nothing committed.
        assert await _next(pipe.arrived) == bodies[0]
        assert await _committed(kafka_broker.bootstrap, group, tp) is None
        assert store.counts()["raw_messages"] == 0
        # Intake fails: the offset stays, and the broker delivers message 0 again.
        await pipe.verdicts.put("fail")
        assert await _next(pipe.arrived) == bodies[0]
        assert await _committed(kafka_broker.bootstrap, group, tp) is None
        await pipe.verdicts.put("store")
        # Message 1 is at intake: message 0 is stored, its offset + 1 committed.
        assert await _next(pipe.arrived) == bodies[1]
        assert store.counts()["raw_messages"] == 1
        assert await _committed(kafka_broker.bootstrap, group, tp) == 1
        assert listener.consumed == 1
    finally:
        # The service stops (or dies) while message 1 is held at intake.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pipe.stop()

    # Restart: a new consumer of the group resumes at the committed offset.
    pipe2 = Pipeline(cfg, store, executor=ThreadPoolExecutor(1))
    await pipe2.start()
    listener2 = KafkaListener(cfg.kafka, pipe2)
    task2 = asyncio.create_task(listener2.run())
    try:
        async def settled() -> None:
            while listener2.consumed < 2 or await _committed(kafka_broker.bootstrap, group, tp) != 3:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(settled(), STEP)
        await pipe2.join()
    finally:
        task2.cancel()
        await asyncio.gather(task2, return_exceptions=True)
        await pipe2.stop()
    rows = store.query("SELECT content_hash, deliveries FROM raw_messages ORDER BY id")
    # Every message delivered to the store once and stored once, in order.
    assert [r[0] for r in rows] == [hashlib.sha256(b).hexdigest() for b in bodies]
    assert [r[1] for r in rows] == [1, 1, 1]
    assert listener2.consumed == 2 and pipe2.stats["redelivered"] == 0
    store.close()
