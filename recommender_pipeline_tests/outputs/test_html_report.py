"""The HTML report as a file: self-contained, every topic in its table, charts for the top topics.
No broker (frames built by hand with known numbers); the browser test opens a real one."""

import re

import pandas as pd
from markupsafe import escape

from recommender_pipeline.clusters.topic_listing import NOT_SUPPORTED_REASON
from recommender_pipeline.outputs.html_report import (
    CHART_LIMIT,
    ReportInput,
    charted_topics,
    render_report,
    report_preview,
)
from recommender_pipeline.outputs.reporting import with_not_supported
from recommender_pipeline.settings import Settings
from recommender_pipeline_testing.report_frames import MIB, history_frame, recommendations_frame

# The namespaces of inline SVG are names, not references: nothing is fetched from them.
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def render(topics: int, days: int = 3, **columns) -> str:
    recommendations = recommendations_frame(topics).assign(**columns)
    return render_report(
        ReportInput("lkc-1", "2026-11-30", recommendations, history_frame(recommendations, days), 10 * MIB / 3)
    )


def table_topics(html: str) -> list[str]:
    body = html.split('<table class="sortable" id="topics">', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr class=\"[^\"]*\">\s*<td>([^<]*)</td>", body)


def test_the_report_loads_nothing_and_shows_every_topic_and_its_chart():
    html = render(12)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= NAMESPACES
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|<img\b|@import|url\((?!#)", html)  # url(#clip) is in-page
    assert html.count("<svg") == 12 and html.count("</svg>") == 12  # 12 topics: every one charted
    assert table_topics(html) == [f"t{i:04d}" for i in range(12)]
    # Topics 0 and 5 increase (10 is in error), 3 is over-provisioned; cap 4500, 3400 after: 1100 left.
    assert '<b id="count-increase">2</b>' in html
    assert '<b id="count-over-provisioned">1</b>' in html
    assert '<b id="count-error">1</b>' in html
    assert "<b>1100</b>partitions of headroom after the increases: 3000 now, 3400 after, cap 4500" in html
    # t0001 is estimated: its peak of 0.2 MiB/s with the interval +-10 %; t0000 is exact.
    assert "204.80 KiB/s (95 %: 184.32 KiB/s to 225.28 KiB/s)" in html
    assert "forecast" not in html.lower()


def test_a_topic_name_is_escaped_not_interpreted():
    html = render(3, topic_name=["<script>alert(1)</script>", "b", "c"])
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_charts_cover_the_largest_increases_then_the_busiest_topics():
    recommendations = recommendations_frame(2000)
    chosen = charted_topics(recommendations)
    assert len(chosen) == CHART_LIMIT
    # Every 5th topic increases by i % 4 + 1: +4 for i = 15, 35, ..., the largest first by peak.
    assert chosen[:3] == ["t1995", "t1975", "t1955"]
    assert chosen[20:23] == ["t1999", "t1998", "t1997"]  # then the busiest of the rest


def test_2000_topics_make_one_page_of_30_charts_under_3_mb():
    html = render(2000, days=30)
    assert len(table_topics(html)) == 2000
    assert html.count("<svg") == CHART_LIMIT
    assert len(html.encode()) < 3 * 1024 * 1024


def test_forecast_columns_are_shown_when_the_recommendations_have_them():
    html = render(
        2,
        forecast_days=30,
        forecast_peak_ingress_bytes_per_sec=[2 * MIB, 4 * MIB],
        forecast_recommended_partitions=[4, 7],
        trend_slope_bytes_per_sec_per_day=[0.05 * MIB, 0.1 * MIB],
        trend_fit_days=[14, 14],
    )
    assert '<th data-type="num">forecast partitions</th>' in html
    assert '<td class="num" data-v="7">7</td>' in html
    assert "4.00 MiB/s in 30 days → 7 partitions (trend 102.40 KiB/s per day over 14 days)" in html


def test_topics_dagster_cannot_key_have_their_own_section_with_the_reason():
    """They used to be missing from the page; they are not in the table of recommendations (they
    have none) but counted in the overview and listed with their partitions and the reason."""
    settings = Settings.model_construct()
    names = pd.DataFrame(
        {"cluster_id": "lkc-1", "topic": ["x...y", "<b>...</b>"], "partitions": [3, 12], "reason": NOT_SUPPORTED_REASON}
    )
    rows = with_not_supported(recommendations_frame(4), names, "2026-11-30", settings)
    unsupported = rows["status"] == "not_supported"
    recommendations = rows.loc[~unsupported]
    html = render_report(
        ReportInput(
            "lkc-1", "2026-11-30", recommendations, history_frame(recommendations), 10 * MIB / 3, rows.loc[unsupported]
        )
    )
    assert table_topics(html) == ["t0000", "t0001", "t0002", "t0003"]
    assert '<b id="count-not-supported">2</b><a href="#not-supported">not supported</a>' in html
    section = html.split('<h2 id="not-supported">Not supported</h2>', 1)[1].split("</table>", 1)[0]
    assert re.findall(r"<tr class=\"not-supported\"><td>([^<]*)</td>", section) == ["&lt;b&gt;...&lt;/b&gt;", "x...y"]
    assert '<td class="num" data-v="12">12</td>' in section and html.count(escape(NOT_SUPPORTED_REASON)) == 2
    assert "not-supported" not in render(4)  # no section when every topic is keyable


def test_the_overview_states_how_much_of_the_window_was_measured():
    full = render(4)
    assert "<b>3 of 3</b>days of the window measured (12 of 12 topic-days)</div>" in full
    recommendations = recommendations_frame(4).assign(days_measured=1)
    partial = render_report(
        ReportInput("lkc-1", "2026-11-30", recommendations, history_frame(recommendations, 1), 10 * MIB / 3)
    )
    assert "<b>1 of 3</b>days of the window measured (4 of 12 topic-days): a partial window" in partial
    assert 'class="card coverage partial"' in partial


def test_one_unit_system_a_sort_marker_and_a_reason_that_wraps():
    html = render(6)
    labels = [text for text in re.findall(r"<text[^>]*>([^<]*)</text>", html) if "/s" in text]
    assert labels and all(re.fullmatch(r"[125]0{0,2} (B|KiB|MiB|GiB)/s", label) for label in labels), labels
    assert "kB/s" not in html and "MB/s" not in html and "10^" not in html and "\\times" not in html
    assert '<th data-order="asc">topic</th>' in html  # the table's order, marked
    assert "table.sortable td.reason, .reason { white-space: normal;" in html


def test_a_fan_out_panel_draws_the_egress_it_came_from_and_links_by_id():
    recommendations = recommendations_frame(2).assign(
        binding=["fan_out", "min_recommended_partitions"],
        fan_out=[3.0, None],
        consumer_groups=[3, 0],
        egress_bytes_in_window=[3 * MIB, 0],
        producer_capacity_bytes_per_sec=10 * MIB,
        consumer_capacity_bytes_per_sec=10 * MIB,
        egress_capacity_bytes_per_sec=30 * MIB,
    )
    html = render_report(
        ReportInput("lkc-1", "2026-11-30", recommendations, history_frame(recommendations), 10 * MIB / 3)
    )
    panel = html.split('id="topic-t0000"', 1)[1].split('<div class="topic"', 1)[0]
    assert "daily peak x fan-out 3 (egress)" in panel and "egress capacity x now" in panel
    assert "egress = daily peak x fan-out 3 (3 consumer groups read each byte), 3.00 MiB read in the window" in panel
    other = html.split('id="topic-t0001"', 1)[1]
    assert "fan-out" not in other.split("</table>", 1)[0]


def test_the_preview_for_the_ui_says_the_overview_and_links_each_increase_to_its_panel():
    recommendations = recommendations_frame(12)
    report = ReportInput("lkc-1", "2026-11-30", recommendations, history_frame(recommendations), 10 * MIB / 3)
    url = "http://127.0.0.1:8070/lkc-1-recommender-2026-11-30-abcd1234-report.html"
    preview = report_preview(report, url)
    assert preview.startswith("**lkc-1**, window 2026-11-28 to 2026-11-30: 3 of 3 days measured (36 of 36 topic-days)")
    assert "| 12 | 2 | +3 | 1 | 8 | 1 |" in preview  # t0000 +1, t0005 +2
    assert f"[t0005]({url}#topic-t0005)" in preview and preview.endswith(f"[Open the HTML report]({url})")
    assert preview.index("t0005") < preview.index("t0000")  # the largest increase first
    assert "not served: set REPORTS_URL" in report_preview(report, None)
