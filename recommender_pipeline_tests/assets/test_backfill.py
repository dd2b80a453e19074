"""A backfill of several days through the webserver's GraphQL (`launchPartitionBackfill`), run by
the daemon of `dagster dev`, on the known-truth topics of the real broker."""

import os
import shutil
import time

import dagster as dg
import pandas as pd

from recommender_pipeline import definitions
from recommender_pipeline.assets.partitions import topics_partitions
from recommender_pipeline_testing.dagster_server import LAUNCH_BACKFILL, dagster_dev
from recommender_pipeline_testing.pipeline import CONFIG_VARIABLES, REPO

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 100) { status tags { key value } } }
    ... on PythonError { message }
  }
}
"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def backfill(server, assets: list[str], partitions: list[str], timeout: float = 300.0) -> dict:
    params = {"assetSelection": [{"path": [name]} for name in assets], "partitionNames": partitions}
    launched = server.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + timeout
    while True:
        status = server.graphql(STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]
        if status.get("status") in DONE and all(run["status"] in {"SUCCESS", "FAILURE"} for run in status["runs"]):
            return status
        assert time.monotonic() < deadline, f"backfill not done after {timeout}s: {status}"
        time.sleep(2)


def test_a_backfill_of_several_days_through_graphql_and_the_daemon(dataset, configure, monkeypatch, tmp_path):
    d2, d1, _ = dataset.days
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    variables = {
        "TOPIC_FILTER": f"{dataset.prefix}.multi,{dataset.prefix}.tx,{dataset.prefix}.nulls",
        "SAMPLING_DAYS": "2",
        "SAMPLING_BATCH_SIZE": "",
        "MAX_WORKERS_PER_CLUSTER": "2",
        "REPORTS_DIR": str(tmp_path / "reports"),
        "MEASUREMENT_STORE_PATH": str(tmp_path / "store.duckdb"),
    }
    configure(**variables)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        inventory = dg.execute_job(dg.reconstructable(definitions.get_inventory_job), instance=instance)
        assert inventory.success
        keys = instance.get_dynamic_partitions(topics_partitions.name)
    assert len(keys) == 3

    # The same configuration for the server, its daemon and the runs they launch.
    env = {name: os.environ[name] for name in CONFIG_VARIABLES if name in os.environ}
    with dagster_dev(home, env) as server:
        server.wait_for_daemon()
        measured = backfill(server, ["topic_measurements"], [f"{d}|{k}" for d in (d2, d1) for k in keys])
        assert measured["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}
        assert len(measured["runs"]) == 2  # one run per day, each a range over the three topics
        # Again over the same, now settled days: nothing to measure, and not "Failed" either.
        again = backfill(server, ["topic_measurements"], [f"{d}|{k}" for d in (d2, d1) for k in keys])
        assert again["status"] == "COMPLETED_SUCCESS", again
        recommended = backfill(server, ["topic_recommendations", "reports"], [d1.isoformat()])
        assert recommended["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}
        assert len(recommended["runs"]) == 1

    from recommender_pipeline.resources import build_resources

    store = build_resources(str(tmp_path / "no.env"))["store"]
    stored = store.read_measurements(d2.isoformat(), d1.isoformat()).set_index(["date", "topic"])
    for name in ("multi", "nulls"):
        for day in (d2, d1):
            truth = dataset.day(name, day)
            row = stored.loc[(day.isoformat(), dataset.topic(name))]
            assert (row["records"], row["bytes"]) == (truth.records, truth.bytes)
            if truth.records:
                assert row["peak_ingress_bytes_per_sec"] == truth.peak_bytes_per_sec
    detail = pd.read_csv(next((tmp_path / "reports").glob("*-detail-report.csv")), keep_default_na=False)
    multi = detail.set_index("topic_name").loc[dataset.topic("multi")]
    assert (multi["window_start"], multi["window_end"]) == (d2.isoformat(), d1.isoformat())
    assert (multi["records_in_window"], multi["bytes_in_window"]) == (1800, 206_400)
    assert multi["peak_ingress_bytes_per_sec"] == 120_000 / 3600
