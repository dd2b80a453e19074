"""The ready-made partition changes, as exact text from a small table. No broker."""

import json
import os
import shlex
import shutil
import stat
import subprocess

import jsonschema
import pandas as pd
import pytest

from recommender_pipeline.assets.changes import cluster_target
from recommender_pipeline.outputs.atomic_files import write_text_atomically
from recommender_pipeline.outputs.partition_changes import (
    ClusterTarget,
    change_paths,
    ci_gate,
    increases,
    kafka_topics_script,
    paths_beside,
    render,
    rest_v3_requests,
    terraform_name,
    terraform_snippet,
)

DAY = "2026-11-30"
PLAIN = ClusterTarget("local", "127.0.0.1:19092", authenticated=False)
# Confluent's `UpdatePartitionCountRequestData` (kafkarest v3 OpenAPI, ccloud-sdk-go-v2): the body of
# `PATCH /kafka/v3/clusters/{cluster_id}/topics/{topic_name}`, one required int32. Transcribed, since
# the REST spec is not among the vendored files.
UPDATE_PARTITION_COUNT = {
    "type": "object",
    "required": ["partitions_count"],
    "properties": {"partitions_count": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}},
}


def table() -> pd.DataFrame:
    """Awkward names (dots, dashes, underscores, a leading digit, two that sanitize alike), every
    action, and a column the changes module does not know, which the JSON outputs pass through."""
    rows = [
        ("orders.v1", 6, 12, "increase", "peak_ingress", "peak 31.5 MiB/s x 3"),
        ("pay-ments", 3, 6, "increase", "min_recommended_partitions", "below the minimum"),
        ("a_b", 2, 6, "increase", "min_recommended_partitions", "below the minimum"),
        ("a.b", 1, 6, "increase", "min_recommended_partitions", "below the minimum"),
        ("2fa.codes", 4, 8, "increase", "peak_ingress", "peak"),
        ("_app_state", 6, 6, "keep", "min_recommended_partitions", "enough"),
        ("huge", 48, 6, "over-provisioned", "min_recommended_partitions", "8x"),
        ("broken", 6, 6, "n/a", "", "error: unreachable"),
    ]
    frame = pd.DataFrame(
        rows,
        columns=["topic_name", "number_of_partitions", "recommended_partitions", "action", "binding", "reason"],
    )
    frame.insert(0, "cluster_id", "local")
    frame["status"] = ["active"] * 7 + ["error"]
    frame["consumer_groups"] = [2, 0, 0, 0, 1, 0, 0, None]
    return frame


def test_only_increases_are_changed_sorted_by_topic():
    assert increases(table())["topic_name"].tolist() == ["2fa.codes", "a.b", "a_b", "orders.v1", "pay-ments"]


def test_the_kafka_topics_script_is_exact():
    assert kafka_topics_script(PLAIN, DAY, table()) == (
        "#!/bin/sh\n"
        "# Partition increases recommended for Kafka cluster local, window ending 2026-11-30,\n"
        "# written by recommender-pipeline. It never runs this: review it, then run it yourself.\n"
        "# Adding partitions cannot be undone, and keyed records move to other partitions.\n"
        "set -eu\n"
        "kafka-topics.sh --bootstrap-server 127.0.0.1:19092 --alter --topic 2fa.codes --partitions 8\n"
        "kafka-topics.sh --bootstrap-server 127.0.0.1:19092 --alter --topic a.b --partitions 6\n"
        "kafka-topics.sh --bootstrap-server 127.0.0.1:19092 --alter --topic a_b --partitions 6\n"
        "kafka-topics.sh --bootstrap-server 127.0.0.1:19092 --alter --topic orders.v1 --partitions 12\n"
        "kafka-topics.sh --bootstrap-server 127.0.0.1:19092 --alter --topic pay-ments --partitions 6\n"
    )


def test_an_authenticated_cluster_asks_for_its_command_config_and_quotes_every_argument():
    """Kafka allows only letters, digits, `.`, `_` and `-`; the quoting is checked anyway with a name
    no broker would accept, by splitting the line as the shell would."""
    target = ClusterTarget("lkc-1", "pkc-1.eu-west-1.aws.confluent.cloud:9092", authenticated=True)
    odd = table().head(1).assign(topic_name="it's $(odd); `x`")
    script = kafka_topics_script(target, DAY, odd)
    assert ': "${COMMAND_CONFIG:?set COMMAND_CONFIG to a client.properties file for this cluster}"' in script
    line = script.splitlines()[-1]
    assert shlex.split(line) == [
        "kafka-topics.sh",
        "--bootstrap-server",
        "pkc-1.eu-west-1.aws.confluent.cloud:9092",
        "--command-config",
        "$COMMAND_CONFIG",
        "--alter",
        "--topic",
        "it's $(odd); `x`",
        "--partitions",
        "12",
    ]


def test_the_script_for_a_cluster_with_nothing_to_increase_runs_and_does_nothing(tmp_path):
    keep = table()[table()["action"] != "increase"]
    path = tmp_path / "changes.sh"
    write_text_atomically(kafka_topics_script(PLAIN, DAY, keep), path, executable=True)
    assert "# No topic to increase." in path.read_text()
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask  # 0755 under the usual umask 022
    assert subprocess.run([str(path)], capture_output=True, text=True).returncode == 0


def test_rest_v3_requests_match_confluents_update_partition_count_body():
    document = rest_v3_requests(ClusterTarget("lkc-1", "x:9092", True), DAY, table())
    requests = document["requests"]
    assert [(r["method"], r["path"], r["body"]) for r in requests] == [
        ("PATCH", "/kafka/v3/clusters/lkc-1/topics/2fa.codes", {"partitions_count": 8}),
        ("PATCH", "/kafka/v3/clusters/lkc-1/topics/a.b", {"partitions_count": 6}),
        ("PATCH", "/kafka/v3/clusters/lkc-1/topics/a_b", {"partitions_count": 6}),
        ("PATCH", "/kafka/v3/clusters/lkc-1/topics/orders.v1", {"partitions_count": 12}),
        ("PATCH", "/kafka/v3/clusters/lkc-1/topics/pay-ments", {"partitions_count": 6}),
    ]
    for request in requests:
        jsonschema.validate(request["body"], UPDATE_PARTITION_COUNT)
        assert set(request["body"]) == {"partitions_count"}
        assert isinstance(request["body"]["partitions_count"], int)
    assert json.loads(json.dumps(document)) == document  # plain JSON types only
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"partitions_count": "12"}, UPDATE_PARTITION_COUNT)


def test_terraform_resource_names_are_sanitized_and_unique():
    taken: set[str] = set()
    names = [terraform_name(t, taken) for t in ["a.b", "a_b", "a-b", "2fa.codes", "-x", "_ok", "a.b"]]
    assert names == ["a_b", "a_b_2", "a-b", "topic_2fa_codes", "topic_-x", "_ok", "a_b_3"]


def test_the_terraform_snippet_is_exact():
    assert terraform_snippet(PLAIN, DAY, table().iloc[[3, 2, 0]]) == (
        "# Partition increases recommended for Kafka cluster local, window ending 2026-11-30,\n"
        "# written by recommender-pipeline. Set partitions_count on the confluent_kafka_topic resources that\n"
        "# manage these topics; import a topic Terraform does not manage yet first (the command above it).\n"
        "# Partitions can only be added. rest_endpoint and credentials come from your provider or resources.\n"
        "\n"
        "# terraform import confluent_kafka_topic.a_b local/a.b\n"
        'resource "confluent_kafka_topic" "a_b" {\n'
        "  kafka_cluster {\n"
        '    id = "local"\n'
        "  }\n"
        '  topic_name       = "a.b"\n'
        "  partitions_count = 6 # now 1\n"
        "}\n"
        "\n"
        "# terraform import confluent_kafka_topic.a_b_2 local/a_b\n"
        'resource "confluent_kafka_topic" "a_b_2" {\n'
        "  kafka_cluster {\n"
        '    id = "local"\n'
        "  }\n"
        '  topic_name       = "a_b"\n'
        "  partitions_count = 6 # now 2\n"
        "}\n"
        "\n"
        "# terraform import confluent_kafka_topic.orders_v1 local/orders.v1\n"
        'resource "confluent_kafka_topic" "orders_v1" {\n'
        "  kafka_cluster {\n"
        '    id = "local"\n'
        "  }\n"
        '  topic_name       = "orders.v1"\n'
        "  partitions_count = 12 # now 6\n"
        "}\n"
    )


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_the_terraform_snippet_parses_and_is_formatted_as_terraform_fmt_would(tmp_path):
    """`terraform fmt -check` exits 2 on a syntax error and 3 on a file it would reformat."""
    path = tmp_path / "changes.tf"
    path.write_text(terraform_snippet(PLAIN, DAY, table()))
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull}
    command = ["terraform", "fmt", "-check", "-diff", str(path)]
    checked = subprocess.run(command, capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_ci_gate_leads_with_the_decision_and_passes_every_other_column_through():
    gate = ci_gate(PLAIN, DAY, table())
    assert gate["topics_to_increase"] == 5
    assert gate["partitions_to_add"] == (8 - 4) + (6 - 1) + (6 - 2) + (12 - 6) + (6 - 3)
    assert gate["changes"][3] == {
        "cluster": "local",
        "topic": "orders.v1",
        "current": 6,
        "recommended": 12,
        "binding": "peak_ingress",
        "reason": "peak 31.5 MiB/s x 3",
        "action": "increase",
        "status": "active",
        "consumer_groups": 2.0,
    }
    assert list(gate["changes"][0])[:6] == ["cluster", "topic", "current", "recommended", "binding", "reason"]


def test_a_cluster_with_nothing_to_increase_still_gets_every_file_saying_so():
    forms = render(PLAIN, DAY, table()[table()["action"] != "increase"])
    assert json.loads(forms["ci_gate"])["changes"] == []
    assert json.loads(forms["rest_v3"])["requests"] == []
    assert forms["terraform"].endswith("# No topic to increase.\n")


def test_change_files_sit_beside_the_reports_and_never_overwrite(tmp_path):
    first = change_paths(tmp_path, "lkc-1", 1_700_000_000, DAY, "0a1b2c3d-run")
    assert {kind: path.name for kind, path in first.items()} == {
        "kafka_topics_sh": "lkc-1-recommender-1700000000-2026-11-30-0a1b2c3d-partition-changes.sh",
        "rest_v3": "lkc-1-recommender-1700000000-2026-11-30-0a1b2c3d-partition-changes-rest-v3.json",
        "terraform": "lkc-1-recommender-1700000000-2026-11-30-0a1b2c3d-partition-changes.tf",
        "ci_gate": "lkc-1-recommender-1700000000-2026-11-30-0a1b2c3d-partition-changes.json",
    }
    write_text_atomically("{}", first["ci_gate"])
    second = change_paths(tmp_path, "lkc-1", 1_700_000_000, DAY, "0a1b2c3d-run")
    assert second["terraform"].name == "lkc-1-recommender-1700000000-2026-11-30-0a1b2c3d-2-partition-changes.tf"
    assert [p.name for p in tmp_path.iterdir()] == [first["ci_gate"].name]  # no temporary file left


def test_the_target_takes_bootstrap_servers_and_protocol_never_a_secret(configure, pipeline):
    configure(
        KAFKA_CREDENTIALS='[{"kafka_cluster_id": "lkc-1", "bootstrap.servers": "127.0.0.1:9", '
        '"sasl.username": "KEY1", "sasl.password": "s3cret-value"}, '
        '{"kafka_cluster_id": "plain", "bootstrap.servers": "127.0.0.1:8"}]'
    )
    kafka = pipeline.resources()["kafka"]
    cloud, plain = cluster_target(kafka, "lkc-1"), cluster_target(kafka, "plain")
    assert cloud == ClusterTarget("lkc-1", "127.0.0.1:9", authenticated=True)
    assert plain == ClusterTarget("plain", "127.0.0.1:8", authenticated=False)
    assert cluster_target(kafka, "unknown").bootstrap_servers == "<bootstrap-servers>"
    text = "".join(render(cloud, DAY, table().assign(cluster_id="lkc-1")).values())
    assert "s3cret" not in text and "KEY1" not in text


def test_change_files_take_the_stem_of_their_clusters_detail_report(tmp_path):
    detail = tmp_path / "lkc-1-recommender-1700000000-2026-11-30-0a1b2c3d-2-detail-report.csv"
    assert paths_beside(detail)["kafka_topics_sh"] == (
        tmp_path / "lkc-1-recommender-1700000000-2026-11-30-0a1b2c3d-2-partition-changes.sh"
    )
