"""Brokers that fail: one killed in the middle of a read, on a broker of the test's own
(`scripts/kafka-local` on KAFKA_FAULT_PORT, default 19592), fails its chunk at once, saying the
cluster is unreachable, and once it is back a rerun counts every record exactly; one that is
down before the run fails the command in one metadata timeout, quietly, without its secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from recommender_pipeline.days import day_start_ms, utc_today
from recommender_pipeline.measuring.measurement import Status, TopicSpec
from recommender_pipeline.measuring.records import DayMeasurer, SamplingLimits
from recommender_pipeline_testing.pipeline import REPO, command_env
from recommender_pipeline_testing.workloads import Record, create_topic, produce

PORT = int(os.environ.get("KAFKA_FAULT_PORT", "19592"))
BOOTSTRAP = f"127.0.0.1:{PORT}"
SCRIPT = [str(REPO / "scripts" / "kafka-local")]
RECORDS = 400_000
# SAMPLING_TIMEOUT_SECONDS x SAMPLING_MAX_CONSECUTIVE_NULLS at their defaults: 100 s; a cluster
# that stops answering is given up after KAFKA_RETRY_TIMEOUT_SECONDS, here 5 (the check runs every 10 s).
LIMITS = SamplingLimits(None, 2.0, 50, retry_seconds=5)


def broker(command: str) -> None:
    subprocess.run([*SCRIPT, command], env={**os.environ, "KAFKA_LOCAL_PORT": str(PORT)}, check=True)


@pytest.fixture
def own_broker(kafka_bootstrap: str) -> Iterator[str]:  # kafka_bootstrap: the jars are in place
    broker("start")
    try:
        yield BOOTSTRAP
    finally:
        broker("stop")


def kill_broker() -> None:
    """SIGKILL, as a crash or an OOM killer would: no clean shutdown."""
    pid = int((REPO / ".local" / "kafka" / f"kafka-{PORT}.pid").read_text())
    os.kill(pid, signal.SIGKILL)


class KillsTheBrokerMidRead:
    """A consumer that kills the broker once it has handed out `after` records."""

    def __init__(self, consumer: Consumer, after: int):
        self.consumer, self.after, self.seen = consumer, after, 0

    def consume(self, num_messages: int = 1, timeout: float = -1):
        messages = self.consumer.consume(num_messages, timeout)
        self.seen += len(messages)
        if self.seen >= self.after > 0:
            kill_broker()
            self.after = 0
        return messages

    def __getattr__(self, name: str):
        return getattr(self.consumer, name)


def consumer(overrides: dict) -> Consumer:
    # A small prefetch, so most of the day is still on the broker when it dies.
    return Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": "faults",
            "enable.auto.commit": False,
            "queued.max.messages.kbytes": 512,
            "max.partition.fetch.bytes": 262_144,
            **overrides,
        }
    )


def test_a_broker_killed_mid_read_fails_the_chunk_at_once_and_a_rerun_is_exact(own_broker, prefix):
    day = utc_today() - timedelta(days=1)
    topic = f"{prefix}.crash"
    create_topic(own_broker, topic, 2)
    start = day_start_ms(day)
    produce(own_broker, topic, (Record(start + i * 200, b"v" * 100, partition=i % 2) for i in range(RECORDS)))
    spec = TopicSpec("crash", topic, 2, None, False)

    admin = AdminClient({"bootstrap.servers": own_broker})
    measurer = DayMeasurer(admin, lambda o: KillsTheBrokerMidRead(consumer(o), 20_000), day, LIMITS)
    started = time.monotonic()
    [failed] = measurer.measure([spec])
    time_to_fail = time.monotonic() - started
    assert failed.status is Status.ERROR
    assert "cluster unreachable" in failed.reason
    assert time_to_fail < 30, f"took {time_to_fail:.0f}s, the stall period is {LIMITS.stall_seconds:.0f}s"

    broker("start")  # the same data directory: the log survived the crash
    [row] = DayMeasurer(AdminClient({"bootstrap.servers": own_broker}), consumer, day, LIMITS).measure([spec])
    assert (row.status, row.records, row.bytes, row.exact) == (Status.MEASURED, RECORDS, RECORDS * 100, True)


class RestartsTheBrokerMidRead:
    """A consumer that restarts the broker (a clean shutdown and start, as a rolling restart
    does) once it has handed out `after` records, without waiting for it."""

    def __init__(self, consumer: Consumer, after: int):
        self.consumer, self.after, self.seen, self.restart = consumer, after, 0, None

    def consume(self, num_messages: int = 1, timeout: float = -1):
        messages = self.consumer.consume(num_messages, timeout)
        self.seen += len(messages)
        if self.seen >= self.after > 0:
            self.restart = subprocess.Popen([*SCRIPT, "restart"], env={**os.environ, "KAFKA_LOCAL_PORT": str(PORT)})
            self.after = 0
        return messages

    def __getattr__(self, name: str):
        return getattr(self.consumer, name)


def test_a_broker_restarted_before_and_during_a_read_leaves_the_day_exact(own_broker, prefix):
    """Right after a restart the broker answers ListOffsets with UNKNOWN_LEADER_EPOCH for a few
    seconds; during one, reads stall. Both are retried within KAFKA_RETRY_TIMEOUT_SECONDS (60 s)."""
    day = utc_today() - timedelta(days=1)
    topics = [f"{prefix}.restart{i}" for i in range(12)]
    for topic in topics:
        create_topic(own_broker, topic, 2)
    start = day_start_ms(day)
    per_topic = 20_000
    for topic in topics:
        produce(own_broker, topic, (Record(start + i * 4_000, b"v" * 100, partition=i % 2) for i in range(per_topic)))
    specs = [TopicSpec("restart", topic, 2, None, False) for topic in topics]
    limits = SamplingLimits(None, 2.0, 50, retry_seconds=60)

    broker("restart")  # measured at once: the leaders' epochs are not settled yet
    rows = DayMeasurer(AdminClient({"bootstrap.servers": own_broker}), consumer, day, limits).measure(specs)
    assert [(row.status, row.records, row.exact) for row in rows] == [(Status.MEASURED, per_topic, True)] * 12

    wrapped: list[RestartsTheBrokerMidRead] = []

    def restarting(overrides: dict):
        wrapped.append(RestartsTheBrokerMidRead(consumer(overrides), 60_000))
        return wrapped[-1]

    rows = DayMeasurer(AdminClient({"bootstrap.servers": own_broker}), restarting, day, limits).measure(specs)
    assert wrapped[0].restart is not None and wrapped[0].restart.wait(120) == 0
    assert [(row.status, row.records, row.bytes) for row in rows] == [
        (Status.MEASURED, per_topic, per_topic * 100)
    ] * 12


@pytest.mark.integration  # no broker needed, but it waits out the metadata timeout: not the unit layer
def test_a_broker_down_before_the_run_fails_in_one_timeout_quietly_and_without_its_secret(tmp_path):
    secret = "hunter2-do-not-print"
    entry = {"kafka_cluster_id": "dead", "bootstrap.servers": "127.0.0.1:9", "security.protocol": "SASL_PLAINTEXT"}
    cluster = json.dumps([{**entry, "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": secret}])
    env = command_env(BOOTSTRAP, tmp_path, KAFKA_CREDENTIALS=cluster)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "recommender_pipeline.command.cli"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1 and elapsed < 60
    assert "cluster dead unreachable" in output and "1 cluster(s) could not be inventoried: dead" in output
    assert output.count("Connection refused") <= 2  # librdkafka's retries, each line once
    assert len(output.splitlines()) < 100
    stored = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert stored and not any(secret.encode() in path.read_bytes() for path in stored)  # Dagster storage, store
    assert secret not in output


class OnePartitionStuck:
    """A consumer whose fetches of one partition never arrive, as behind a stuck leader: its
    records are dropped and its position stays where the read began."""

    def __init__(self, consumer: Consumer, topic: str):
        self.consumer, self.topic = consumer, topic

    def consume(self, num_messages: int = 1, timeout: float = -1):
        return [m for m in self.consumer.consume(num_messages, timeout) if m.topic() != self.topic]

    def position(self, partitions):
        return [
            tp if tp.topic != self.topic else TopicPartition(tp.topic, tp.partition, 0)
            for tp in self.consumer.position(partitions)
        ]

    def __getattr__(self, name: str):
        return getattr(self.consumer, name)


def test_a_stalled_partition_fails_its_topic_after_the_stall_period_and_the_others_land(kafka_bootstrap, prefix):
    day = utc_today() - timedelta(days=1)
    start = day_start_ms(day)
    for name in ("stuck", "fine"):
        create_topic(kafka_bootstrap, f"{prefix}.{name}", 1)
        produce(kafka_bootstrap, f"{prefix}.{name}", (Record(start + i * 1000, b"s" * 10) for i in range(500)))
    limits = SamplingLimits(None, 0.2, 10)  # SAMPLING_TIMEOUT_SECONDS x SAMPLING_MAX_CONSECUTIVE_NULLS = 2 s

    def consumer_factory(overrides: dict) -> OnePartitionStuck:
        config = {"bootstrap.servers": kafka_bootstrap, "group.id": "stall", "enable.auto.commit": False}
        return OnePartitionStuck(Consumer({**config, **overrides}), f"{prefix}.stuck")

    specs = [TopicSpec("local", f"{prefix}.{name}", 1, None, False) for name in ("stuck", "fine")]
    started = time.monotonic()
    stuck, fine = DayMeasurer(
        AdminClient({"bootstrap.servers": kafka_bootstrap}), consumer_factory, day, limits
    ).measure(specs)
    assert 2 <= time.monotonic() - started < 8
    assert stuck.status is Status.ERROR and "no progress for 2s" in stuck.reason and "partition 0" in stuck.reason
    assert (fine.status, fine.records, fine.bytes) == (Status.MEASURED, 500, 5_000)
