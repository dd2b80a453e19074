"""Report files: named by cluster and window day, unique per run, never overwriting; written whole
or not at all, with the modes the umask gives; the topics Dagster cannot key listed. No broker."""

import os
import stat
import string
import subprocess
import sys

import pandas as pd
import pytest
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS

from recommender_pipeline.clusters.topic_listing import NOT_SUPPORTED_REASON, UNSUPPORTED_IN_KEYS, is_keyable
from recommender_pipeline.outputs import atomic_files
from recommender_pipeline.outputs.atomic_files import AtomicWriteError, write_files_atomically
from recommender_pipeline.outputs.reporting import (
    csv_text,
    detail_frame,
    report_paths,
    summary_rows,
    with_not_supported,
    write_report_set,
)
from recommender_pipeline.settings import Settings
from recommender_pipeline_testing.report_frames import recommendations_frame


def test_files_are_named_by_cluster_and_window_day_and_two_days_never_share_a_file(tmp_path):
    """A UI backfill can finish two days' reports in the same second: each keeps its own files."""
    first = report_paths(tmp_path, "lkc-1", "2026-11-01", "0a1b2c3d-run")
    second = report_paths(tmp_path, "lkc-1", "2026-11-02", "0a1b2c3d-run")
    assert first.detail.name == "lkc-1-recommender-2026-11-01-0a1b2c3d-detail-report.csv"
    assert first.summary.name == "lkc-1-recommender-2026-11-01-0a1b2c3d-summary-report.csv"
    assert first.html.name == "lkc-1-recommender-2026-11-01-0a1b2c3d-report.html"
    assert set(first).isdisjoint(second)


def test_a_name_already_taken_gets_a_counter_instead_of_being_overwritten(tmp_path):
    taken = report_paths(tmp_path, "lkc-1", "2026-11-01", "0a1b2c3d").html
    taken.write_text("an earlier report")
    detail, summary, html = report_paths(tmp_path, "lkc-1", "2026-11-01", "0a1b2c3d")
    assert detail.name == "lkc-1-recommender-2026-11-01-0a1b2c3d-2-detail-report.csv"
    assert summary.name.endswith("-2-summary-report.csv")
    assert html.name.endswith("-2-report.html")
    assert taken.read_text() == "an earlier report"


UMASKS = [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]


@pytest.fixture
def umask(request):
    """Runs the test under the umask given as its parameter, restoring the process's after it."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


@pytest.mark.parametrize(("umask", "plain", "executable"), UMASKS, indirect=["umask"], ids=["umask022", "umask027"])
def test_report_and_change_files_have_the_mode_open_gives_under_the_umask(umask, plain, executable, tmp_path):
    """The CSVs were 0600 (`mkstemp`'s mode), so a dashboard's group could not read them while it
    could read the HTML and change files: every file now has the mode a plain open() gives."""
    paths = report_paths(tmp_path, "lkc-1", "2026-11-01", "0a1b2c3d")
    write_report_set(paths, pd.DataFrame({"topic_name": ["a"]}), pd.DataFrame({"stat": ["x"], "value": [1]}), "<p>")
    script, gate = tmp_path / "changes.sh", tmp_path / "changes.json"
    write_files_atomically({script: "#!/bin/sh\n", gate: "{}\n"}, executable=frozenset({script}))
    reference = tmp_path / "opened.txt"
    reference.write_text("as open() makes it")
    assert stat.S_IMODE(reference.stat().st_mode) == plain
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in [*paths, gate]} == {
        path.name: plain for path in [*paths, gate]
    }
    assert stat.S_IMODE(script.stat().st_mode) == executable
    assert paths.detail.read_text() == "topic_name\na\n"


def test_a_report_set_that_cannot_be_written_whole_leaves_nothing_and_says_so_in_one_line(tmp_path):
    """A filesystem that fills up while the HTML is written (a real write failure: the file size
    limit, as a 64 KiB disk would) used to keep the two CSVs without the HTML."""
    script = f"""
import resource, signal, sys
from pathlib import Path
import pandas as pd
from recommender_pipeline.errors import ReportWriteError
from recommender_pipeline.outputs.reporting import report_paths, write_report_set
paths = report_paths(Path({str(tmp_path / "reports")!r}), "lkc-1", "2026-11-01", "0a1b2c3d")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_report_set(paths, pd.DataFrame({{"topic_name": ["a"]}}), pd.DataFrame({{"stat": ["x"]}}), "x" * 100_000)
except ReportWriteError as error:
    sys.exit(str(error))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    reports = tmp_path / "reports"
    assert result.stderr == (
        f"REPORTS_DIR {reports}: File too large writing lkc-1-recommender-2026-11-01-0a1b2c3d-report.html; "
        "nothing of this report set was kept\n"
    )
    assert list(reports.iterdir()) == []  # neither the CSVs nor a temporary file


def test_a_failed_rename_takes_back_the_files_of_the_set_already_renamed(tmp_path, monkeypatch):
    """Renaming cannot run out of space, but it can fail (a folder made read-only meanwhile)."""
    replace = os.replace
    calls = []

    def failing_second(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        replace(source, target)

    monkeypatch.setattr(atomic_files.os, "replace", failing_second)
    kept = tmp_path / "earlier.csv"
    kept.write_text("an earlier file")
    with pytest.raises(AtomicWriteError) as raised:
        write_files_atomically({tmp_path / "a.csv": "a", tmp_path / "b.csv": "b", kept: "new"})
    assert str(raised.value) == "Permission denied writing b.csv"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["earlier.csv"]
    assert kept.read_text() == "an earlier file"


def recommended(topics: int) -> pd.DataFrame:
    """`recommendations_frame` with the columns the detail report reads besides its own."""
    frame = recommendations_frame(topics)
    return frame.assign(
        is_compacted=False,
        retained_records=100,
        records_in_window=100,
        required_bytes_per_sec=frame["peak_ingress_bytes_per_sec"] * 3,
        consumer_bytes_per_sec=frame["peak_ingress_bytes_per_sec"],
        measuring_seconds=1.0,
        hot_partition_ingress="no",
        hot_partition_egress="n/a",
    )


NOT_KEYABLE = pd.DataFrame(
    {"cluster_id": ["lkc-1", "lkc-1"], "topic": ["x...y", "..."], "partitions": [3, 12], "reason": NOT_SUPPORTED_REASON}
)


def test_dagsters_only_key_substring_a_kafka_topic_name_can_hold_is_the_one_named():
    """If Dagster forbids more in a key, the rule here must follow (Kafka names: [A-Za-z0-9._-])."""
    kafka_legal = set(string.ascii_letters + string.digits + "._-")
    assert [s for s in INVALID_PARTITION_SUBSTRINGS if set(s) <= kafka_legal] == [UNSUPPORTED_IN_KEYS]
    assert [is_keyable(name) for name in ["a..b", "a.b.c", "x...y", "...", "logs....", "a_-.b"]] == [
        True,
        True,
        False,
        False,
        False,
        True,
    ]


def test_topics_dagster_cannot_key_are_rows_of_the_detail_report_and_a_stat_of_the_summary():
    """They used to vanish from every report: now a `not_supported` row each, with the reason, and
    the summary counts them apart from the topics analysed."""
    settings = Settings.model_construct()
    before = dict(summary_rows(recommended(12), settings, 0.0))
    rows = with_not_supported(recommended(12), NOT_KEYABLE, "2026-11-30", settings)
    detail = detail_frame(rows, settings)
    listed = detail[detail["status"] == "not_supported"]
    assert listed["topic_name"].tolist() == ["x...y", "..."]
    assert listed["number_of_partitions"].tolist() == [3, 12]
    assert set(listed["reason"]) == {NOT_SUPPORTED_REASON} and "'...'" in NOT_SUPPORTED_REASON
    assert set(listed["action"]) == {"n/a"} and set(listed["window_end"]) == {"2026-11-30"}
    # The topics analysed are written exactly as without them (integers stay integers, not 6.0).
    assert csv_text(detail).startswith(csv_text(detail_frame(recommended(12), settings)))
    summary = dict(summary_rows(rows, settings, 0.0))
    assert summary["not_supported_topics"] == 2 and before["not_supported_topics"] == 0
    assert {k: v for k, v in summary.items() if k != "not_supported_topics"} == {
        k: v for k, v in before.items() if k != "not_supported_topics"
    }


def test_a_cluster_with_only_topics_dagster_cannot_key_still_gets_its_reports():
    """`TOPIC_FILTER` can match only such topics: nothing is recommended (an empty frame without
    columns), yet the detail, summary, digest and HTML list them."""
    from recommender_pipeline.command.digest import digest
    from recommender_pipeline.outputs.html_report import ReportInput, render_report

    settings = Settings.model_construct()
    rows = with_not_supported(pd.DataFrame(), NOT_KEYABLE, "2026-11-30", settings)
    detail = detail_frame(rows, settings)
    assert detail["status"].tolist() == ["not_supported"] * 2 and set(detail["window_start"]) == {"2026-11-24"}
    assert dict(summary_rows(rows, settings, 0.0))["not_supported_topics"] == 2
    assert digest(detail)[2] == "  not supported 2, not measured (Dagster cannot key '...'): ..., x...y"
    history = pd.DataFrame(columns=["date", "cluster_id", "topic", "status"])
    unsupported = rows["status"] == "not_supported"
    html = render_report(ReportInput("lkc-1", "2026-11-30", rows[~unsupported], history, 1.0, rows[unsupported]))
    assert '<b id="count-not-supported">2</b>' in html
