"""The recommendation arithmetic: pure functions of a topic's window measurements and the settings.

`capacity` sizes a topic for its peak ingress rate; `seed` reproduces the original tool's
arithmetic bit for bit so that both can be compared side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from recommender_pipeline.settings import MIB, PartitionRounding, RecommendationModel, Settings

INCREASE, KEEP, OVER_PROVISIONED = "increase", "keep", "over-provisioned"


@dataclass(frozen=True)
class Recommendation:
    recommended_partitions: int
    required_bytes_per_sec: float  # seed: a byte total, as the original tool computed it
    consumer_bytes_per_sec: float  # seed: a byte total, as the original tool computed it
    binding: str
    action: str
    needed_partitions: int = 0  # before PARTITION_ROUNDING
    terms: dict[str, int] = field(default_factory=dict)  # every term's partition count


@dataclass(frozen=True)
class Demand:
    """What a topic asks of its partitions, as measured."""

    peak_ingress_bytes_per_sec: float
    fan_out: float = 0.0  # egress / ingress: how many times each byte is read (0: unknown)
    lag_bound_members: int = 0  # members of the largest group whose lag grows with a member per partition
    group_sizes: tuple[int, ...] = ()  # the active consumer groups' member counts
    brokers: int = 0


@dataclass(frozen=True)
class Capacities:
    """Bytes per second one partition takes from producers, gives one consumer, and gives all readers."""

    producer: float
    consumer: float
    egress: float


# When terms tie, the first named here binds: the most specific reason to act (and, with the
# producer and consumer capacities equal by default, the consumer side, as before they were split).
TERM_ORDER = (
    "consumer_group",
    "fan_out",
    "consumer_throughput",
    "producer_throughput",
    "min_consumption_throughput",
    "min_recommended_partitions",
)


def action_for(recommended: int, current: int, settings: Settings) -> str:
    """Kafka cannot remove partitions, so a smaller recommendation is never a decrease."""
    if recommended > current:
        return INCREASE
    if recommended > 0 and current >= settings.over_provisioned_ratio * recommended:
        return OVER_PROVISIONED
    return KEEP


def _partitions_for(rate: float, per_partition: float) -> int:
    # Round away float noise first so that, e.g., 1250 / 25 stays exactly 50.
    return math.ceil(round(rate / per_partition, 9))


def capacity_terms(demand: Demand, capacities: Capacities, settings: Settings) -> dict[str, int]:
    """Each term's partition count: Rao's max(t/p, t/c) for the scaled peak t, the fan-out (t
    times the reads of each byte, over what a partition serves), the largest lag-bound group's
    members, and the floor. A throughput minimum above the scaled peak is named as such."""
    scaled_peak = demand.peak_ingress_bytes_per_sec * settings.required_throughput_factor
    required = max(scaled_peak, settings.min_consumption_throughput)
    producer = _partitions_for(required, capacities.producer)
    consumer = _partitions_for(required, capacities.consumer)
    terms = {
        "consumer_group": demand.lag_bound_members,
        "fan_out": _partitions_for(required * demand.fan_out, capacities.egress) if demand.fan_out > 0 else 0,
        "min_recommended_partitions": settings.min_recommended_partitions,
    }
    if settings.min_consumption_throughput > scaled_peak:
        terms["min_consumption_throughput"] = max(producer, consumer)
    else:
        terms["producer_throughput"], terms["consumer_throughput"] = producer, consumer
    return terms


def rounded(needed: int, demand: Demand, rounding: PartitionRounding) -> int:
    """The smallest count >= `needed` that every active group's size divides (so each member
    gets as many partitions), or that is a multiple of the broker count (so leaders spread
    evenly). Group sizes whose least common multiple is over twice the need are left out: a
    count that large would be bought for balance alone."""
    if rounding is PartitionRounding.BROKERS and demand.brokers > 1:
        return math.ceil(needed / demand.brokers) * demand.brokers
    if rounding is PartitionRounding.CONSUMERS:
        step = 1
        for size in sorted({s for s in demand.group_sizes if s > 1}, reverse=True):
            candidate = math.lcm(step, size)
            if candidate <= 2 * needed:
                step = candidate
        return math.ceil(needed / step) * step
    return needed


def capacity_recommendation(
    demand: Demand | float, current_partitions: int, settings: Settings, capacities: Capacities | None = None
) -> Recommendation:
    """Enough partitions for the window's peak times the growth factor, on every side."""
    if not isinstance(demand, Demand):
        demand = Demand(float(demand))
    capacities = capacities or default_capacities(settings)
    terms = capacity_terms(demand, capacities, settings)
    needed = max(terms.values())
    binding = next(name for name in TERM_ORDER if terms.get(name) == needed)
    recommended = rounded(needed, demand, settings.partition_rounding)
    required = max(
        demand.peak_ingress_bytes_per_sec * settings.required_throughput_factor, settings.min_consumption_throughput
    )
    return Recommendation(
        recommended,
        required,
        capacities.consumer,
        binding,
        action_for(recommended, current_partitions, settings),
        needed,
        terms,
    )


def default_capacities(settings: Settings) -> Capacities:
    return Capacities(
        settings.producer_throughput_per_partition,
        settings.consumer_throughput_per_partition,
        settings.egress_throughput_per_partition,
    )


def seed_recommendation(
    mean_record_bytes: float, record_count: float, current_partitions: int, settings: Settings
) -> Recommendation:
    """The original tool's formula: required / consumer is always the factor, so the data only
    decides whether the minimum applies. Python's `round` (half to even) is kept on purpose."""
    if record_count <= 0:
        return Recommendation(0, 0.0, 0.0, "no_records", KEEP)
    consumer = mean_record_bytes * record_count
    required = consumer * settings.required_throughput_factor
    if required < settings.min_consumption_throughput:
        recommended, binding = settings.min_recommended_partitions, "min_consumption_throughput"
    else:
        recommended, binding = round(required / consumer), "required_consumption_throughput_factor"
    return Recommendation(
        recommended, required, consumer, binding, action_for(recommended, current_partitions, settings)
    )


def recommend(
    *,
    demand: Demand,
    mean_record_bytes: float,
    seed_record_count: float,
    current_partitions: int,
    settings: Settings,
    capacities: Capacities | None = None,
) -> Recommendation:
    if settings.recommendation_model is RecommendationModel.SEED:
        return seed_recommendation(mean_record_bytes, seed_record_count, current_partitions, settings)
    return capacity_recommendation(demand, current_partitions, settings, capacities)


def to_mib(value_bytes: float) -> float:
    return value_bytes / MIB
