"""The recommendation's terms, rounding, consumer facts, key remapping and cluster caps, as pure
functions (no broker): each against numbers worked out by hand."""

import json
import zlib

import pandas as pd
import pytest

from recommender_pipeline.profiling.keys import Partitioner, key_hashes, remapped_share
from recommender_pipeline.recommending.cluster_limits import capacities_for, cluster_headroom
from recommender_pipeline.recommending.model import Capacities, Demand, capacity_recommendation, rounded
from recommender_pipeline.recommending.profile_window import profile_facts
from recommender_pipeline.settings import MIB, PartitionRounding, Settings


def settings(**fields) -> Settings:
    return Settings.model_construct(**fields)


BASE = {"required_throughput_factor": 1.0, "min_consumption_throughput": 0.0, "min_recommended_partitions": 1}


def test_rao_producer_and_consumer_terms_each_bind_when_they_are_the_tighter():
    s = settings(**BASE)
    # 60 MB/s: producers take 5 MB/s a partition (12), consumers read 20 MB/s (3).
    result = capacity_recommendation(Demand(60e6), 1, s, Capacities(producer=5e6, consumer=20e6, egress=1e12))
    assert result.terms["producer_throughput"] == 12 and result.terms["consumer_throughput"] == 3
    assert (result.recommended_partitions, result.binding) == (12, "producer_throughput")
    result = capacity_recommendation(Demand(60e6), 1, s, Capacities(producer=20e6, consumer=5e6, egress=1e12))
    assert (result.recommended_partitions, result.binding) == (12, "consumer_throughput")


def test_fan_out_sizes_for_every_read_of_each_byte():
    s = settings(**BASE)
    # 10 MB/s read by 4 groups = 40 MB/s of egress; 15 MB/s a partition serves -> 3 partitions.
    result = capacity_recommendation(Demand(10e6, fan_out=4.0), 1, s, Capacities(1e9, 1e9, 15e6))
    assert (result.terms["fan_out"], result.recommended_partitions, result.binding) == (3, 3, "fan_out")


def test_a_lag_bound_group_sets_the_need_and_is_named():
    s = settings(**BASE)
    result = capacity_recommendation(Demand(1e3, lag_bound_members=9), 3, s, Capacities(1e9, 1e9, 1e9))
    assert (result.recommended_partitions, result.binding, result.action) == (9, "consumer_group", "increase")


@pytest.mark.parametrize(
    ("needed", "demand", "rounding", "expected"),
    [
        (7, Demand(0, group_sizes=(3,)), PartitionRounding.CONSUMERS, 9),
        (7, Demand(0, group_sizes=(2, 3)), PartitionRounding.CONSUMERS, 12),  # lcm 6 -> 12
        (7, Demand(0, group_sizes=(4, 5)), PartitionRounding.CONSUMERS, 10),  # lcm 20 > 14: 5 alone
        (7, Demand(0, brokers=3), PartitionRounding.BROKERS, 9),
        (9, Demand(0, brokers=3), PartitionRounding.BROKERS, 9),
        (7, Demand(0, group_sizes=(3,), brokers=3), PartitionRounding.NONE, 7),
    ],
)
def test_rounding_to_group_sizes_or_brokers(needed, demand, rounding, expected):
    assert rounded(needed, demand, rounding) == expected


def test_the_rounded_count_keeps_the_raw_need_beside_it():
    s = settings(**BASE, partition_rounding=PartitionRounding.BROKERS)
    result = capacity_recommendation(Demand(7e6, brokers=4), 1, s, Capacities(1e6, 1e6, 1e9))
    assert (result.needed_partitions, result.recommended_partitions) == (7, 8)


def _profile(day: str, groups: list[dict], **keys) -> dict:
    return {
        "date": day,
        "consumer_groups": json.dumps(groups),
        "key_sampled_records": 0,
        "keyed_records": 0,
        "top_key_share": None,
        "key_hashes": None,
        **keys,
    }


def _group(name: str, members: int, assigned: int, lag: int) -> dict:
    return {
        "group_id": name,
        "state": "STABLE",
        "members": members,
        "members_on_topic": min(members, assigned),
        "assigned_partitions": assigned,
        "committed_partitions": assigned,
        "lag": lag,
    }


def test_lag_bound_needs_growing_lag_and_a_member_on_every_partition():
    frames = pd.DataFrame(
        [
            _profile("2026-12-01", [_group("billing", 6, 4, 100), _group("audit", 2, 2, 10)]),
            _profile("2026-12-02", [_group("billing", 6, 4, 900), _group("audit", 2, 2, 50)]),
        ]
    )
    facts = profile_facts(frames, partitions=4)
    # billing: 6 members on 4 partitions, lag 100 -> 900: lag-bound, 2 idle. audit: 2 members on 4
    # partitions: more members would help, so it is not lag-bound whatever its lag does.
    assert (facts.lag_bound_group, facts.lag_bound_members, facts.idle_members) == ("billing", 6, 2)
    assert (facts.consumer_groups, facts.largest_group_members, facts.consumer_lag) == (2, 6, 950)
    assert facts.lag_trend == "growing" and facts.group_sizes == (2, 6)
    shrinking = pd.DataFrame(
        [frames.iloc[1].to_dict() | {"date": "2026-12-01"}, frames.iloc[0].to_dict() | {"date": "2026-12-02"}]
    )
    assert profile_facts(shrinking, 4).lag_bound_members == 0 and profile_facts(shrinking, 4).lag_trend == "shrinking"
    assert profile_facts(frames.iloc[1:], 4).lag_trend == "unknown"  # one snapshot: no trend


def test_remapped_share_of_keys_under_each_partitioner():
    keys = [b"k%d" % i for i in range(1000)]
    hashes = [key_hashes(k) for k in keys]
    murmur_moved = sum((key_hashes(k)[0] % 6) != (key_hashes(k)[0] % 9) for k in keys) / len(keys)
    crc_moved = sum((zlib.crc32(k) % 6) != (zlib.crc32(k) % 9) for k in keys) / len(keys)
    assert remapped_share(hashes, 6, 9, Partitioner.MURMUR2) == murmur_moved
    assert remapped_share(hashes, 6, 9, Partitioner.CONSISTENT_RANDOM) == crc_moved
    assert remapped_share(hashes, 6, 12, Partitioner.CRC32) == pytest.approx(0.5, abs=0.05)  # doubling moves half
    assert remapped_share(hashes, 6, 6, Partitioner.MURMUR2) == 0.0
    assert remapped_share([], 6, 9, Partitioner.MURMUR2) is None


def test_murmur2_matches_the_java_clients_published_values():
    # From Kafka's UtilsTest.testMurmur2: (input, expected signed murmur2).
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for data, signed in cases.items():
        assert key_hashes(data)[0] == signed & 0x7FFFFFFF


def test_confluent_cloud_types_set_capacities_unless_the_user_did():
    plain = Settings.model_validate({})
    standard = capacities_for("Standard", plain)
    assert (standard.producer, standard.egress, standard.consumer) == (5e6, 15e6, 10 * MIB)
    mine = Settings.model_validate({"PRODUCER_THROUGHPUT_PER_PARTITION": "1000"})
    assert capacities_for("Dedicated", mine).producer == 1000 and capacities_for("Dedicated", mine).egress == 36e6
    assert capacities_for("", plain).producer == 10 * MIB  # self-managed: the settings


def _inventory(cluster_type: str, partitions: int, replicas: int, brokers: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "cluster_id": "c",
                "topic": "t",
                "replication_factor": 3,
                "cluster_type": cluster_type,
                "cluster_partitions": partitions,
                "cluster_replicas": replicas,
                "cluster_brokers": brokers,
            }
        ]
    )


def test_cluster_headroom_counts_partitions_on_cloud_and_replicas_per_broker_elsewhere():
    increase = pd.DataFrame(
        [
            {
                "cluster_id": "c",
                "topic_name": "t",
                "action": "increase",
                "number_of_partitions": 6,
                "recommended_partitions": 30,
            }
        ]
    )
    room = cluster_headroom("c", _inventory("Basic", 1_480, 4_440), increase, Settings.model_validate({}))
    assert (room.cap, room.now, room.added, room.headroom, room.exceeded) == (1_500, 1_480, 24, -4, True)
    assert "EXCEEDS the cap" in room.describe()
    s = Settings.model_validate({"PARTITION_BUDGET_PER_BROKER": "1000"})
    room = cluster_headroom("c", _inventory("", 900, 2_700, brokers=3), increase, s)
    assert (room.cap, room.counted, room.added, room.headroom) == (3_000, "replicas", 72, 228)
