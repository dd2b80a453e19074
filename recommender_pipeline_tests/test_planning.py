"""The chunk planner: a run's (day, topic) keys into per-cluster chunks of similar size. No broker."""

import pandas as pd

from recommender_pipeline.assets.measurements import plan_chunks


def inventory(*topics: tuple[str, str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"cluster_id": c, "topic": t, "partitions": p, "retention_ms": None, "is_compacted": False}
            for c, t, p in topics
        ]
    )


def test_topics_are_dealt_biggest_first_into_balanced_chunks_per_cluster_and_day():
    known = inventory(("c1", "a", 12), ("c1", "b", 6), ("c1", "c", 6), ("c1", "d", 3), ("c1", "e", 3), ("c2", "x", 1))
    keys = [f"2026-03-01|c1/{t}" for t in "abcde"] + ["2026-03-01|c2/x", "2026-03-02|c1/a", "2026-03-01|c1/gone"]
    chunks, skipped = plan_chunks(keys, known, max_chunks_per_cluster=2)
    assert skipped == ["2026-03-01|c1/gone"]  # not in the inventory: left out, and said so
    summary = [(c.day, c.cluster_id, [t.topic for t in c.topics], sum(t.partitions for t in c.topics)) for c in chunks]
    assert summary == [
        # 12, 6, 6, 3, 3 dealt round robin: a, c, e in one chunk and b, d in the other.
        ("2026-03-01", "c1", ["a", "c", "e"], 21),
        ("2026-03-01", "c1", ["b", "d"], 9),
        ("2026-03-01", "c2", ["x"], 1),  # never more chunks than topics
        ("2026-03-02", "c1", ["a"], 12),
    ]
    assert chunks[0].topics[0].retention_ms is None and chunks[0].topics[0].is_compacted is False


def test_one_chunk_per_cluster_when_asked_and_none_for_no_keys():
    known = inventory(("c1", "a", 1), ("c1", "b", 1))
    chunks, _ = plan_chunks(["2026-03-01|c1/a", "2026-03-01|c1/b"], known, max_chunks_per_cluster=1)
    assert [[t.topic for t in c.topics] for c in chunks] == [["a", "b"]]
    assert plan_chunks([], known, 4) == ([], [])
