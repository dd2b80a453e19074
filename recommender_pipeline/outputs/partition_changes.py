"""Ready-made partition changes for the topics to increase: a `kafka-topics.sh` script, Confluent
Cloud REST v3 request bodies, a Terraform snippet and a JSON file for CI gates.

Pure text from a cluster's recommendation rows, so each form is tested exactly without a broker.
Writing them is the pipeline's only side effect here: it never alters a topic itself, because
adding partitions remaps keyed records and cannot be undone, so a person (or a reviewed CI step)
must decide. The rows rely only on the table's stable columns (cluster_id, topic_name,
number_of_partitions, recommended_partitions, action, binding, reason, status); every other
column is passed through to the JSON outputs as it is.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
import urllib.parse
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

INCREASE = "increase"
GENERATED_BY = "recommender-pipeline"
# The forms written per cluster, as (kind, file name suffix after the reports' stem).
KINDS = {
    "kafka_topics_sh": "partition-changes.sh",
    "rest_v3": "partition-changes-rest-v3.json",
    "terraform": "partition-changes.tf",
    "ci_gate": "partition-changes.json",
}
# Terraform identifiers: letters, digits, underscores and dashes, not starting with a digit or dash.
TERRAFORM_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ClusterTarget:
    """Where the changes apply: the cluster's id and bootstrap servers (never a credential), and
    whether its clients authenticate, so the script asks for a `--command-config` file."""

    cluster_id: str
    bootstrap_servers: str
    authenticated: bool


def increases(recommendations: pd.DataFrame) -> pd.DataFrame:
    """Only the rows whose action is `increase`, by topic name, so every form lists the same topics
    in the same order."""
    if recommendations.empty:
        return recommendations
    rows = recommendations[recommendations["action"] == INCREASE]
    return rows.sort_values("topic_name", kind="stable").reset_index(drop=True)


def json_safe(value: Any) -> Any:
    """A JSON value for anything a recommendations column holds: NaN and NaT become null, numpy
    scalars Python numbers, dates and times ISO 8601 strings, arrays lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def row_objects(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row as a JSON object with every column present, in the table's column order."""
    return [{str(column): json_safe(value) for column, value in row.items()} for _, row in rows.iterrows()]


def kafka_topics_script(target: ClusterTarget, day: str, rows: pd.DataFrame) -> str:
    """One `kafka-topics.sh --alter` line per topic to increase, every argument shell-quoted.

    An authenticated cluster's script needs its client properties (`security.protocol`,
    `sasl.*`) in a file the operator writes: the pipeline never puts a credential in a file, so
    the lines pass `--command-config "$COMMAND_CONFIG"` and the script stops if it is unset.
    """
    rows = increases(rows)
    lines = [
        "#!/bin/sh",
        f"# Partition increases recommended for Kafka cluster {_comment(target.cluster_id)}, window ending {day},",
        f"# written by {GENERATED_BY}. It never runs this: review it, then run it yourself.",
        "# Adding partitions cannot be undone, and keyed records move to other partitions.",
        "set -eu",
    ]
    config = ""
    if target.authenticated:
        lines += [
            "# This cluster authenticates: write its client properties (security.protocol, sasl.mechanism,",
            "# sasl.jaas.config, ...) to a file and pass it, e.g. COMMAND_CONFIG=client.properties sh this-script",
            ': "${COMMAND_CONFIG:?set COMMAND_CONFIG to a client.properties file for this cluster}"',
        ]
        config = ' --command-config "$COMMAND_CONFIG"'
    if rows.empty:
        lines.append("# No topic to increase.")
    for row in rows.itertuples():
        lines.append(
            f"kafka-topics.sh --bootstrap-server {shlex.quote(target.bootstrap_servers)}{config} --alter "
            f"--topic {shlex.quote(str(row.topic_name))} --partitions {int(row.recommended_partitions)}"
        )
    return "\n".join(lines) + "\n"


def rest_v3_requests(target: ClusterTarget, day: str, rows: pd.DataFrame) -> dict[str, Any]:
    """Confluent Cloud REST v3 "Update Partition Count" requests: `PATCH
    /kafka/v3/clusters/{cluster_id}/topics/{topic_name}` with the body `{"partitions_count": n}`
    (`UpdatePartitionCountRequestData`: one required int32), sent to the cluster's REST endpoint
    with its API key, which this file never holds."""
    rows = increases(rows)
    cluster = urllib.parse.quote(target.cluster_id, safe="")
    return {
        "cluster_id": target.cluster_id,
        "window_end": day,
        "generated_by": GENERATED_BY,
        "requests": [
            {
                "method": "PATCH",
                "path": f"/kafka/v3/clusters/{cluster}/topics/{urllib.parse.quote(str(row.topic_name), safe='')}",
                "body": {"partitions_count": int(row.recommended_partitions)},
            }
            for row in rows.itertuples()
        ],
    }


def terraform_name(topic: str, taken: set[str]) -> str:
    """A Terraform resource name for a topic: unsafe characters (dots) become underscores, a name
    that would start with a digit or dash gets a `topic_` prefix, and a clash (`a.b` and `a_b`) a
    counter. Adds the name to `taken`."""
    base = TERRAFORM_UNSAFE.sub("_", topic)
    if not re.match(r"[A-Za-z_]", base):
        base = f"topic_{base}"
    for name in itertools.chain([base], (f"{base}_{n}" for n in itertools.count(2))):
        if name not in taken:
            taken.add(name)
            return name
    raise AssertionError("unreachable")


def hcl_string(text: str) -> str:
    """A quoted HCL string: backslashes, quotes and template openers (`${`, `%{`) escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${").replace("%{", "%%{")
    return f'"{escaped}"'


def terraform_snippet(target: ClusterTarget, day: str, rows: pd.DataFrame) -> str:
    """`confluent_kafka_topic` resources with the new `partitions_count`, formatted as `terraform
    fmt` would, to merge into the resources that already manage these topics (or to import)."""
    rows = increases(rows)
    taken: set[str] = set()
    lines = [
        f"# Partition increases recommended for Kafka cluster {_comment(target.cluster_id)}, window ending {day},",
        f"# written by {GENERATED_BY}. Set partitions_count on the confluent_kafka_topic resources that",
        "# manage these topics; import a topic Terraform does not manage yet first (the command above it).",
        "# Partitions can only be added. rest_endpoint and credentials come from your provider or resources.",
    ]
    if rows.empty:
        lines.append("# No topic to increase.")
    for row in rows.itertuples():
        topic = str(row.topic_name)
        name = terraform_name(topic, taken)
        lines += [
            "",
            f"# terraform import confluent_kafka_topic.{name} {_comment(target.cluster_id)}/{_comment(topic)}",
            f'resource "confluent_kafka_topic" "{name}" {{',
            "  kafka_cluster {",
            f"    id = {hcl_string(target.cluster_id)}",
            "  }",
            f"  topic_name       = {hcl_string(topic)}",
            f"  partitions_count = {int(row.recommended_partitions)} # now {int(row.number_of_partitions)}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def ci_gate(target: ClusterTarget, day: str, rows: pd.DataFrame) -> dict[str, Any]:
    """For a CI gate (`jq '.topics_to_increase'`): one object per topic to increase, leading with
    cluster, topic, current, recommended, binding and reason, then every other column present."""
    rows = increases(rows)
    renamed = {"cluster_id": "cluster", "topic_name": "topic", "number_of_partitions": "current"}
    renamed["recommended_partitions"] = "recommended"
    changes = []
    for row in row_objects(rows):
        leading = {new: row.pop(old) for old, new in renamed.items()}
        changes.append({**leading, "binding": row.pop("binding"), "reason": row.pop("reason"), **row})
    return {
        "cluster_id": target.cluster_id,
        "window_end": day,
        "generated_by": GENERATED_BY,
        "topics_to_increase": len(changes),
        "partitions_to_add": sum(int(c["recommended"]) - int(c["current"]) for c in changes),
        "changes": changes,
    }


def render(target: ClusterTarget, day: str, rows: pd.DataFrame) -> dict[str, str]:
    """Every form's text, by kind (see `KINDS`)."""
    return {
        "kafka_topics_sh": kafka_topics_script(target, day, rows),
        "rest_v3": json.dumps(rest_v3_requests(target, day, rows), indent=2) + "\n",
        "terraform": terraform_snippet(target, day, rows),
        "ci_gate": json.dumps(ci_gate(target, day, rows), indent=2) + "\n",
    }


def change_paths(reports_dir: Path, cluster_id: str, epoch: int, day: str, run_id: str) -> dict[str, Path]:
    """Beside the CSV reports, with their stem (`<cluster>-recommender-<epoch>-<day>-<run>`); a
    stem already used by any of the files gets a counter rather than overwriting."""
    stem = f"{cluster_id}-recommender-{epoch}-{day}-{run_id[:8]}"
    for suffix in itertools.chain([""], (f"-{n}" for n in itertools.count(2))):
        paths = {kind: reports_dir / f"{stem}{suffix}-{name}" for kind, name in KINDS.items()}
        if not any(path.exists() for path in paths.values()):
            return paths
    raise AssertionError("unreachable")


def paths_beside(detail_report: Path) -> dict[str, Path]:
    """The files beside a cluster's detail report, with exactly its stem, so a day's CSVs and
    changes pair up by name (`...-detail-report.csv` and `...-partition-changes.json`)."""
    stem = detail_report.name.removesuffix("-detail-report.csv")
    return {kind: detail_report.parent / f"{stem}-{name}" for kind, name in KINDS.items()}


def _comment(text: str) -> str:
    """Text safe on one comment line."""
    return re.sub(r"[\r\n]+", " ", text)
