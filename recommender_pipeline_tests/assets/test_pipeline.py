"""The whole asset graph through Dagster on the broker, read back from the CSV reports."""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pandas as pd
import pytest

from recommender_pipeline.definitions import defs
from recommender_pipeline.outputs.reporting import DETAIL_LEADING_COLUMNS
from recommender_pipeline_testing.known_truth import Dataset, records_in_hour
from recommender_pipeline_testing.pipeline import CLUSTER_ID, command_env
from recommender_pipeline_testing.workloads import create_topic, produce

MIB = 1024 * 1024


def read_reports(reports_dir: Path) -> tuple[pd.DataFrame, dict]:
    details = sorted(reports_dir.glob(f"{CLUSTER_ID}-recommender-*-detail-report.csv"))
    summaries = sorted(reports_dir.glob(f"{CLUSTER_ID}-recommender-*-summary-report.csv"))
    assert len(details) == 1 and len(summaries) == 1, f"expected one report pair in {reports_dir}"
    assert details[0].name.replace("detail", "summary") == summaries[0].name
    detail = pd.read_csv(details[0], keep_default_na=False)
    summary = pd.read_csv(summaries[0], keep_default_na=False)
    return detail.set_index("topic_name", drop=False), dict(zip(summary["stat"], summary["value"], strict=True))


@pytest.fixture
def window(dataset: Dataset, configure, pipeline):
    """The dataset's three days measured and a capacity recommendation for today's window."""

    def run(**variables):
        configure(TOPIC_FILTER=dataset.prefix, SAMPLING_DAYS=3, SAMPLING_BATCH_SIZE="", **variables)
        assert pipeline.inventory().success
        for day in dataset.days:
            assert pipeline.measure(day).success
        result = pipeline.recommend(dataset.today)
        assert result.success
        return result

    return run


def test_definitions_load_and_jobs_resolve():
    dg.Definitions.validate_loadable(defs)
    for name in ("inventory_job", "measurement_job", "recommendation_job"):
        assert defs.resolve_job_def(name).name == name


def test_whole_graph_reports_every_topic_row_by_row(dataset, window, pipeline, tmp_path):
    result = window()
    detail, summary = read_reports(tmp_path / "reports")
    assert list(detail.columns[: len(DETAIL_LEADING_COLUMNS)]) == DETAIL_LEADING_COLUMNS
    expected_topics = {dataset.topic(n) for n in ("multi", "tx", "empty", "short", "nulls", "wide", "eight", "compact")}
    assert set(detail["topic_name"]) == expected_topics | {f"_{dataset.prefix}_app"}
    assert not (detail["action"] == "decrease").any()

    multi = detail.loc[dataset.topic("multi")]
    days = [dataset.day("multi", d) for d in dataset.days]
    records, total_bytes = sum(d.records for d in days), sum(d.bytes for d in days)
    assert (records, total_bytes) == (1920, 216_000)
    assert multi["number_of_records"] == records == multi["records_in_window"]
    assert multi["bytes_in_window"] == total_bytes
    assert multi["mean_record_bytes"] == pytest.approx(112.5)
    assert multi["peak_ingress_bytes_per_sec"] == pytest.approx(120_000 / 3600)  # D-1 07:00, 600 x 200 B
    assert multi["number_of_partitions"] == 3
    assert (multi["recommended_partitions"], multi["action"], multi["status"]) == (6, "increase", "active")
    assert multi["binding"] == "min_recommended_partitions"
    assert multi["required_throughput"] == pytest.approx(10.0) and multi["consumer_throughput"] == pytest.approx(10.0)
    assert (multi["window_days"], multi["days_measured"]) == (3, 3)
    assert multi["is_compacted"] == "no" and multi["hot_partition_egress"] == "n/a"
    assert multi["partition_skew"] == pytest.approx(108_000 / 72_000)

    assert (detail.loc[dataset.topic("wide"), ["recommended_partitions", "action"]] == [6, "over-provisioned"]).all()
    assert (detail.loc[dataset.topic("eight"), ["recommended_partitions", "action"]] == [6, "keep"]).all()
    assert detail.loc[dataset.topic("tx"), "records_in_window"] == 130
    assert detail.loc[dataset.topic("nulls"), "bytes_in_window"] == 120
    empty = detail.loc[dataset.topic("empty")]
    assert (empty["status"], empty["records_in_window"]) == ("empty", 0)
    short = detail.loc[dataset.topic("short")]
    assert (short["window_days"], short["records_in_window"], short["status"]) == (2, 50, "active")
    assert detail.loc[dataset.topic("compact"), "is_compacted"] == "yes"

    assert summary["total_topics"] == "9"
    assert summary["active_topic_count"] == "8"
    assert (
        int(summary["total_partitions"])
        == int(detail["number_of_partitions"].sum())
        == 3 + 1 + 2 + 1 + 1 + 24 + 8 + 1 + 1
    )
    assert summary["recommendation_model"] == "capacity"
    assert summary["topics_over_provisioned"] == "1"
    metadata = result.asset_materializations_for_node("topic_recommendations")[0].metadata
    assert metadata["topics"].value == 9
    table = metadata["recommendations"]  # Dagster table metadata, what the UI shows
    assert [column.name for column in table.schema.columns][:5] == ["topic", "now", "recommended", "change", "action"]
    assert {record.data["topic"] for record in table.records} == set(detail.index)
    # Each topic's days, each measured one linked to its topic-day partition (`ui_tables.history_markdown`).
    history = metadata["topic_history"].value
    assert all(f"| {topic} |" in history for topic in detail.index)
    assert f"partition={quote(str(metadata['window_end_day'].value))}%7C" in history


def test_peak_ingress_binds_when_consumers_are_slow(dataset, window, tmp_path):
    # 1 B/s per consumer, no floors: ceil(33.33 B/s x 1.5 / 1 B/s) = 50 partitions for multi.
    window(
        CONSUMER_THROUGHPUT_PER_PARTITION=1,
        MIN_CONSUMPTION_THROUGHPUT=0,
        MIN_RECOMMENDED_PARTITIONS=1,
        REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR=1.5,
    )
    detail, _ = read_reports(tmp_path / "reports")
    multi = detail.loc[dataset.topic("multi")]
    expected = (50, "consumer_throughput", "increase")
    assert (multi["recommended_partitions"], multi["binding"], multi["action"]) == expected
    assert multi["required_throughput"] == pytest.approx(50.0 / MIB)


def test_seed_model_writes_the_original_arithmetic(dataset, window, tmp_path):
    window(RECOMMENDATION_MODEL="seed", REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR=10)
    detail, summary = read_reports(tmp_path / "reports")
    multi = detail.loc[dataset.topic("multi")]
    retained = 1200 + 600 + 120  # every record in the log, as the original counted
    assert multi["number_of_records"] == retained
    assert multi["consumer_throughput"] == pytest.approx(112.5 * retained / MIB)
    assert multi["required_throughput"] == pytest.approx(10 * 112.5 * retained / MIB)
    assert multi["recommended_partitions"] == 6  # 2.06 MiB < 10 MiB: the minimum
    assert summary["recommendation_model"] == "seed"


def test_a_topic_deleted_after_the_inventory_is_an_error_and_the_others_land(
    configure, pipeline, prefix, kafka_bootstrap, tmp_path
):
    from confluent_kafka.admin import AdminClient

    from recommender_pipeline.days import utc_today

    day = utc_today()
    for name in ("keep", "doomed"):
        create_topic(kafka_bootstrap, f"{prefix}.{name}", 2)
        produce(kafka_bootstrap, f"{prefix}.{name}", records_in_hour(day, 0, 10, lambda i: (None, b"x" * 10, []), 2))
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1)
    assert pipeline.inventory().success
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([f"{prefix}.doomed"])[f"{prefix}.doomed"].result()

    result = pipeline.measure(day)
    assert not result.success  # the run says something failed
    doomed = pipeline.measurement(day, f"{prefix}.doomed")
    assert doomed["status"] == "error" and "no longer exists" in doomed["reason"]
    kept = pipeline.measurement(day, f"{prefix}.keep")
    assert (kept["status"], kept["records"], kept["bytes"]) == ("measured", 10, 100)
    assert pipeline.is_materialized(day, f"{prefix}.keep")
    assert not pipeline.is_materialized(day, f"{prefix}.doomed")

    assert pipeline.recommend(day).success
    detail, summary = read_reports(tmp_path / "reports")
    assert detail.loc[f"{prefix}.doomed", "status"] == "error"
    assert "no longer exists" in detail.loc[f"{prefix}.doomed", "reason"]
    assert detail.loc[f"{prefix}.keep", "status"] == "active"
    assert summary["error_topic_count"] == "1"


@pytest.mark.brokers
def test_the_one_command_measures_missing_days_and_writes_reports(prefix, kafka_bootstrap, tmp_path):
    """`recommender-pipeline` end to end in its own process, steps on the multiprocess executor."""
    from recommender_pipeline.days import utc_today

    today = utc_today()
    create_topic(kafka_bootstrap, f"{prefix}.events", 4)
    produce(kafka_bootstrap, f"{prefix}.events", records_in_hour(today, 0, 400, lambda i: (None, b"e" * 50, []), 4))
    env = command_env(kafka_bootstrap, tmp_path, TOPIC_FILTER=prefix, SAMPLING_DAYS="2", MAX_WORKERS_PER_CLUSTER="2")
    command = [sys.executable, "-m", "recommender_pipeline.command.cli"]
    first = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    yesterday = today.fromordinal(today.toordinal() - 1)
    assert f"measured days {yesterday}, {today}" in first.stdout
    reports = [line.split("report: ", 1)[1] for line in first.stdout.splitlines() if line.startswith("report: ")]
    assert len(reports) == 3 and all(Path(path).exists() for path in reports)  # detail, summary, HTML
    assert f"-recommender-{today}-" in reports[0] and reports[2].endswith("-report.html")
    # Progress while measuring: each day's topic-days done per cluster, as its chunk stores them.
    assert f"measuring {yesterday}: {CLUSTER_ID} 1/1 topic-days\nmeasuring {today}: {CLUSTER_ID} 1/1" in first.stdout
    detail, _ = read_reports(tmp_path / "reports")
    # The digest, not a line per topic: the counts by action, then the topics with the most to add.
    action, recommended = detail.loc[f"{prefix}.events", ["action", "recommended_partitions"]]
    assert f"{CLUSTER_ID}: 1 topics, window {yesterday} to {today}\n" in first.stdout
    assert re.search(rf"^  .*\b{action} 1\b.*; in error 0$", first.stdout, re.MULTILINE), first.stdout
    change = rf"\+{recommended - 4} +" if action == "increase" else ""
    topic_line = rf"^  {re.escape(prefix)}\.events +4 +{recommended} +{change}{re.escape(action)} "
    assert re.search(topic_line, first.stdout, re.MULTILINE), first.stdout
    assert detail.loc[f"{prefix}.events", "records_in_window"] == 400
    assert detail.loc[f"{prefix}.events", "bytes_in_window"] == 400 * 50

    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"measured days {today}\n" in second.stdout  # yesterday is stored and closed; today is re-measured

    env["SAMPLING_DAYS"] = "a week"
    bad = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "SAMPLING_DAYS: Input should be a valid integer" in bad.stderr


def test_asset_checks_pass_on_good_data_through_dagster(dataset, window):
    result = window()
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"check_measurement_coverage", "check_recommendations_sane", "check_report_complete"}
    assert all(e.passed for e in evaluations.values()), {n: e.metadata for n, e in evaluations.items()}
    assert evaluations["check_recommendations_sane"].metadata["checked_topics"].value == 9


def test_backfilled_days_equal_a_one_off_analysis_of_the_same_window(dataset, configure, tmp_path):
    """`recommender-pipeline --backfill-days 2` on one instance, then a fresh one-off run for the
    earlier day on another instance and store: the same recommendations, in a bounded number of runs."""
    from recommender_pipeline.command import cli, runs

    d2, d1, d0 = dataset.days

    def analyse(name: str, end_day, backfill_days: int):
        home = tmp_path / name
        home.mkdir()
        configure(
            TOPIC_FILTER=dataset.prefix,
            SAMPLING_DAYS=2,
            SAMPLING_BATCH_SIZE="",
            MEASUREMENT_STORE_PATH=str(home / "store.duckdb"),
            REPORTS_DIR=str(home / "reports"),
        )
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            options = runs.CommandOptions(
                end_day, backfill_days=backfill_days, in_process=True, env_file=str(tmp_path / "no.env")
            )
            outcome = runs.run_recommendations(instance, cli.load_settings(str(tmp_path / "no.env")), options)
            values = {
                day: defs.load_asset_value("topic_recommendations", instance=instance, partition_key=day)
                for day in outcome.recommended_days
            }
        return outcome, values

    backfill, by_backfill = analyse("backfill", d0, backfill_days=2)
    assert backfill.success
    assert backfill.measured_days == [d2.isoformat(), d1.isoformat(), d0.isoformat()]
    assert backfill.recommended_days == [d1.isoformat(), d0.isoformat()]
    assert backfill.runs == 1 + 3 + 2  # inventory, one measurement run per day, one recommendation run per day

    one_off, by_one_off = analyse("one-off", d1, backfill_days=1)
    assert one_off.success and one_off.measured_days == [d2.isoformat(), d1.isoformat()]
    # Timing and the whole broker's partition counts (other tests create topics meanwhile) aside.
    varying = {"measuring_seconds", "cluster_partition_cap", "cluster_partitions_now", "cluster_partitions_after"}
    columns = [c for c in by_one_off[d1.isoformat()].columns if c not in varying]
    pd.testing.assert_frame_equal(by_backfill[d1.isoformat()][columns], by_one_off[d1.isoformat()][columns])
    multi = by_one_off[d1.isoformat()].set_index("topic_name").loc[dataset.topic("multi")]
    assert (multi["records_in_window"], multi["bytes_in_window"]) == (1800, 206_400)  # D-2 + D-1 truth


def test_ctrl_c_stops_the_command_at_once_with_130_and_no_report(prefix, kafka_bootstrap, tmp_path):
    """SIGINT to the process group while a day is measured: no next day, no report, exit 130."""
    import signal
    import time

    from recommender_pipeline.days import day_start_ms, utc_today
    from recommender_pipeline_testing.workloads import Record

    yesterday = utc_today().fromordinal(utc_today().toordinal() - 1)
    create_topic(kafka_bootstrap, f"{prefix}.big", 4)
    start = day_start_ms(yesterday)
    records = (Record(start + i * 80, b"v" * 100, partition=i % 4) for i in range(1_000_000))
    produce(kafka_bootstrap, f"{prefix}.big", records)
    env = command_env(kafka_bootstrap, tmp_path, TOPIC_FILTER=prefix, SAMPLING_DAYS="3", SAMPLING_BATCH_SIZE="")
    log = tmp_path / "command.log"
    with log.open("w") as output:
        command = subprocess.Popen(
            [sys.executable, "-m", "recommender_pipeline.command.cli", "--in-process"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while "measure_topic_chunk" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert command.poll() is None, log.read_text()[-3000:]
        os.killpg(command.pid, signal.SIGINT)
        signalled = time.monotonic()
        returncode = command.wait(60)
    stopped_after = time.monotonic() - signalled
    text = log.read_text()
    assert returncode == 130, text[-3000:]
    assert stopped_after < 10
    assert "interrupted: stopped after the current run" in text
    assert "report:" not in text and not list((tmp_path / "reports").glob("*.csv"))


def test_a_cluster_that_cannot_be_reached_keeps_its_topics_as_errors_and_never_vanishes(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch, tmp_path
):
    from recommender_pipeline.clusters import topic_listing
    from recommender_pipeline.days import utc_today
    from recommender_pipeline.measuring import records

    # A refused connection is retried until the metadata timeout: 30 s each, 3 s here.
    monkeypatch.setattr(topic_listing, "TIMEOUT_SECONDS", 3)
    monkeypatch.setattr(records, "METADATA_TIMEOUT_SECONDS", 3)

    day = utc_today()
    create_topic(kafka_bootstrap, f"{prefix}.orders", 1)
    produce(kafka_bootstrap, f"{prefix}.orders", records_in_hour(day, 0, 10, lambda i: (None, b"o" * 10, [])))

    def clusters(down_bootstrap: str) -> str:
        return (
            f'[{{"kafka_cluster_id": "up", "bootstrap.servers": "{kafka_bootstrap}"}},'
            f' {{"kafka_cluster_id": "down", "bootstrap.servers": "{down_bootstrap}"}}]'
        )

    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1, KAFKA_CREDENTIALS=clusters(kafka_bootstrap))
    assert pipeline.inventory().success
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1, KAFKA_CREDENTIALS=clusters("127.0.0.1:9"))
    assert not pipeline.inventory().success  # "down" is refused now
    inventory = pipeline.store.read_inventory()
    assert sorted(zip(inventory["cluster_id"], inventory["topic"], strict=True)) == [
        ("down", f"{prefix}.orders"),  # its last known topics stay
        ("up", f"{prefix}.orders"),
    ]
    assert not pipeline.measure(day).success
    rows = pipeline.store.read_measurements(day.isoformat(), day.isoformat()).set_index("cluster_id")
    assert (rows.loc["up", "status"], rows.loc["up", "records"]) == ("measured", 10)
    assert rows.loc["down", "status"] == "error" and "cluster down could not be measured" in rows.loc["down", "reason"]
    recommendations = pipeline.recommend(day)
    assert recommendations.success
    table = recommendations.asset_value("topic_recommendations").set_index("cluster_id")
    assert table.loc["down", "status"] == "error" and table.loc["up", "status"] == "active"

    # The one command on the same two clusters: exit 1, and each cluster's report is written.
    from recommender_pipeline.command import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "command_home"))
    monkeypatch.chdir(tmp_path)

    def details() -> set[Path]:
        return set((tmp_path / "reports").glob("*-detail-report.csv"))

    before = details()
    assert cli.main(["--in-process"]) == 1
    written = {path.name.split("-")[0]: path for path in details() - before}
    assert set(written) == {"up", "down"}
    up, down = (pd.read_csv(written[name]).iloc[0] for name in ("up", "down"))
    assert (up["status"], up["records_in_window"]) == ("active", 10)
    assert (down["status"], down["records_in_window"]) == ("error", 0)


def test_the_blocking_check_stops_the_reports_when_a_recommendation_is_wrong(
    dataset, configure, pipeline, tmp_path, monkeypatch
):
    """A wrong action in the table fails `check_recommendations_sane` in a real Dagster run, and
    `reports` is then not materialized: no CSV is written from a table that fails it."""
    import dataclasses

    from recommender_pipeline.recommending import topic_window

    configure(TOPIC_FILTER=f"{dataset.prefix}.multi", SAMPLING_DAYS=1, SAMPLING_BATCH_SIZE="")
    assert pipeline.inventory().success
    assert pipeline.measure(dataset.today).success
    right = topic_window.recommend
    monkeypatch.setattr(topic_window, "recommend", lambda *a, **k: dataclasses.replace(right(*a, **k), action="keep"))
    result = pipeline.recommend(dataset.today)
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["check_recommendations_sane"] is False
    assert dg.AssetKey("reports") not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert not list((tmp_path / "reports").glob("*.csv"))


def test_a_deleted_topic_leaves_the_inventory_but_keeps_its_measured_days(configure, pipeline, prefix, kafka_bootstrap):
    from confluent_kafka.admin import AdminClient

    from recommender_pipeline.days import utc_today

    day = utc_today()
    for name in ("stays", "goes"):
        create_topic(kafka_bootstrap, f"{prefix}.{name}", 1)
        produce(kafka_bootstrap, f"{prefix}.{name}", records_in_hour(day, 0, 4, lambda i: (None, b"g" * 5, [])))
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1)
    assert pipeline.inventory().success and pipeline.measure(day).success
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([f"{prefix}.goes"])[f"{prefix}.goes"].result()
    assert pipeline.inventory().success
    assert list(pipeline.store.read_inventory()["topic"]) == [f"{prefix}.stays"]  # no longer measured
    assert pipeline.measurement(day, f"{prefix}.goes")["records"] == 4  # its history stays in the store
    assert pipeline.is_materialized(day, f"{prefix}.goes")  # and in Dagster, until the rolling history ends


def test_a_topic_dagster_cannot_key_is_listed_as_not_supported_in_every_report(
    configure, pipeline, prefix, kafka_bootstrap, tmp_path
):
    """`a...b` is a legal Kafka name but not a Dagster partition key: it used to drop out of every
    report, said only by a warning in the inventory run. It is listed, with the reason, never
    measured, and the checks still pass."""
    from recommender_pipeline.command.digest import digest
    from recommender_pipeline.days import utc_today

    day = utc_today()
    create_topic(kafka_bootstrap, f"{prefix}.ok", 2)
    create_topic(kafka_bootstrap, f"{prefix}.a...b", 3)
    produce(kafka_bootstrap, f"{prefix}.ok", records_in_hour(day, 0, 10, lambda i: (None, b"x" * 10, []), 2))
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1)
    assert pipeline.inventory().success
    assert pipeline.topic_keys() == [f"{CLUSTER_ID}/{prefix}.ok"]  # no key: never measured
    assert pipeline.measure(day).success
    result = pipeline.recommend(day)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(checks, True) and "check_report_complete" in checks

    detail, summary = read_reports(tmp_path / "reports")
    row = detail.loc[f"{prefix}.a...b"]
    assert (row["status"], row["action"], row["number_of_partitions"]) == ("not_supported", "n/a", 3)
    assert "Dagster cannot use '...' in a partition key" in row["reason"]
    assert detail.loc[f"{prefix}.ok", "status"] == "active"
    assert (summary["not_supported_topics"], summary["total_topics"]) == ("1", "1")
    html = next((tmp_path / "reports").glob("*-report.html")).read_text()
    assert f'<tr class="not-supported"><td>{prefix}.a...b</td>' in html
    path = next((tmp_path / "reports").glob("*-detail-report.csv"))
    lines = digest(pd.read_csv(path))  # as the command prints it
    assert lines[2] == f"  not supported 1, not measured (Dagster cannot key '...'): {prefix}.a...b"


def test_a_cluster_that_cannot_be_listed_keeps_its_topics_dagster_cannot_key(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch
):
    """As its other topics (kept in the store as last known), they do not vanish from the reports."""
    from confluent_kafka import KafkaError, KafkaException

    from recommender_pipeline.assets import inventory

    create_topic(kafka_bootstrap, f"{prefix}.a...b", 3)
    configure(TOPIC_FILTER=prefix)
    assert pipeline.inventory().success

    def unreachable(*args, **kwargs):
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))

    monkeypatch.setattr(inventory, "list_cluster_topics", unreachable)
    assert not pipeline.inventory().success
    kept = inventory.not_supported_topics(pipeline.instance)
    assert kept[["cluster_id", "topic", "partitions"]].values.tolist() == [[CLUSTER_ID, f"{prefix}.a...b", 3]]
