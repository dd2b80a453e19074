"""Report file names: by cluster and window day, unique per run, never overwriting. No broker."""

from recommender_pipeline.reporting import report_paths


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
