"""Results to a Kafka topic and the ready-made changes, on the real broker: the records read back
with a plain consumer equal the recommendations table, the topic has the configured partitions
and retention, and the generated `kafka-topics.sh` script really grows the topic."""

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from recommender_pipeline.assets.published import published_recommendations
from recommender_pipeline.clusters.topic_listing import list_cluster_topics
from recommender_pipeline.days import utc_today
from recommender_pipeline.errors import ConfigurationError
from recommender_pipeline.outputs import kafka_writer
from recommender_pipeline.resources import kafka_clients
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.pipeline import CLUSTER_ID, REPO, free_port
from recommender_pipeline_testing.workloads import create_topic, produce

KAFKA_LIBS = REPO / ".local" / "kafka" / "libs"


def read_all(bootstrap: str, topic: str) -> list[tuple[str, dict]]:
    """Every record of the topic as (key, JSON value), read by offset with a plain consumer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[tuple[str, dict]] = []
        while len(out) < sum(ends.values()):
            message = consumer.poll(10)
            assert message is not None, f"read {len(out)} of {sum(ends.values())} records"
            assert message.error() is None, message.error()
            out.append((message.key().decode(), json.loads(message.value())))
        return out
    finally:
        consumer.close()


def topic_shape(bootstrap: str, topic: str) -> tuple[int, str]:
    """(partitions, retention.ms) as the broker reports them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    retention = admin.describe_configs([resource])[resource].result(timeout=10)["retention.ms"].value
    return partitions, retention


def kafka_topics_on_path(tmp_path: Path) -> dict[str, str]:
    """A `kafka-topics.sh` on PATH that runs Kafka's own TopicCommand from the local broker's jars."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "kafka-topics.sh"
    shim.write_text(f'#!/bin/sh\nexec java -Xmx256m -cp "{KAFKA_LIBS}/*" org.apache.kafka.tools.TopicCommand "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_results_topic_holds_one_record_per_topic_and_the_changes_apply(
    prefix, kafka_bootstrap, configure, pipeline, tmp_path
):
    day = utc_today() - timedelta(days=1)
    grow, steady, results = f"{prefix}.grow", f"{prefix}.steady", f"{prefix}_results"
    create_topic(kafka_bootstrap, grow, 1)
    create_topic(kafka_bootstrap, steady, 8)
    produce(kafka_bootstrap, grow, records_in_hour(day, 3, 120, lambda i: (f"k{i}".encode(), b"v" * 40, []), 1))
    writer = {
        "USE_KAFKA_WRITER": "true",
        "KAFKA_WRITER_TOPIC_NAME": results,
        "KAFKA_WRITER_TOPIC_PARTITION_COUNT": "3",
        "KAFKA_WRITER_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_WRITER_TOPIC_DATA_RETENTION_IN_DAYS": "2",
    }
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1, SAMPLING_BATCH_SIZE="", **writer)
    assert pipeline.inventory().success
    assert pipeline.measure(day).success
    assets = ["topic_recommendations", "reports", "partition_changes", "published_recommendations"]
    result = pipeline.materialize(assets, partition_key=day.isoformat())
    assert result.success

    table = result.output_for_node("topic_recommendations").set_index("topic_name", drop=False)
    assert table.loc[grow, ["number_of_partitions", "recommended_partitions", "action"]].tolist() == [1, 6, "increase"]
    # `steady` carried nothing in its window: an idle topic keeps its 8 partitions.
    assert table.loc[steady, ["number_of_partitions", "recommended_partitions", "action"]].tolist() == [8, 8, "keep"]

    # The results topic: created with the settings, one record per topic, equal to the table.
    assert topic_shape(kafka_bootstrap, results) == (3, str(2 * 86_400_000))
    records = read_all(kafka_bootstrap, results)
    assert sorted(key for key, _ in records) == [f"{CLUSTER_ID}/{grow}", f"{CLUSTER_ID}/{steady}"]
    for key, value in records:
        row = table.loc[key.split("/", 1)[1]]
        assert set(value) == {"recommendation_day", *table.columns}
        assert value["recommendation_day"] == day.isoformat()
        for column in ["cluster_id", "topic_name", "number_of_partitions", "recommended_partitions", "action"]:
            assert value[column] == row[column], column
        assert value["records_in_window"] == (120 if row["topic_name"] == grow else 0)
        # keys k0..k119 (10 x 2 + 90 x 3 + 20 x 4 bytes) and 40-byte values
        assert value["bytes_in_window"] == (370 + 120 * 40 if row["topic_name"] == grow else 0)
    published = result.asset_materializations_for_node("published_recommendations")[0].metadata
    assert published["records"].value == 2 and published["topic"].value == results

    # The writer's own topic is never inventoried, though TOPIC_FILTER matches it.
    admin = pipeline.resources()["kafka"].admin(CLUSTER_ID)
    listed = {row["topic"] for row in list_cluster_topics(admin, CLUSTER_ID, pipeline.settings)[0]}
    assert listed == {grow, steady}

    # An existing results topic is used as it is: running again appends.
    again = pipeline.materialize(["published_recommendations"], partition_key=day.isoformat())
    assert again.success
    assert len(read_all(kafka_bootstrap, results)) == 4
    clusters = again.asset_materializations_for_node("published_recommendations")[0].metadata["clusters"].value
    assert "False" in clusters  # created: False

    # The ready-made changes name only the topic to increase, and the script grows it for real.
    gate_path, script_path, tf_path = (
        next((tmp_path / "reports").glob(f"{CLUSTER_ID}-recommender-*-{suffix}"))
        for suffix in ("partition-changes.json", "partition-changes.sh", "partition-changes.tf")
    )
    detail_report = next((tmp_path / "reports").glob(f"{CLUSTER_ID}-recommender-*-detail-report.csv"))
    assert gate_path.name == detail_report.name.replace("-detail-report.csv", "-partition-changes.json")
    gate = json.loads(gate_path.read_text())
    assert [(c["topic"], c["current"], c["recommended"]) for c in gate["changes"]] == [(grow, 1, 6)]
    assert gate["changes"][0]["binding"] == table.loc[grow, "binding"]
    assert f'topic_name       = "{grow}"\n  partitions_count = 6 # now 1' in tf_path.read_text()
    assert script_path.read_text().splitlines()[-1] == (
        f"kafka-topics.sh --bootstrap-server {kafka_bootstrap} --alter --topic {grow} --partitions 6"
    )
    if not KAFKA_LIBS.is_dir():
        pytest.skip("no Kafka jars to run kafka-topics.sh with")
    run = subprocess.run([str(script_path)], env=kafka_topics_on_path(tmp_path), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert topic_shape(kafka_bootstrap, grow)[0] == 6
    assert topic_shape(kafka_bootstrap, steady)[0] == 8


def test_writer_settings_default_to_the_original_tools_meaning_and_reject_an_illegal_topic(configured_settings):
    settings = configured_settings()
    assert not settings.use_kafka_writer
    topic = kafka_writer.new_results_topic(settings)
    assert (topic.topic, topic.num_partitions, topic.replication_factor) == ("_kafka_partition_recommendations", 6, 3)
    assert topic.config == {"retention.ms": "-1"}  # 0 days: kept for ever
    assert kafka_writer.retention_ms(7) == 604_800_000
    settings = configured_settings(USE_KAFKA_WRITER="yes", KAFKA_WRITER_TOPIC_DATA_RETENTION_IN_DAYS="30")
    assert settings.use_kafka_writer
    assert kafka_writer.new_results_topic(settings).config == {"retention.ms": str(30 * 86_400_000)}
    with pytest.raises(ConfigurationError) as error:
        configured_settings(KAFKA_WRITER_TOPIC_NAME="results topic", KAFKA_WRITER_TOPIC_PARTITION_COUNT="0")
    assert str(error.value).splitlines()[1:] == [
        "  KAFKA_WRITER_TOPIC_NAME: is not a legal Kafka topic name (got 'results topic'); "
        "expected a Kafka topic name: 1-249 letters, digits, . _ -, not . or ..",
        "  KAFKA_WRITER_TOPIC_PARTITION_COUNT: Input should be greater than or equal to 1 (got '0'); "
        "expected a whole number, 1 or more",
    ]


def test_disabled_writer_writes_nothing_and_says_so(prefix, kafka_bootstrap, configure, pipeline):
    configure(TOPIC_FILTER=prefix, KAFKA_WRITER_TOPIC_NAME=f"{prefix}_never")
    frame = pd.DataFrame([{"cluster_id": CLUSTER_ID, "topic_name": f"{prefix}.x", "recommended_partitions": 6}])
    context = dg.build_asset_context(partition_key=utc_today().isoformat())
    resources = pipeline.resources()
    written = published_recommendations(context, frame, resources["config"], resources["kafka"])
    assert written.empty
    assert context.get_output_metadata("result")["enabled"] is False
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert f"{prefix}_never" not in topics


def test_a_cluster_that_fails_does_not_stop_the_others(prefix, kafka_bootstrap, configure, pipeline, monkeypatch):
    monkeypatch.setattr(kafka_writer, "ADMIN_TIMEOUT_SECONDS", 5)
    monkeypatch.setattr(kafka_clients, "PROBE_SECONDS", 5)
    results = f"{prefix}_results"
    configure(
        KAFKA_CREDENTIALS=json.dumps(
            [
                {"kafka_cluster_id": "down", "bootstrap.servers": f"127.0.0.1:{free_port()}"},
                {"kafka_cluster_id": CLUSTER_ID, "bootstrap.servers": kafka_bootstrap},
            ]
        ),
        USE_KAFKA_WRITER="true",
        KAFKA_WRITER_TOPIC_NAME=results,
        KAFKA_WRITER_TOPIC_REPLICATION_FACTOR="1",
    )
    frame = pd.DataFrame(
        [
            {"cluster_id": "down", "topic_name": "orders", "recommended_partitions": 6, "action": "keep"},
            {"cluster_id": CLUSTER_ID, "topic_name": f"{prefix}.a", "recommended_partitions": 12, "action": "increase"},
            {"cluster_id": CLUSTER_ID, "topic_name": f"{prefix}.b", "recommended_partitions": 6, "action": "keep"},
        ]
    )
    resources = pipeline.resources()
    context = dg.build_asset_context(partition_key=utc_today().isoformat())
    with pytest.raises(dg.Failure) as failure:
        published_recommendations(context, frame, resources["config"], resources["kafka"])
    assert failure.value.description.startswith(f"cluster down, results topic {results}: unreachable: no answer")
    assert failure.value.metadata["records"].value == 2
    records = dict(read_all(kafka_bootstrap, results))
    assert records == {
        f"{CLUSTER_ID}/{prefix}.a": {
            "recommendation_day": utc_today().isoformat(),
            "cluster_id": CLUSTER_ID,
            "topic_name": f"{prefix}.a",
            "recommended_partitions": 12,
            "action": "increase",
        },
        f"{CLUSTER_ID}/{prefix}.b": {
            "recommendation_day": utc_today().isoformat(),
            "cluster_id": CLUSTER_ID,
            "topic_name": f"{prefix}.b",
            "recommended_partitions": 6,
            "action": "keep",
        },
    }
    assert topic_shape(kafka_bootstrap, results) == (6, "-1")  # the defaults: 6 partitions, kept for ever


def test_the_one_command_writes_the_changes_and_the_results_topic(
    prefix, kafka_bootstrap, configure, tmp_path, monkeypatch, capsys
):
    from recommender_pipeline.command import cli

    day = utc_today() - timedelta(days=1)
    results = f"{prefix}_results"
    create_topic(kafka_bootstrap, f"{prefix}.grow", 2)
    produce(kafka_bootstrap, f"{prefix}.grow", records_in_hour(day, 5, 50, lambda i: (None, b"x" * 10, []), 2))
    configure(
        TOPIC_FILTER=prefix,
        SAMPLING_DAYS=1,
        USE_KAFKA_WRITER="true",
        KAFKA_WRITER_TOPIC_NAME=results,
        KAFKA_WRITER_TOPIC_REPLICATION_FACTOR="1",
    )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "command_home"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--in-process", "--day", day.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    changes = [Path(line.removeprefix("changes: ")) for line in lines if line.startswith("changes: ")]
    kinds = sorted(path.name.split("-partition-changes")[1] for path in changes)
    assert kinds == ["-rest-v3.json", ".json", ".sh", ".tf"]
    assert all(path.exists() and path.parent == tmp_path / "reports" for path in changes)
    gate = json.loads(next(path for path in changes if path.name.endswith("-partition-changes.json")).read_text())
    assert [(c["topic"], c["current"], c["recommended"]) for c in gate["changes"]] == [(f"{prefix}.grow", 2, 6)]
    records = read_all(kafka_bootstrap, results)
    assert [(key, value["records_in_window"], value["bytes_in_window"]) for key, value in records] == [
        (f"{CLUSTER_ID}/{prefix}.grow", 50, 500)
    ]
