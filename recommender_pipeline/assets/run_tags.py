"""The run tags the measuring asset reads and every launcher of its runs writes: one day's range
over the topic keys, the clusters it covers, and the re-measure flag."""

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
CLUSTER_TAG = "kafka_cluster"
# A measurement run with this tag re-measures topic-days already settled in the store, and
# replaces them instead of merging (`hours.merge`): add it in the launchpad, or `--force`.
FORCE_TAG, FORCE_VALUE = "remeasure", "force"


def day_range_tags(day: str, keys: list[str] | tuple[str, str], clusters: set[str]) -> dict[str, str]:
    """Tags that make one run measure one day of every topic key (first to last); the
    `kafka_cluster` tag names the run's clusters in the UI. The instance keeps one measuring run
    at a time whatever its tags, by the measuring op's pool (`deploy/dagster.yaml`)."""
    return {RANGE_START: f"{day}|{keys[0]}", RANGE_END: f"{day}|{keys[-1]}", CLUSTER_TAG: ",".join(sorted(clusters))}
