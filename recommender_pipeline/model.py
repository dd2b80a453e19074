"""The recommendation arithmetic: pure functions of a topic's window measurements and the settings.

`capacity` sizes a topic for its peak ingress rate; `seed` reproduces the original tool's
arithmetic bit for bit so that both can be compared side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from recommender_pipeline.settings import MIB, RecommendationModel, Settings

INCREASE, KEEP, OVER_PROVISIONED = "increase", "keep", "over-provisioned"


@dataclass(frozen=True)
class Recommendation:
    recommended_partitions: int
    required_bytes_per_sec: float  # seed: a byte total, as the original tool computed it
    consumer_bytes_per_sec: float  # seed: a byte total, as the original tool computed it
    binding: str
    action: str


def action_for(recommended: int, current: int, settings: Settings) -> str:
    """Kafka cannot remove partitions, so a smaller recommendation is never a decrease."""
    if recommended > current:
        return INCREASE
    if recommended > 0 and current >= settings.over_provisioned_ratio * recommended:
        return OVER_PROVISIONED
    return KEEP


def capacity_recommendation(
    peak_ingress_bytes_per_sec: float, current_partitions: int, settings: Settings
) -> Recommendation:
    """Enough partitions for consumers to keep up with the window's peak times the growth factor."""
    scaled_peak = peak_ingress_bytes_per_sec * settings.required_throughput_factor
    required = max(scaled_peak, settings.min_consumption_throughput)
    consumer = settings.consumer_throughput_per_partition
    # Round away float noise first so that, e.g., 1250 / 25 stays exactly 50.
    needed = math.ceil(round(required / consumer, 9))
    recommended = max(needed, settings.min_recommended_partitions)
    if settings.min_recommended_partitions > needed:
        binding = "min_recommended_partitions"
    elif settings.min_consumption_throughput > scaled_peak:
        binding = "min_consumption_throughput"
    else:
        binding = "peak_ingress"
    return Recommendation(
        recommended, required, consumer, binding, action_for(recommended, current_partitions, settings)
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
    peak_ingress_bytes_per_sec: float,
    mean_record_bytes: float,
    seed_record_count: float,
    current_partitions: int,
    settings: Settings,
) -> Recommendation:
    if settings.recommendation_model is RecommendationModel.SEED:
        return seed_recommendation(mean_record_bytes, seed_record_count, current_partitions, settings)
    return capacity_recommendation(peak_ingress_bytes_per_sec, current_partitions, settings)


def to_mib(value_bytes: float) -> float:
    return value_bytes / MIB
