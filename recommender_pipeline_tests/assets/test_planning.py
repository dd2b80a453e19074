"""The chunk planner: a run's (day, topic) keys into per-cluster chunks of similar size. No broker."""

import pandas as pd

from recommender_pipeline.assets.measurements import (
    UNKNOWN_RECORDS_PER_PARTITION,
    plan_chunks,
)
from recommender_pipeline.settings import Settings


def inventory(*topics: tuple[str, str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"cluster_id": c, "topic": t, "partitions": p, "retention_ms": None, "is_compacted": False}
            for c, t, p in topics
        ]
    )


def test_a_cluster_day_gets_one_chunk_per_records_per_chunk_and_topics_dealt_biggest_first():
    """Work is the records each topic's last measured day read: 12 M records over 2 M per chunk
    ask for 6 chunks, capped at 2; the topics are dealt biggest first to the lighter chunk."""
    known = inventory(("c1", "a", 12), ("c1", "b", 6), ("c1", "c", 6), ("c1", "d", 3), ("c1", "e", 3), ("c2", "x", 1))
    work = {"c1/a": 5e6, "c1/b": 3e6, "c1/c": 2.5e6, "c1/d": 1e6, "c1/e": 0.5e6, "c2/x": 10}
    keys = [f"2026-03-01|c1/{t}" for t in "abcde"] + ["2026-03-01|c2/x", "2026-03-02|c1/a", "2026-03-01|c1/gone"]
    chunks, skipped = plan_chunks(keys, known, max_chunks_per_cluster=2, recent_reads=work)
    assert skipped == ["2026-03-01|c1/gone"]  # not in the inventory: left out, and said so
    summary = [(c.day, c.cluster_id, [t.topic for t in c.topics]) for c in chunks]
    assert summary == [
        # 5, 3, 2.5, 1, 0.5 M, each to the lighter chunk: a | b, c (5.5) | d to a (6) | e to b, c
        ("2026-03-01", "c1", ["a", "d"]),  # 5 + 1 = 6 M
        ("2026-03-01", "c1", ["b", "c", "e"]),  # 3 + 2.5 + 0.5 = 6 M
        ("2026-03-01", "c2", ["x"]),  # 10 records: one chunk
        ("2026-03-02", "c1", ["a"]),  # never more chunks than topics
    ]
    assert chunks[0].topics[0].retention_ms is None and chunks[0].topics[0].is_compacted is False


def test_many_small_topics_share_one_chunk_however_many_workers_are_allowed():
    """2,000 topics of 90 records: 180,000 records are one chunk's work, so one step pays for
    one process start instead of eight."""
    topics = [("c1", f"t{i:04d}", 3) for i in range(2_000)]
    keys = [f"2026-03-01|c1/{name}" for _, name, _ in topics]
    work = {f"c1/{name}": 90 for _, name, _ in topics}
    chunks, _ = plan_chunks(keys, inventory(*topics), max_chunks_per_cluster=8, recent_reads=work)
    assert [len(c.topics) for c in chunks] == [2_000]


def test_a_topic_never_measured_is_planned_by_the_records_in_its_log():
    """Ten never-measured topics of 500 partitions: their logs (30 records each) are one chunk's
    work, where the per-partition guess alone would have asked for three chunks."""
    known = inventory(*[("c1", f"t{i}", 500) for i in range(10)]).assign(log_records=30)
    chunks, _ = plan_chunks([f"2026-03-01|c1/t{i}" for i in range(10)], known, max_chunks_per_cluster=8)
    assert [len(c.topics) for c in chunks] == [10]


def test_topics_never_measured_count_as_small_ones_per_partition():
    """Without history a topic is assumed to hold UNKNOWN_RECORDS_PER_PARTITION per partition:
    5,000 partitions of unknown topics are 5 M records, three chunks of up to 2 M."""
    topics = [("c1", f"t{i}", 500) for i in range(10)]
    keys = [f"2026-03-01|c1/t{i}" for i in range(10)]
    chunks, _ = plan_chunks(keys, inventory(*topics), max_chunks_per_cluster=8)
    assert UNKNOWN_RECORDS_PER_PARTITION * 5_000 / Settings.model_fields["records_per_chunk"].default == 2.5
    assert sorted(len(c.topics) for c in chunks) == [3, 3, 4]


def test_one_chunk_per_cluster_when_asked_and_none_for_no_keys():
    known = inventory(("c1", "a", 1), ("c1", "b", 1))
    chunks, _ = plan_chunks(["2026-03-01|c1/a", "2026-03-01|c1/b"], known, max_chunks_per_cluster=1)
    assert [[t.topic for t in c.topics] for c in chunks] == [["a", "b"]]
    assert plan_chunks([], known, 4) == ([], [])
