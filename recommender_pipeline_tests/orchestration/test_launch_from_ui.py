"""Measuring from the UI, as Dagster's UI does it: a backfill of `topic_measurements` over two days
of every topic, launched through the webserver's GraphQL (`launchPartitionBackfill`) and run by
the daemon of `dagster dev` on the instance template `deploy/dagster.yaml`, on the real broker.

Before issue 13, such runs carried no `kafka_cluster` tag (so the per-cluster limit never applied
and both days ran at once), and the recommendation sensors watched only `measurement_job` (so
no recommendation followed). Here the two day runs must run one after the other, and each day
must get its recommendation run from `recommendations_after_measurement_sensor`.
"""

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from recommender_pipeline import definitions
from recommender_pipeline.assets.measurements import measure_topic_chunk
from recommender_pipeline.assets.partitions import topics_partitions
from recommender_pipeline.days import utc_today
from recommender_pipeline.orchestration.jobs import IN_PROCESS_RUN_CONFIG
from recommender_pipeline_testing.dagster_server import LAUNCH_BACKFILL, dagster_dev, expect_type, wait_until
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.pipeline import CONFIG_VARIABLES, REPO
from recommender_pipeline_testing.workloads import create_topic, produce

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 100) { runId status startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""
RUNS = """
query Runs($job: String!) {
  runsOrError(filter: {pipelineName: $job}) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""
POOL = measure_topic_chunk.pool  # one slot per measuring run (deploy/dagster.yaml)
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
FINISHED_RUN = {"SUCCESS", "FAILURE", "CANCELED"}


def tags_of(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def test_a_day_range_launched_from_the_ui_is_limited_and_recommended(
    configure, monkeypatch, prefix, kafka_bootstrap, tmp_path
):
    started = time.monotonic()
    today = utc_today()
    yesterday = today - timedelta(days=1)
    for name, partitions in (("orders", 2), ("clicks", 1)):
        create_topic(kafka_bootstrap, f"{prefix}.{name}", partitions)
        produce(kafka_bootstrap, f"{prefix}.{name}", records_in_hour(today, 0, 50, lambda i: (None, b"r" * 100, []), 1))

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    configure(
        TOPIC_FILTER=prefix,
        SAMPLING_DAYS="2",
        MAX_WORKERS_PER_CLUSTER="1",
        REPORTS_DIR=str(tmp_path / "reports"),
        MEASUREMENT_STORE_PATH=str(tmp_path / "store.duckdb"),
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # The README's one-time setup: the pool's limit stored before the first measuring run queues.
    dagster = [str(Path(sys.executable).parent / "dagster"), "instance", "concurrency", "set", POOL, "1"]
    subprocess.run(dagster, env=os.environ, check=True, capture_output=True, timeout=60)
    with dg.DagsterInstance.get() as instance:
        assert dg.execute_job(dg.reconstructable(definitions.get_inventory_job), instance=instance).success
        keys = instance.get_dynamic_partitions(topics_partitions.name)
    assert len(keys) == 2

    env = {name: os.environ[name] for name in CONFIG_VARIABLES if name in os.environ}
    env["RECOMMENDER_ENV_FILE"] = str(tmp_path / "no.env")  # never a developer's .env in the repository
    with dagster_dev(home, env) as server:
        server.wait_for_daemon()
        [location] = server.wait_for_code_location()
        selector = {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "sensorName": "recommendations_after_measurement_sensor",
        }
        started_sensor = expect_type(server.graphql(START_SENSOR, {"selector": selector})["startSensor"], "Sensor")
        assert started_sensor["sensorState"]["status"] == "RUNNING"

        # What the UI's "Materialize" dialog sends for two days and every topic.
        days = [yesterday.isoformat(), today.isoformat()]
        params = {
            "assetSelection": [{"path": ["topic_measurements"]}],
            "partitionNames": [f"{day}|{key}" for day in days for key in keys],
            # As set in the launchpad: steps in the run's process, which saves this test minutes of
            # step-process start-ups on a busy machine. The limit and the sensor do not depend on it.
            "runConfigData": IN_PROCESS_RUN_CONFIG,
        }
        launched = expect_type(
            server.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"], "LaunchBackfillSuccess"
        )

        def backfill_done() -> dict | None:
            status = server.graphql(BACKFILL, {"id": launched["backfillId"]})["partitionBackfillOrError"]
            runs = status.get("runs", [])
            return status if status.get("status") in DONE and all(r["status"] in FINISHED_RUN for r in runs) else None

        measured = wait_until(backfill_done, 300, "the measurement backfill", interval=2)
        assert measured["status"] == "COMPLETED_SUCCESS", measured
        runs = sorted(measured["runs"], key=lambda run: run["startTime"])
        assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"]
        # One run per day, each a range over both topics; the UI's runs carry no cluster tag.
        assert sorted(tags_of(r)["dagster/asset_partition_range_start"].split("|")[0] for r in runs) == days
        assert not any("kafka_cluster" in tags_of(r) for r in runs)
        # The limit: the second day's run started only once the first had ended.
        first, second = runs
        assert second["startTime"] >= first["endTime"], (
            f"measurement runs overlapped: {datetime.fromtimestamp(first['endTime'])} ended after "
            f"{datetime.fromtimestamp(second['startTime'])} started"
        )

        def recommended() -> list[dict] | None:
            result = expect_type(server.graphql(RUNS, {"job": "recommendation_job"})["runsOrError"], "Runs")
            done = [run for run in result["results"] if run["status"] in FINISHED_RUN]
            return done if len(done) == 2 and len(result["results"]) == 2 else None

        recommendations = wait_until(recommended, 180, "a recommendation run per measured day", interval=2)
        assert sorted(tags_of(r)["dagster/partition"] for r in recommendations) == days
        assert all(r["status"] == "SUCCESS" for r in recommendations), recommendations
        sensor_runs = {tags_of(r).get("dagster/sensor_name") for r in recommendations}
        assert sensor_runs == {"recommendations_after_measurement_sensor"}
    print(f"UI launch, limit and recommendations: {time.monotonic() - started:.0f} s")


def test_materialize_all_stays_bounded():
    """ "Materialize all" on the lineage selects every partition of every asset (Dagster's dialog
    has no other default). What keeps it sane: the date dimension is the rolling history, each
    date of `topic_measurements` is one run over every topic, and every measuring run takes the
    one slot of the measuring pool (so they run one after the other)."""
    from recommender_pipeline.assets.partitions import HISTORY_DAYS, daily_partitions, daily_topic_partitions
    from recommender_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    partitioned = {
        key.to_user_string(): defs.resolve_assets_def(key).partitions_def for key in graph.get_all_asset_keys()
    }
    assert partitioned.pop("topic_measurements") == daily_topic_partitions
    assert {partitioned.pop("credentials"), partitioned.pop("cluster_inventory")} == {None}
    assert set(partitioned.values()) == {daily_partitions}  # the 5 daily assets: a run per day at most
    assert len(daily_partitions.get_partition_keys()) == HISTORY_DAYS + 1
    measurements = defs.resolve_assets_def("topic_measurements")
    assert measurements.backfill_policy == dg.BackfillPolicy.single_run()  # one run per date
    assert {op.pool for op in measurements.node_def.node_defs} == {None, POOL}
    assert {defs.resolve_assets_def(key).group_names_by_key[key] for key in graph.get_all_asset_keys()} == {
        "recommender"
    }
