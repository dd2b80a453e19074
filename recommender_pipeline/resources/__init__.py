"""Dagster resources: the only doors from the pipeline to the outside world."""

from recommender_pipeline.resources.config import ConfigResource
from recommender_pipeline.resources.kafka import KafkaResource
from recommender_pipeline.resources.store import MeasurementStoreResource

__all__ = ["ConfigResource", "KafkaResource", "MeasurementStoreResource"]
