"""Dagster resources: the only doors from the pipeline to the outside world."""

from recommender_pipeline.resources.aws_secrets import AwsSecretsResource
from recommender_pipeline.resources.confluent_cloud import ConfluentCloudResource
from recommender_pipeline.resources.inventory_io_manager import InventoryIOManager
from recommender_pipeline.resources.kafka import KafkaResource
from recommender_pipeline.resources.settings import SettingsResource
from recommender_pipeline.resources.store import MeasurementStoreResource

__all__ = [
    "AwsSecretsResource",
    "ConfluentCloudResource",
    "InventoryIOManager",
    "KafkaResource",
    "MeasurementStoreResource",
    "SettingsResource",
]


def build_resources(env_file: str) -> dict:
    """The resource set of the code location (and of tests, with their own env file)."""
    config = SettingsResource(env_file=env_file)
    secrets = AwsSecretsResource(config=config)
    store = MeasurementStoreResource(config=config)
    return {
        "config": config,
        "secrets": secrets,
        "kafka": KafkaResource(config=config, secrets=secrets),
        "cloud": ConfluentCloudResource(config=config, secrets=secrets),
        "store": store,
        "inventory_io_manager": InventoryIOManager(store=store),
    }
