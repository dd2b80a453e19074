"""How many partitions a cluster can hold, and what one partition carries, by cluster type.

Confluent Cloud publishes both per cluster type; a self-managed cluster's cap is a budget of
partition replicas per broker (`PARTITION_BUDGET_PER_BROKER`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recommender_pipeline.recommending.model import Capacities, default_capacities
from recommender_pipeline.settings import Settings

MB = 1_000_000  # Confluent's guidelines are in decimal megabytes per second


@dataclass(frozen=True)
class CloudGuideline:
    ingress_per_partition: float  # bytes/s
    egress_per_partition: float  # bytes/s
    max_partitions: int  # per cluster, before replication


# docs.confluent.io, "Kafka cluster types" (see README, "Cluster limits").
CLOUD_GUIDELINES = {
    "Basic": CloudGuideline(5 * MB, 15 * MB, 1_500),
    "Standard": CloudGuideline(5 * MB, 15 * MB, 2_500),
    "Enterprise": CloudGuideline(6 * MB, 18 * MB, 96_000),
    "Dedicated": CloudGuideline(12 * MB, 36 * MB, 100_000),
    "Freight": CloudGuideline(6 * MB, 18 * MB, 50_000),
}


def capacities_for(cluster_type: str, settings: Settings) -> Capacities:
    """The per-partition capacities: the user's where set, else the cluster type's guideline."""
    guideline = CLOUD_GUIDELINES.get(cluster_type or "")
    chosen = default_capacities(settings)
    if guideline is None:
        return chosen
    given = settings.model_fields_set
    return Capacities(
        chosen.producer if "producer_throughput_per_partition" in given else guideline.ingress_per_partition,
        chosen.consumer,
        chosen.egress if "egress_throughput_per_partition" in given else guideline.egress_per_partition,
    )


@dataclass(frozen=True)
class ClusterHeadroom:
    cluster_id: str
    cap: int
    counted: str  # "partitions" (Confluent Cloud, before replication) or "replicas" (per-broker budget)
    now: int
    added: int  # by applying every increase

    @property
    def after(self) -> int:
        return self.now + self.added

    @property
    def headroom(self) -> int:
        return self.cap - self.after

    @property
    def exceeded(self) -> bool:
        return self.headroom < 0

    def describe(self) -> str:
        verdict = "EXCEEDS the cap" if self.exceeded else f"{self.headroom:,} left"
        return (
            f"cluster {self.cluster_id}: {self.now:,} {self.counted} now, {self.after:,} with every increase "
            f"applied, cap {self.cap:,}: {verdict}"
        )


def cluster_headroom(
    cluster_id: str, inventory: pd.DataFrame, recommendations: pd.DataFrame, settings: Settings
) -> ClusterHeadroom | None:
    """The cap and the room left if every `increase` is applied; None when the inventory does not
    say how big the cluster is (a store from before these columns)."""
    rows = inventory[inventory["cluster_id"] == cluster_id]
    if rows.empty or pd.isna(rows["cluster_partitions"].iloc[0]):
        return None
    first = rows.iloc[0]
    increases = recommendations[
        (recommendations["cluster_id"] == cluster_id) & (recommendations["action"] == "increase")
    ]
    added_partitions = (increases["recommended_partitions"] - increases["number_of_partitions"]).clip(lower=0)
    guideline = CLOUD_GUIDELINES.get(str(first.get("cluster_type") or ""))
    if guideline is not None:
        return ClusterHeadroom(
            cluster_id,
            guideline.max_partitions,
            "partitions",
            int(first["cluster_partitions"]),
            int(added_partitions.sum()),
        )
    replication = rows.set_index("topic")["replication_factor"]
    added_replicas = sum(
        int(added) * int(replication.get(topic, 1) or 1)
        for topic, added in zip(increases["topic_name"], added_partitions, strict=True)
    )
    brokers = max(int(first["cluster_brokers"]), 1)
    return ClusterHeadroom(
        cluster_id,
        brokers * settings.partition_budget_per_broker,
        "replicas",
        int(first["cluster_replicas"]),
        added_replicas,
    )
