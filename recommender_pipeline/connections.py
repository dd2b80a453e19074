"""How to reach a Kafka cluster: its id and its librdkafka properties, secrets masked when shown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# librdkafka properties whose values are secrets: kept in memory, never logged or stored.
SECRET_PROPERTY = re.compile(r"password|secret|\.pem$|ssl\.key\.|private", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterConnection:
    """How to reach one Kafka cluster: its id and the librdkafka properties for its clients."""

    cluster_id: str
    properties: dict[str, str] = field(repr=False)
    source: str = "env"
    environment_id: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.properties["bootstrap.servers"]

    @property
    def key_id(self) -> str | None:
        return self.properties.get("sasl.username")

    def public_properties(self) -> dict[str, str]:
        """The properties with every secret masked, safe for logs and metadata."""
        return {k: ("***" if SECRET_PROPERTY.search(k) else v) for k, v in self.properties.items()}

    def __repr__(self) -> str:
        return f"ClusterConnection(cluster_id={self.cluster_id!r}, properties={self.public_properties()!r})"


def connection_from_entry(entry: dict[str, Any], source: str) -> ClusterConnection:
    """A cluster from the original tool's credential object plus any librdkafka properties."""
    properties = {k: str(v) for k, v in entry.items() if k not in {"kafka_cluster_id", "environment_id"}}
    if "sasl.username" in properties:
        # Confluent Cloud keys, as in the original tool, unless the entry says otherwise.
        properties.setdefault("security.protocol", "SASL_SSL")
        properties.setdefault("sasl.mechanism", "PLAIN")
    return ClusterConnection(str(entry["kafka_cluster_id"]), properties, source, entry.get("environment_id"))
