"""Who reads each topic: its consumer groups, their members and assignments, committed offsets and
lag, from the Kafka Admin API (the same calls on Confluent Cloud and self-managed clusters).

A recommendation sized for producers alone can leave consumers behind; these snapshots, one per
day, let it see a group that is lag-bound and a group whose members outnumber the partitions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

# The pipeline's own record readers carry this group id prefix; they assign, never join or commit.
OWN_GROUP_PREFIX = "recommender-pipeline-"


@dataclass(frozen=True)
class GroupOnTopic:
    """One consumer group as seen from one topic."""

    group_id: str
    state: str
    members: int  # every member of the group, whatever it reads
    members_on_topic: int  # members assigned at least one of the topic's partitions
    assigned_partitions: int
    committed_partitions: int
    lag: int  # sum of end offset - committed offset, over partitions with a committed offset

    @property
    def idle_members(self) -> int:
        """Members the topic's partitions cannot keep busy (assignment gives each at most one)."""
        return max(self.members_on_topic - self.assigned_partitions, 0) if self.assigned_partitions else 0

    def as_dict(self) -> dict:
        return asdict(self)


def consumer_groups_by_topic(
    admin: AdminClient, topics: Mapping[str, int], timeout: float = 30.0
) -> dict[str, list[GroupOnTopic]]:
    """Per topic of `topics` ({name: partitions}), the groups that are assigned to it or hold
    committed offsets for it, sorted by group id. Groups the broker cannot describe are skipped."""
    listed = admin.list_consumer_groups(request_timeout=timeout).result()
    group_ids = sorted(g.group_id for g in listed.valid if not g.group_id.startswith(OWN_GROUP_PREFIX))
    if not group_ids:
        return {topic: [] for topic in topics}
    descriptions = {}
    for group_id, future in admin.describe_consumer_groups(group_ids, request_timeout=timeout).items():
        try:
            descriptions[group_id] = future.result()
        except KafkaException:
            continue
    committed: dict[str, dict[tuple[str, int], int]] = {}
    for group_id in descriptions:
        request = [ConsumerGroupTopicPartitions(group_id)]
        try:
            answer = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group_id].result()
        except KafkaException:
            continue
        committed[group_id] = {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions or []
            if tp.topic in topics and tp.offset >= 0 and tp.error is None
        }
    ends = _end_offsets(admin, {t for offsets in committed.values() for t, _ in offsets}, topics, timeout)

    found: dict[str, list[GroupOnTopic]] = defaultdict(list)
    for group_id, description in sorted(descriptions.items()):
        assigned: dict[str, set[int]] = defaultdict(set)
        members_on: dict[str, int] = defaultdict(int)
        for member in description.members:
            member_topics = set()
            for tp in member.assignment.topic_partitions if member.assignment else []:
                if tp.topic in topics:
                    assigned[tp.topic].add(tp.partition)
                    member_topics.add(tp.topic)
            for topic in member_topics:
                members_on[topic] += 1
        offsets = committed.get(group_id, {})
        for topic in sorted(set(assigned) | {t for t, _ in offsets}):
            mine = {p: o for (t, p), o in offsets.items() if t == topic}
            lag = sum(max(ends.get((topic, p), o) - o, 0) for p, o in mine.items())
            found[topic].append(
                GroupOnTopic(
                    group_id=group_id,
                    state=str(getattr(description.state, "name", description.state)),
                    members=len(description.members),
                    members_on_topic=members_on.get(topic, 0),
                    assigned_partitions=len(assigned.get(topic, ())),
                    committed_partitions=len(mine),
                    lag=lag,
                )
            )
    return {topic: found.get(topic, []) for topic in topics}


def _end_offsets(
    admin: AdminClient, wanted: set[str], partitions: Mapping[str, int], timeout: float
) -> dict[tuple[str, int], int]:
    """The high watermarks of the topics some group committed to."""
    if not wanted:
        return {}
    request = {TopicPartition(t, p): OffsetSpec.latest() for t in sorted(wanted) for p in range(partitions[t])}
    ends = {}
    for tp, future in admin.list_offsets(request, request_timeout=timeout).items():
        try:
            ends[(tp.topic, tp.partition)] = future.result().offset
        except KafkaException:
            continue
    return ends
