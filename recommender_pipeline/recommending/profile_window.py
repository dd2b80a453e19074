"""From a topic's stored daily profiles (`assets/profiles.py`) to what its recommendation needs:
the consumer groups of the latest snapshot, whether the largest is lag-bound, and the key sample.

A group is lag-bound when its lag grew since the previous snapshot while every partition already
has a member of its own: more members would sit idle, only more partitions let it catch up. A
group's size is all its members (the ones the assignor left without a partition of this topic are
the idle ones), so a group that also reads other topics may show members idle here that are busy
there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from recommender_pipeline.values import known


@dataclass(frozen=True)
class ProfileFacts:
    observed: bool = False
    consumer_groups: int = 0  # groups that read the topic: assigned to it, or with offsets committed on it
    largest_group_members: int = 0
    idle_members: int = 0  # over all groups: members beyond one per partition
    consumer_lag: int | None = None  # summed over groups, at the latest snapshot
    lag_trend: str = "unknown"  # growing, steady, shrinking or unknown (one snapshot or none)
    lag_bound_members: int = 0  # the largest lag-bound group's members (0: none is)
    lag_bound_group: str = ""
    group_sizes: tuple[int, ...] = ()
    key_sampled_records: int = 0
    keyed_share: float | None = None
    top_key_share: float | None = None
    key_hashes: list[tuple[int, int]] = field(default_factory=list)


def _groups(row) -> dict[str, dict]:
    text = getattr(row, "consumer_groups", None)
    return {g["group_id"]: g for g in json.loads(text)} if isinstance(text, str) and text else {}


def profile_facts(profiles: pd.DataFrame | Sequence[tuple], partitions: int) -> ProfileFacts:
    """`profiles`: this topic's profile rows of the window (a frame or its named tuples), any order."""
    rows = list(profiles.itertuples(index=False)) if isinstance(profiles, pd.DataFrame) else list(profiles)
    if not rows:
        return ProfileFacts()
    ordered = sorted(rows, key=lambda row: str(row.date))
    latest = ordered[-1]
    groups = _groups(latest)
    previous = _groups(ordered[-2]) if len(ordered) > 1 else {}
    # Readers: groups assigned to the topic now, or that committed offsets on it (a consumer that
    # runs now and then); the active ones have members on it now.
    readers = [g for g in groups.values() if g["members_on_topic"] > 0 or g["committed_partitions"] > 0]
    active = [g for g in readers if g["members_on_topic"] > 0]
    lag_bound = [
        g
        for g in active
        if g["group_id"] in previous
        and g["lag"] > previous[g["group_id"]]["lag"]
        and g["assigned_partitions"] >= partitions
        and g["members"] >= partitions
    ]
    biggest_bound = max(lag_bound, key=lambda g: (g["members"], g["group_id"]), default=None)
    lag = sum(g["lag"] for g in groups.values()) if groups else None
    trend = "unknown"
    shared = [name for name in groups if name in previous]
    if shared:
        before, now = sum(previous[n]["lag"] for n in shared), sum(groups[n]["lag"] for n in shared)
        trend = "growing" if now > before else "shrinking" if now < before else "steady"
    sampled = int(latest.key_sampled_records) if known(latest.key_sampled_records) else 0
    keyed = int(latest.keyed_records) if known(latest.keyed_records) else 0
    hashes = json.loads(latest.key_hashes) if isinstance(latest.key_hashes, str) and latest.key_hashes else []
    return ProfileFacts(
        observed=True,
        consumer_groups=len(readers),
        largest_group_members=max((g["members"] for g in active), default=0),
        idle_members=sum(max(g["members"] - g["assigned_partitions"], 0) for g in active),
        consumer_lag=lag,
        lag_trend=trend,
        lag_bound_members=biggest_bound["members"] if biggest_bound else 0,
        lag_bound_group=biggest_bound["group_id"] if biggest_bound else "",
        group_sizes=tuple(sorted(g["members"] for g in active)),
        key_sampled_records=sampled,
        keyed_share=keyed / sampled if sampled else None,
        top_key_share=float(latest.top_key_share) if keyed and known(latest.top_key_share) else None,
        key_hashes=[tuple(h) for h in hashes],
    )
