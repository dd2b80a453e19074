"""The store's tables: their columns and keys (created or migrated by `sessions.ensure_tables`)."""

from recommender_pipeline.measuring.measurement import MEASUREMENT_COLUMNS, MEASUREMENT_KEY

INVENTORY_COLUMNS = {
    "cluster_id": "VARCHAR",
    "topic": "VARCHAR",
    "partitions": "INTEGER",
    "replication_factor": "INTEGER",
    "cleanup_policy": "VARCHAR",
    "retention_ms": "BIGINT",
    "is_internal": "BOOLEAN",
    "is_compacted": "BOOLEAN",
    "inventoried_at": "VARCHAR",
    # The topic's cluster, repeated on each of its rows: what a partition cap is checked against.
    "cluster_brokers": "INTEGER",
    "cluster_partitions": "INTEGER",  # every topic's partitions, internal and filtered-out ones too
    "cluster_replicas": "INTEGER",  # the same, times each topic's replication factor
    "cluster_type": "VARCHAR",  # Confluent Cloud's cluster kind (Basic, Standard, ...); empty elsewhere
    # Records in the topic's log when listed (end - start offsets): what a topic never measured
    # yet is planned by (`assets.measurements.plan_chunks`). NULL when the broker did not say.
    "log_records": "BIGINT",
}
INVENTORY_KEY = ("cluster_id", "topic")
# One snapshot per (day, cluster, topic) of who consumes a topic and what its keys look like.
PROFILE_COLUMNS = {
    "date": "DATE",
    "cluster_id": "VARCHAR",
    "topic": "VARCHAR",
    "consumer_groups": "VARCHAR",  # JSON list of consumers.GroupOnTopic
    "key_sampled_records": "INTEGER",
    "keyed_records": "INTEGER",
    "top_key_share": "DOUBLE",
    "key_hashes": "VARCHAR",  # JSON list of [murmur2, crc32] of a uniform sample of keyed records
    "profiled_at": "VARCHAR",
    "error": "VARCHAR",
}
PROFILE_KEY = ("date", "cluster_id", "topic")
TABLES = {
    "measurements": (MEASUREMENT_COLUMNS, MEASUREMENT_KEY),
    "inventory": (INVENTORY_COLUMNS, INVENTORY_KEY),
    "topic_profiles": (PROFILE_COLUMNS, PROFILE_KEY),
}
# numpy dtype of a column without NULLs, pandas' nullable one with (as DuckDB's `df()` returns them).
READ_DTYPES = {"INTEGER": ("int32", "Int32"), "BIGINT": ("int64", "Int64"), "BOOLEAN": ("bool", "boolean")}
