"""How a topic's bytes spread over its partitions across a window in which its partition count
may have changed (a team that acted on a recommendation added partitions).

Each stored day lists its bytes per partition. A day measured before an increase lists the
partitions it had; a day measured after it (a backfill) lists every partition the topic has now,
the new ones with nothing, since they did not exist yet. Kafka numbers new partitions after the
existing ones, so partitions at the end of a day's list that carried nothing that day, nor on
any earlier day, and carried bytes on a later one, were added later: that day had the others.

Shares, skew, effective partitions and the hot flags then come from the days that had the
partitions the topic has now (all of them when it never changed), so adding partitions to a
balanced topic never makes it look skewed, and an old hot partition that the increase spread
does not keep it flagged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionShape:
    partitions: int  # the partition count the shares are over
    day_indexes: tuple[int, ...]  # the days (positions in what was given) they come from
    shares: tuple[float, ...]
    note: str = ""  # why fewer days or another count than the window's were used

    @property
    def skew(self) -> float:
        """The busiest partition's bytes over the mean partition's (1.0 when balanced)."""
        return max(self.shares) * len(self.shares) if self.shares else 0.0

    @property
    def effective_partitions(self) -> float:
        """1 / sum of squared shares: 3 partitions carrying 90 %, 5 %, 5 % work like 1.2."""
        return 1 / sum(share * share for share in self.shares) if self.shares else 0.0

    @property
    def busiest_share(self) -> float:
        return max(self.shares, default=0.0)


def partitions_by_day(days: Sequence[list[float]]) -> list[int]:
    """How many partitions each day (oldest first) had, given each day's bytes per partition."""
    first_with_bytes: dict[int, int] = {}
    for index, sizes in enumerate(days):
        for partition, size in enumerate(sizes):
            if size and partition not in first_with_bytes:
                first_with_bytes[partition] = index
    counts = []
    for index, sizes in enumerate(days):
        count = len(sizes)
        added_later = False
        for partition in range(len(sizes) - 1, 0, -1):  # the longest suffix added after this day
            first = first_with_bytes.get(partition)
            if first is not None and first <= index:
                break
            added_later = added_later or first is not None
            if added_later:
                count = partition
        counts.append(count)
    return counts


def partition_shape(stored: Sequence[str], current: int) -> PartitionShape:
    """The shape over the days (their `partition_bytes` JSON, oldest first) that had `current`
    partitions; over the latest day when none had (the topic just changed)."""
    parsed = [[float(value or 0) for value in json.loads(text)] if text else [] for text in stored]
    listed = [index for index, sizes in enumerate(parsed) if sizes]  # days that list their partitions
    if not listed:
        return PartitionShape(current, (), ())
    counts = partitions_by_day([parsed[index] for index in listed])
    chosen = [position for position, count in enumerate(counts) if count == current]
    note = ""
    if not chosen:
        chosen = [len(listed) - 1]
        note = f"partition shares from the latest day, when the topic had {counts[-1]} partitions ({current} now)"
    elif len(chosen) < len(listed):
        note = (
            f"partition shares from the {len(chosen)} of {len(listed)} days on which the topic had {current} partitions"
        )
    count = counts[chosen[-1]]
    totals = [sum(parsed[listed[position]][partition] for position in chosen) for partition in range(count)]
    whole = sum(totals)
    shares = tuple(size / whole for size in totals) if whole else ()
    return PartitionShape(count, tuple(listed[position] for position in chosen), shares, note)
