"""recommender-pipeline: how many partitions each Kafka topic should have, from what it carries."""

# Every process of the one command (the forkserver preloads this package, step processes are
# forked from it) exits when the command dies, whatever killed it.
from recommender_pipeline.command import orphans  # noqa: F401
