"""Dagster resources: the only doors from the pipeline to the outside world."""

from recommender_pipeline.resources.config import ConfigResource
from recommender_pipeline.resources.confluent_cloud import ConfluentCloudResource
from recommender_pipeline.resources.kafka import KafkaResource
from recommender_pipeline.resources.secrets import SecretsManagerResource
from recommender_pipeline.resources.store import MeasurementStoreResource

__all__ = [
    "ConfigResource",
    "ConfluentCloudResource",
    "KafkaResource",
    "MeasurementStoreResource",
    "SecretsManagerResource",
]


def build_resources(env_file: str) -> dict:
    """The resource set of the code location (and of tests, with their own env file)."""
    config = ConfigResource(env_file=env_file)
    secrets = SecretsManagerResource(config=config)
    return {
        "config": config,
        "secrets": secrets,
        "kafka": KafkaResource(config=config, secrets=secrets),
        "cloud": ConfluentCloudResource(config=config, secrets=secrets),
        "store": MeasurementStoreResource(config=config),
    }
