"""Recommendations a team can act on, on the real broker: real consumer groups (members, idle ones,
growing lag), a hot key, keyed and compacted topics whose remapped share is checked against
librdkafka's own murmur2 partitioner, and a cluster pushed past its partition cap. Every expected
number comes from what the test produced, consumed and committed."""

from __future__ import annotations

import time
from datetime import timedelta

import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from recommender_pipeline.assets import profiles
from recommender_pipeline.days import utc_today
from recommender_pipeline_testing.workloads import Record, create_topic, produce


def produce_keyed(bootstrap: str, topic: str, keys: list[bytes], value: bytes = b"v" * 20) -> list[int]:
    """Produces one record per key through librdkafka's murmur2 partitioner (the Java client's);
    returns the partition each landed on, in order: the independent truth for remapping."""
    landed: dict[int, int] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5})
    for index, key in enumerate(keys):

        def delivered(error, message, index=index):
            assert error is None, error
            landed[index] = message.partition()

        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    return [landed[i] for i in range(len(keys))]


def join_group(bootstrap: str, group: str, topic: str, members: int) -> list[Consumer]:
    """`members` consumers in one group, subscribed until every partition is assigned."""
    consumers = [
        Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 45_000,
            }
        )
        for _ in range(members)
    ]
    for consumer in consumers:
        consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for consumer in consumers:
            consumer.poll(0.1)
        if sum(len(c.assignment()) for c in consumers) == 4 and sum(1 for c in consumers if c.assignment()) == 4:
            return consumers
    raise AssertionError("the group never settled on 4 assigned members")


def commit_first(consumers: list[Consumer], topic: str, per_partition: int) -> None:
    """Each assigned partition committed at `per_partition`, then paused: the group stays (the
    background thread heartbeats) but reads no more, so its lag grows with every new record."""
    for consumer in consumers:
        assigned = consumer.assignment()
        if assigned:
            consumer.commit(
                offsets=[TopicPartition(topic, tp.partition, per_partition) for tp in assigned], asynchronous=False
            )
            consumer.pause(assigned)


@pytest.fixture
def consumers_to_close():
    opened: list[Consumer] = []
    yield opened
    for consumer in opened:
        consumer.close()


@pytest.mark.brokers  # the consumer-group APIs: list, describe, committed offsets
def test_a_lag_bound_group_hot_key_remap_warning_and_cap_from_measured_data(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch, consumers_to_close
):
    today = utc_today()
    yesterday = today - timedelta(days=1)
    # Profiles of yesterday are taken now, as if it were shortly after midnight.
    monkeypatch.setattr(profiles, "OBSERVABLE_AFTER_DAY_MS", 3 * 86_400_000)
    orders, clicks, accounts = f"{prefix}.orders", f"{prefix}.clicks", f"{prefix}.accounts"
    create_topic(kafka_bootstrap, orders, 4)
    create_topic(kafka_bootstrap, clicks, 3)
    create_topic(kafka_bootstrap, accounts, 6, {"cleanup.policy": "compact"})
    start = int(time.time() * 1000) - 60_000
    produce(kafka_bootstrap, orders, [Record(start + i, b"o" * 50, partition=i % 4) for i in range(400)])
    # clicks: partition 0 carries one hot key's 900 records of 100 bytes, the others 50 each.
    hot = [Record(start + i, b"c" * 100, b"user-1", partition=0) for i in range(900)]
    cold = [Record(start + i, b"c" * 100, b"u%d" % i, partition=1 + i % 2) for i in range(100)]
    produce(kafka_bootstrap, clicks, hot + cold)
    account_keys = [b"account-%05d" % i for i in range(600)]
    landed_on_6 = produce_keyed(kafka_bootstrap, accounts, account_keys, value=b"a" * 1000)

    # billing: 6 members on 4 partitions (2 idle), 25 records committed per partition.
    group = f"{prefix}-billing"
    consumers_to_close += join_group(kafka_bootstrap, group, orders, 6)
    commit_first(consumers_to_close, orders, 25)

    variables = {
        "TOPIC_FILTER": prefix,
        "SAMPLING_DAYS": 2,
        "SAMPLING_BATCH_SIZE": "",
        "MIN_RECOMMENDED_PARTITIONS": 1,
        "MIN_CONSUMPTION_THROUGHPUT": 0,
        "REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR": 1,
        # clicks' peak hour: about 95,700 bytes / 3600 s = 26.6 B/s; its busiest partition
        # carries 95,400 of them, 26.5 B/s, over a partition's 20 B/s: a hot key.
        "PRODUCER_THROUGHPUT_PER_PARTITION": 20,
        "CONSUMER_THROUGHPUT_PER_PARTITION": 1_000_000,
    }
    configure(**variables)
    assert pipeline.inventory().success
    assert pipeline.profile(yesterday).success  # lag 4 x (100 - 25) = 300
    produce(kafka_bootstrap, orders, [Record(start + i, b"o" * 50, partition=i % 4) for i in range(400)])
    assert pipeline.profile(today).success  # lag 4 x (200 - 25) = 700: growing
    assert pipeline.measure(today).success

    stored = pipeline.store.read_profiles(yesterday.isoformat(), today.isoformat()).set_index(["topic", "date"])
    assert stored.loc[(orders, today.isoformat()), "key_sampled_records"] == 800
    assert stored.loc[(accounts, today.isoformat()), "keyed_records"] == 600

    inventory = pipeline.store.read_inventory()
    replicas = int(inventory["cluster_replicas"].iloc[0])
    assert int(inventory["cluster_brokers"].iloc[0]) == 1
    # The broker hosts this many replicas now; allow only 3 more, fewer than the increases add.
    configure(**variables, PARTITION_BUDGET_PER_BROKER=replicas + 3, PARTITIONER="murmur2")
    result = pipeline.recommend(today)
    assert result.success
    table = result.asset_value("topic_recommendations").set_index("topic_name")

    billing = table.loc[orders]
    assert (billing["consumer_groups"], billing["largest_group_members"], billing["idle_members"]) == (1, 6, 2)
    assert (billing["consumer_lag"], billing["lag_trend"], billing["lag_bound_group"]) == (700, "growing", group)
    assert (billing["consumer_group_term"], billing["recommended_partitions"], billing["binding"]) == (
        6,
        6,
        "consumer_group",
    )
    assert billing["fan_out"] == 1.0  # one group reads every byte
    assert billing["hot_key"] == "no"  # round robin: balanced, however busy
    assert billing["keyed_share"] == 0.0 and pd.isna(billing["keys_remapped_share"])

    skewed = table.loc[clicks]
    per_partition = [sum(r.size for r in hot + cold if r.partition == p) for p in range(3)]
    shares = [b / sum(per_partition) for b in per_partition]
    assert skewed["busiest_partition_share"] == pytest.approx(shares[0], rel=1e-12)
    assert skewed["effective_partitions"] == pytest.approx(1 / sum(x * x for x in shares), rel=1e-12)
    assert skewed["hot_key"] == "yes" and "hot key: adding partitions will not spread it" in skewed["reason"]
    assert skewed["top_key_share"] == pytest.approx(900 / 1000)

    # accounts: 600 keyed records of 1,013 bytes in the hour on 6 partitions: 168.8 B/s over 20 B/s
    # a partition needs 9.
    compacted = table.loc[accounts]
    target = int(compacted["recommended_partitions"])
    assert (compacted["action"], target, compacted["binding"]) == ("increase", 9, "producer_throughput")
    probe = f"{prefix}.accounts-probe"
    create_topic(kafka_bootstrap, probe, target)
    landed_on_target = produce_keyed(kafka_bootstrap, probe, account_keys)
    moved = sum(a != b for a, b in zip(landed_on_6, landed_on_target, strict=True)) / len(account_keys)
    assert compacted["keyed_share"] == 1.0
    assert compacted["keys_remapped_share"] == pytest.approx(moved, abs=1e-12)
    assert "remap warning" in compacted["reason"]

    metadata = result.asset_materializations_for_node("topic_recommendations")[0].metadata
    assert metadata["clusters_over_cap"].value == ["local"]
    added = sum(
        int(table.loc[t, "recommended_partitions"]) - int(table.loc[t, "number_of_partitions"])
        for t in table.index
        if table.loc[t, "action"] == "increase"
    )
    assert metadata["cluster_limits"].value["local"] == {
        "cap": replicas + 3,
        "counted": "replicas",
        "now": replicas,
        "after": replicas + added,
    }
    assert added == 2 + 3  # orders 4 -> 6, accounts 6 -> 9, one replica each
