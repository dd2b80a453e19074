"""Jobs: inventory, one day's measurements, and a day's recommendations with their reports; and
the run config that shapes their runs (the run tags: `assets/run_tags.py`)."""

import dagster as dg

from recommender_pipeline.orchestration.executors import is_multiprocess, measurement_executor

inventory_job = dg.define_asset_job(
    "inventory_job",
    selection=dg.AssetSelection.assets("credentials", "cluster_inventory"),
    executor_def=dg.in_process_executor,
    description="Reads which clusters to analyse and lists their topics.",
)


def measurement_run_config(max_concurrent: int = 0) -> dict:
    """Multiprocess execution; forkserver with the code location preloaded halves each step's
    start-up cost. `max_concurrent=0` means one process per core. Under a distributed executor
    (`RECOMMENDER_EXECUTOR`) there is nothing to say: its YAML configures it, its workers set the
    concurrency."""
    if not is_multiprocess():
        return {}
    return {
        "execution": {
            "config": {
                "multiprocess": {
                    "max_concurrent": max_concurrent,
                    "start_method": {"forkserver": {"preload_modules": ["recommender_pipeline.definitions"]}},
                }
            }
        }
    }


IN_PROCESS_RUN_CONFIG = {"execution": {"config": {"in_process": {}}}}
measurement_job = dg.define_asset_job(
    "measurement_job",
    selection=dg.AssetSelection.assets("topic_measurements"),
    executor_def=measurement_executor(),
    config=measurement_run_config() or None,
    description="Measures one day of every topic (a partition range over the topics), in chunks.",
)

recommendation_job = dg.define_asset_job(
    "recommendation_job",
    selection=dg.AssetSelection.assets(
        "topic_profiles", "topic_recommendations", "reports", "partition_changes", "published_recommendations"
    ),
    executor_def=dg.in_process_executor,
    description="Recommends partition counts for a day's rolling window and writes the reports, the ready-made "
    "changes and (with USE_KAFKA_WRITER) the results topic.",
)
