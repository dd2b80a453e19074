"""Report file names: unique per cluster, day and run, never overwriting. No broker."""

from recommender_pipeline.reporting import report_paths

EPOCH = 1_700_000_000


def test_two_days_reported_in_the_same_second_never_share_a_file(tmp_path):
    """A UI backfill can finish two days' reports in the same second: each keeps its own files."""
    first = report_paths(tmp_path, "lkc-1", EPOCH, "2026-11-01", "0a1b2c3d-run")
    second = report_paths(tmp_path, "lkc-1", EPOCH, "2026-11-02", "0a1b2c3d-run")
    assert first[0].name == "lkc-1-recommender-1700000000-2026-11-01-0a1b2c3d-detail-report.csv"
    assert first[1].name == "lkc-1-recommender-1700000000-2026-11-01-0a1b2c3d-summary-report.csv"
    assert set(first).isdisjoint(second)


def test_a_name_already_taken_gets_a_counter_instead_of_being_overwritten(tmp_path):
    taken, _ = report_paths(tmp_path, "lkc-1", EPOCH, "2026-11-01", "0a1b2c3d")
    taken.write_text("an earlier report")
    detail, summary = report_paths(tmp_path, "lkc-1", EPOCH, "2026-11-01", "0a1b2c3d")
    assert detail.name == "lkc-1-recommender-1700000000-2026-11-01-0a1b2c3d-2-detail-report.csv"
    assert summary.name.endswith("-2-summary-report.csv")
    assert taken.read_text() == "an earlier report"
