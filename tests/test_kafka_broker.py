"""The Kafka semantics gwfollow relies on, checked against a real tansu broker.

One broker per test module (and so per xdist worker), each test on its own
topic and consumer group.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from .kafka_broker import (
    FAST_GROUP_SETTINGS,
    BrokerStartError,
    KafkaBroker,
    tansu_binary,
)

DEADLINE_S = 15.0  # per wait; the whole module normally takes ~3 s


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A tansu broker shared by the tests of this module."""
    with KafkaBroker(log_dir=tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def produce(broker: KafkaBroker, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


def group_consumer(broker: KafkaBroker, topic: str, group: str) -> AIOKafkaConsumer:
    """A subscribed consumer-group member with manual commits."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **FAST_GROUP_SETTINGS,
    )


async def take(consumer: AIOKafkaConsumer, n: int) -> list[ConsumerRecord]:
    """Exactly the next ``n`` records, one at a time (``getone`` never over-reads)."""
    return [await asyncio.wait_for(consumer.getone(), DEADLINE_S) for _ in range(n)]


def test_tansu_binary_is_executable() -> None:
    path = tansu_binary()
    assert path.name.startswith("tansu") and path.is_file()
    assert path.stat().st_mode & 0o100


async def test_produce_then_consume_in_order_with_manual_commit(kafka_broker: KafkaBroker) -> None:
    topic, group = unique("order"), unique("g")
    await kafka_broker.acreate_topic(topic, partitions=1)
    values = [f"alert-{i:03d}".encode() for i in range(25)]
    await produce(kafka_broker, topic, values)

    tp = TopicPartition(topic, 0)
    consumer = group_consumer(kafka_broker, topic, group)
    await consumer.start()
    try:
        records = await take(consumer, len(values))
        assert [r.value for r in records] == values
        assert [r.offset for r in records] == list(range(len(values)))
        assert consumer.assignment() == {tp}
        assert await consumer.committed(tp) is None  # auto-commit really is off
        await consumer.commit()  # commits the consumed position
        assert await consumer.committed(tp) == len(values)
    finally:
        await consumer.stop()


async def test_new_group_member_resumes_after_committed_offset(kafka_broker: KafkaBroker) -> None:
    topic, group = unique("resume"), unique("g")
    await kafka_broker.acreate_topic(topic, partitions=1)
    tp = TopicPartition(topic, 0)
    await produce(kafka_broker, topic, [f"m{i}".encode() for i in range(10)])

    first = group_consumer(kafka_broker, topic, group)
    await first.start()
    try:
        records = await take(first, 5)
        # Process-then-commit: records 0-3 are handled and committed one by
        # one; the process "dies" while handling record 4 (never committed).
        for record in records[:4]:
            await first.commit({tp: record.offset + 1})
        assert await first.committed(tp) == 4
    finally:
        await first.stop()

    await produce(kafka_broker, topic, [b"m10", b"m11"])  # arrives while no one listens

    second = group_consumer(kafka_broker, topic, group)
    await second.start()
    try:
        records = await take(second, 8)
        # At-least-once: the uncommitted record 4 is delivered again, nothing
        # before it is, and nothing is skipped.
        assert [r.offset for r in records] == list(range(4, 12))
        assert [r.value for r in records] == [f"m{i}".encode() for i in range(4, 12)]
        await second.commit()
        assert await second.committed(tp) == 12
    finally:
        await second.stop()


async def replay_to_end(broker: KafkaBroker, topic: str) -> tuple[dict[TopicPartition, int], list[ConsumerRecord]]:
    """Read every partition of ``topic`` from the start up to its end offset, then stop.

    The end offsets are snapshotted first, so records produced meanwhile are
    left for a live consumer.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        assert topic in await consumer.topics()  # also refreshes metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        pending = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        deadline = time.monotonic() + DEADLINE_S
        while pending:
            assert time.monotonic() < deadline, f"replay stuck before the end: {pending}"
            batches = await consumer.getmany(*pending, timeout_ms=200)
            for tp, batch in batches.items():
                records.extend(r for r in batch if r.offset < end[tp])
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        return end, records
    finally:
        await consumer.stop()


async def test_end_of_topic_is_detected(kafka_broker: KafkaBroker) -> None:
    topic = unique("replay")
    await kafka_broker.acreate_topic(topic, partitions=2)

    end, records = await asyncio.wait_for(replay_to_end(kafka_broker, topic), DEADLINE_S)
    assert set(end.values()) == {0} and records == []  # empty topic: done at once

    await produce(kafka_broker, topic, [b"a0", b"a1", b"a2"], partition=0)
    await produce(kafka_broker, topic, [b"b0", b"b1"], partition=1)
    end, records = await asyncio.wait_for(replay_to_end(kafka_broker, topic), DEADLINE_S)
    assert end == {TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 2}
    by_partition = {p: [r.value for r in records if r.partition == p] for p in (0, 1)}
    assert by_partition == {0: [b"a0", b"a1", b"a2"], 1: [b"b0", b"b1"]}

    # The live end moves on; a replay snapshot does not chase it.
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        await produce(kafka_broker, topic, [b"a3"], partition=0)
        assert (await consumer.end_offsets([tp]))[tp] == 4
        assert (await consumer.beginning_offsets([tp]))[tp] == 0
    finally:
        await consumer.stop()


def test_second_broker_gets_own_port_and_stops_cleanly(kafka_broker: KafkaBroker, tmp_path) -> None:
    with KafkaBroker(log_dir=tmp_path) as other:
        assert other.port != kafka_broker.port and other.is_running()
        assert other.startup_seconds > 0  # measured; start() itself fails past startup_timeout
        other.create_topic("only-here")
        process = other._process
    assert process is not None and process.poll() is not None
    assert not other.is_running() and other.pid is None
    assert "listening on: tcp://127.0.0.1:" in (tmp_path / "tansu.log").read_text()


def test_start_failure_reports_log_tail(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'fake tansu: refusing to start' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GWFOLLOW_TANSU", str(fake))
    broker = KafkaBroker(log_dir=tmp_path / "logs", port=1, startup_timeout=5)
    with pytest.raises(BrokerStartError, match="(?s)exited with status 3.*refusing to start"):
        broker.start()
    assert not broker.is_running()
