"""The one command's digest (counts by action, the top topics: one screen at 2,000 topics) and its
progress lines while measuring."""

import pandas as pd

from recommender_pipeline.command.digest import WIDTH, digest, shorten
from recommender_pipeline.command.progress import progress_line
from recommender_pipeline.outputs.reporting import csv_text, detail_frame, with_not_supported
from recommender_pipeline.settings import Settings
from recommender_pipeline_testing.report_frames import recommendations_frame
from recommender_pipeline_tests.outputs.test_reporting import recommended


def test_the_digest_of_2000_topics_fits_one_screen():
    frame = recommendations_frame(2000)
    frame.loc[1995, "topic_name"] = "orders." + "x" * 150 + ".v2"
    lines = digest(frame)
    assert len(lines) <= 40 and max(len(line) for line in lines) <= WIDTH, lines
    assert lines[0] == "lkc-1: 2000 topics, window 2026-11-28 to 2026-11-30"
    # Every 5th topic increases (400, less t0010 in error) by i % 4 + 1 partitions: 997 to add.
    assert lines[1] == "  increase 399 (+997 partitions), over-provisioned 229, keep 1371, n/a 1; in error 1"
    rows = [line.split() for line in lines[4:14]]
    assert [row[0] for row in rows[1:4]] == ["t1975", "t1955", "t1935"]  # +4 each, by peak
    assert rows[0][0].startswith("orders.xxx") and rows[0][0].endswith("x.v2") and "…" in rows[0][0]
    assert rows[1][1:5] == ["2", "6", "+4", "increase"]
    assert lines[-1].startswith("  ... and 1990 more topics: --all")


def test_top_n_lists_n_topics_and_zero_only_the_counts():
    frame = recommendations_frame(50)
    assert len(digest(frame, top=3)) == 2 + 1 + 1 + 3 + 1
    assert len(digest(frame, top=0)) == 2


def test_a_long_name_keeps_its_start_and_end():
    assert shorten("a" * 30 + "b" * 30, 11) == "aaaaa…bbbbb"
    assert shorten("short") == "short"


def test_a_progress_line_names_each_cluster_with_topic_days_done_and_to_do():
    line = progress_line("2026-11-30", {"lkc-1": 120}, {"lkc-1": 2000, "lkc-2": 5}, ["lkc-1", "lkc-2"])
    assert line == "measuring 2026-11-30: lkc-1 120/2000 topic-days, lkc-2 0/5 topic-days"


def test_progress_counts_a_runs_topic_days_per_cluster_from_its_events():
    """A run found by the watcher's tag, its `topic_measurements` materializations counted per
    cluster (what each measuring chunk emits as it stores rows); nothing else is counted."""
    import dagster as dg

    from recommender_pipeline.assets.partitions import topic_key
    from recommender_pipeline.command.progress import MeasurementProgress

    stored = [("lkc-1", "orders"), ("lkc-1", "clicks"), ("lkc-2", "audit")]

    @dg.op
    def store_chunk():
        for cluster_id, topic in stored:
            key = dg.MultiPartitionKey({"date": "2026-11-30", "topic": topic_key(cluster_id, topic)})
            yield dg.AssetMaterialization(asset_key="topic_measurements", partition=key)
        yield dg.AssetMaterialization(asset_key="something_else", partition="2026-11-30|lkc-1/orders")
        # A topic-day an earlier run settled, re-reported (`topic_days.py`): not this run's progress.
        settled = dg.MultiPartitionKey({"date": "2026-11-30", "topic": topic_key("lkc-2", "old")})
        yield dg.AssetMaterialization(asset_key="topic_measurements", partition=settled, metadata={"settled": True})
        yield dg.Output(None)

    @dg.job
    def measuring():
        store_chunk()

    lines: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        with MeasurementProgress(instance, "2026-11-30", {"lkc-1": 2, "lkc-2": 4}, lines.append, 0.05) as watch:
            assert measuring.execute_in_process(instance=instance, tags=watch.tags).success
        silent = MeasurementProgress(instance, "2026-11-30", {"lkc-1": 2})
        with silent:
            measuring.execute_in_process(instance=instance, tags=silent.tags)
    assert watch.done == {"lkc-1": 2, "lkc-2": 1}
    assert lines and all(line.startswith("measuring 2026-11-30: ") for line in lines)
    assert any("lkc-1 2/2 topic-days" in line for line in lines) and any("lkc-2 1/4" in line for line in lines)
    assert silent.done == {}


def test_topics_in_error_or_not_measured_show_a_dash_never_nan(tmp_path):
    """The command digests the detail CSV as pandas reads it, where the `n/a` action is missing:
    a topic in error used to print `recommended 0 ... action NaN` and drop out of the counts."""
    settings = Settings.model_construct()
    frame = recommended(12)
    frame.loc[11, ["status", "action", "recommended_partitions", "peak_ingress_bytes_per_sec"]] = [
        "not_measured",
        "n/a",
        0,
        float("nan"),
    ]
    path = tmp_path / "detail.csv"
    path.write_text(csv_text(detail_frame(frame, settings)))
    lines = digest(pd.read_csv(path), top=20)  # as the command reads it
    assert "nan" not in "\n".join(lines).lower()
    assert lines[1] == "  increase 2 (+3 partitions), over-provisioned 1, keep 7, n/a 2; in error 1"
    rows = {line.split()[0]: line.split() for line in lines[4:]}
    assert rows["t0010"][1:4] == ["4", "-", "error"]
    assert rows["t0011"][1:4] == ["5", "-", "not_measured"]
    assert rows["t0005"][1:5] == ["6", "8", "+2", "increase"]


def test_topics_dagster_cannot_key_are_counted_and_named_on_one_line():
    settings = Settings.model_construct()
    names = ["x...y", "...", *(f"topic-{i:03d}...old" for i in range(20))]
    unsupported = pd.DataFrame({"cluster_id": "lkc-1", "topic": names, "partitions": 3, "reason": "why"})
    lines = digest(detail_frame(with_not_supported(recommended(12), unsupported, "2026-11-30", settings), settings))
    assert lines[0] == "lkc-1: 34 topics, window 2026-11-28 to 2026-11-30"
    assert lines[2] == (
        "  not supported 22, not measured (Dagster cannot key '...'): ..., topic-000...old, topic-001...old and 19 more"
    )
    assert len(lines[2]) <= WIDTH
    assert not any("x...y" in line or "topic-0" in line for line in lines[3:])  # not in the top list
    assert lines[-1].startswith("  ... and 2 more topics")  # of the 12 analysed, 10 listed
    two = digest(detail_frame(with_not_supported(recommended(3), unsupported[:2], "2026-11-30", settings), settings))
    assert two[2] == "  not supported 2, not measured (Dagster cannot key '...'): ..., x...y"
