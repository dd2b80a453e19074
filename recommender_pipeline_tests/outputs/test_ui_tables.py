"""The UI's table of a day's recommendations: what to act on first, a change column, a reason
that fits, and a schema that names the status values the cells hold. No broker."""

import re

import pandas as pd

from recommender_pipeline.clusters.topic_listing import NOT_SUPPORTED
from recommender_pipeline.outputs.ui_tables import (
    REASON_CHARS,
    WHY,
    history_markdown,
    recommendations_table,
    short_reason,
    sparkline,
)
from recommender_pipeline.recommending.model import TERM_ORDER
from recommender_pipeline_testing.report_frames import recommendations_frame


def test_increases_come_first_largest_change_first_with_a_change_column():
    frame = recommendations_frame(40)
    table = recommendations_table(frame)
    rows = [record.data for record in table.records]
    increases = [row for row in rows if row["action"] == "increase"]
    assert [row["action"] for row in rows[: len(increases)]] == ["increase"] * len(increases)
    assert all(row["change"] == row["recommended"] - row["now"] for row in increases)
    changes = [(row["change"]) for row in increases]
    assert changes == sorted(changes, reverse=True) and changes[0] == 4  # t0015, t0035: +4
    assert rows[0]["topic"] == "t0035"  # of the +4s, the busier first
    assert all(row["change"] == 0 for row in rows[len(increases) :])
    headers = [column.name for column in table.schema.columns]
    assert headers[:6] == ["topic", "now", "recommended", "change", "action", "reason"]


def test_the_reason_is_short_and_the_status_values_are_the_cells():
    frame = recommendations_frame(12)
    frame.loc[3, "reason"] = "x" * 200
    frame.loc[3, "binding"] = None
    table = recommendations_table(frame)
    reasons = [record.data["reason"] for record in table.records]
    assert all(len(reason) <= REASON_CHARS for reason in reasons)
    assert short_reason("x factor sets the need: 4 partitions vs 2 now", "fan_out") == "egress of every group"
    assert short_reason("cluster local could not be measured: timeout") == "cluster local could not b…"
    [status] = [column for column in table.schema.columns if column.name == "status"]
    named = set(re.findall(r"[a-z_]+", status.description)) - {"or"}
    assert named == {"active", "empty", "error", "not_measured", NOT_SUPPORTED}
    assert {record.data["status"] for record in table.records} <= named
    assert set(TERM_ORDER) <= set(WHY) and all(len(why) <= REASON_CHARS for why in WHY.values())


def test_each_topics_history_reads_day_by_day_with_a_link_to_every_measured_day():
    """Three days of one topic, the middle one never measured: three bars with a gap, the range
    of its peaks, and a link to each measured topic-day's partition page, in the table's order."""
    frame = recommendations_frame(3)
    topic, cluster = frame.loc[0, "topic_name"], frame.loc[0, "cluster_id"]
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    measurements = pd.DataFrame(
        [
            {"cluster_id": cluster, "topic": topic, "date": days[0], "peak_ingress_bytes_per_sec": 1024.0},
            {"cluster_id": cluster, "topic": topic, "date": days[2], "peak_ingress_bytes_per_sec": 4096.0},
        ]
    )
    markdown = history_markdown(frame, measurements, days)
    [line] = [line for line in markdown.splitlines() if line.startswith(f"| {topic} |")]
    assert (
        f"`{sparkline([1024.0, None, 4096.0])}`" in line and sparkline([1024.0, None, 4096.0]) == "▃·█"
    )  # 1/4 of the busiest: bar 3 of 8
    assert "1.00 KiB/s - 4.00 KiB/s" in line
    assert line.count("](/assets/topic_measurements?partition=") == 2
    assert f"partition=2026-03-03%7C{cluster}%2F{topic})" in line  # date|cluster/topic, one partition key
    order = [line.split(" | ")[0][2:] for line in markdown.splitlines() if line.startswith("| t0")]
    assert order == [record.data["topic"] for record in recommendations_table(frame).records]
    others = [line for line in markdown.splitlines() if line.startswith("| t0") and f"| {topic} |" not in line]
    assert all("none measured" in line and line.endswith("| - |") for line in others)
