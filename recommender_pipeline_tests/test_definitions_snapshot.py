"""What a move of modules must keep: the code location's asset keys, checks, jobs, schedules,
sensors, pools, executor and entry points, as stored runs, schedules and the UI know them."""

import importlib.metadata

import dagster as dg

from recommender_pipeline.definitions import defs

ASSETS = {
    "credentials": None,
    "cluster_inventory": None,
    "topic_measurements": "MultiPartitionsDefinition",
    "topic_profiles": "DailyPartitionsDefinition",
    "topic_recommendations": "DailyPartitionsDefinition",
    "reports": "DailyPartitionsDefinition",
    "partition_changes": "DailyPartitionsDefinition",
    "published_recommendations": "DailyPartitionsDefinition",
}
CHECKS = {
    ("topic_recommendations", "check_measurement_coverage"),
    ("topic_recommendations", "check_recommendations_sane"),
    ("reports", "check_report_complete"),
}
JOBS = {"inventory_job", "measurement_job", "recommendation_job"}
SCHEDULES = {"daily_measurement_schedule": "30 0 * * *", "hourly_capture_schedule": "5 * * * *"}
SENSORS = {
    "recommendations_after_measurement_sensor",
    "recommendations_after_partial_measurement_sensor",
    "stale_recommendations_sensor",
    "topic_discovery_sensor",
}


def test_asset_keys_and_their_partitions_are_kept():
    graph = defs.resolve_asset_graph()
    found = {}
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        found[key.to_user_string()] = type(partitions).__name__ if partitions else None
    assert found == ASSETS


def test_checks_jobs_schedules_and_sensors_keep_their_names():
    checks = {(key.asset_key.to_user_string(), key.name) for key in defs.resolve_asset_graph().asset_check_keys}
    assert checks == CHECKS
    assert {job.name for job in defs.jobs} == JOBS
    assert {s.name: s.cron_schedule for s in defs.schedules} == SCHEDULES
    assert {s.name for s in defs.sensors} == SENSORS


def test_ops_pools_executor_and_entry_point_are_kept():
    job = defs.resolve_job_def("measurement_job")
    ops = {
        node.definition.name: node.definition.pool
        for node in job.graph.node_dict["topic_measurements"].definition.nodes
    }
    assert ops == {
        "plan_measurement_chunks": None,
        "measure_topic_chunk": "measurement_chunks",
        "summarize_measurements": None,
    }
    assert defs.executor is dg.multi_or_in_process_executor
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    module, _, function = scripts["recommender-pipeline"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
