"""The Dagster UI in a real browser: the asset graph, a measured day and its recommendations.

Debian's /usr/bin/chromium, driven headless by Playwright (never `playwright install`), against
`dagster dev` on the instance the one command filled. Screenshots go to the test's temporary
folder, so a test run leaves the tree clean; `REFRESH_SCREENSHOTS=1 scripts/test -k test_ui`
writes them over the README's images in docs/screenshots/. Skipped only when chromium is missing
outside CI; under CI it fails instead, unless .ci/run found Debian's mirror unreachable
(BROWSER_UNAVAILABLE).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from recommender_pipeline.outputs.report_server import serving
from recommender_pipeline_testing.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from recommender_pipeline_testing.dagster_server import dagster_dev
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.pipeline import CLUSTER_ID, CONFIG_VARIABLES, REPO
from recommender_pipeline_testing.workloads import create_topic, produce
from recommender_pipeline_tests.assets.test_backfill import backfill

README_SCREENSHOTS = REPO / "docs" / "screenshots"
ASSETS = [  # all in one group: the lineage draws no group boxes and shows every asset at first sight
    "credentials",
    "cluster_inventory",
    "topic_measurements",
    "topic_profiles",
    "topic_recommendations",
    "reports",
    "partition_changes",
    "published_recommendations",
]
# The table's headers in the UI, for the detail report's columns.
TABLE_COLUMNS = {
    "now": "number_of_partitions",
    "recommended": "recommended_partitions",
    "action": "action",
    "binding": "binding",
    "status": "status",
}
TIMEOUT_MS = 30_000
BACKFILLS = "{ partitionBackfillsOrError(limit: 1) { ... on PartitionBackfills { results { id } } } }"


def cells(row_text: str) -> list[str]:
    """A table row's cells from its inner text (tab-separated; empty cells dropped)."""
    return [cell.strip() for cell in row_text.split("\t") if cell.strip()]


def all_cells(row_text: str) -> list[str]:
    """A table row's cells from its inner text, empty ones kept (so columns stay aligned)."""
    return [cell.strip() for cell in row_text.split("\t")]


def widen_to_fit(page, element, margin: int = 48, max_width: int = 3000) -> None:
    """Widens the viewport until `element` ends inside it (the screenshot shows every column)."""
    for _ in range(4):
        box = element.bounding_box()
        size = page.viewport_size
        if box is None or box["x"] + box["width"] + margin <= size["width"] or size["width"] >= max_width:
            return
        page.set_viewport_size(
            {"width": min(max_width, int(box["x"] + box["width"]) + margin), "height": size["height"]}
        )
        page.wait_for_timeout(300)  # let the layout settle


def materialize_today(env: dict[str, str], cwd: Path) -> str:
    """Runs the one command in its own process; returns the window's end day it recommended for."""
    command = [sys.executable, "-m", "recommender_pipeline.command.cli", "--in-process"]
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    match = re.search(r"^window ending (\d{4}-\d{2}-\d{2}):", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return match.group(1)


def test_ui_shows_the_asset_graph_and_a_days_recommendations(prefix, kafka_bootstrap, tmp_path):
    require_chromium()
    with serving(tmp_path / "reports") as reports_url:
        walk_the_ui(prefix, kafka_bootstrap, tmp_path, reports_url)


def walk_the_ui(prefix: str, kafka_bootstrap: str, tmp_path: Path, reports_url: str) -> None:
    """The command fills the instance (yesterday and today), then the browser walks the UI."""
    from playwright.sync_api import expect, sync_playwright

    from recommender_pipeline.days import utc_today

    today = utc_today()
    topics = {f"{prefix}.orders": (3, 600, 120), f"{prefix}.clicks": (1, 200, 40)}
    for topic, (partitions, count, size) in topics.items():
        create_topic(kafka_bootstrap, topic, partitions)
        records = records_in_hour(today, 0, count, lambda i, size=size: (None, b"r" * size, []), partitions)
        produce(kafka_bootstrap, topic, records)

    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    config = {
        "KAFKA_CREDENTIALS": f'[{{"kafka_cluster_id": "{CLUSTER_ID}", "bootstrap.servers": "{kafka_bootstrap}"}}]',
        "TOPIC_FILTER": prefix,
        "SAMPLING_DAYS": "2",  # yesterday (settled: backfilled again below) and today
        "REPORTS_DIR": str(tmp_path / "reports"),
        "REPORTS_URL": reports_url,
        "MEASUREMENT_STORE_PATH": str(tmp_path / "measurements.duckdb"),
        # The server runs in the repository root: never read a developer's .env there.
        "RECOMMENDER_ENV_FILE": str(tmp_path / "no.env"),
    }
    env.update(config, DAGSTER_HOME=str(tmp_path / "home"))
    day = materialize_today(env, tmp_path)
    [detail_path] = (tmp_path / "reports").glob(f"{CLUSTER_ID}-recommender-*-detail-report.csv")
    report = pd.read_csv(detail_path, keep_default_na=False, dtype=str).set_index("topic_name")
    assert set(report.index) == set(topics)

    screenshots = README_SCREENSHOTS if os.environ.get("REFRESH_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    with dagster_dev(tmp_path / "home", config) as server, sync_playwright() as playwright:
        community_modal = server.graphql("{ shouldShowNux }")["shouldShowNux"]
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 1080})
            # Belt and braces with --host-resolver-rules: the page may load nothing but the servers.
            context.route(lambda url: not url.startswith((server.url, reports_url)), lambda route: route.abort())
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)

            # The asset graph: one group, so every asset shows at first sight, nothing to expand.
            # 2400 px wide, the fitted graph is large enough for Dagster to draw full nodes.
            page.set_viewport_size({"width": 2400, "height": 1100})
            page.goto(f"{server.url}/asset-groups", wait_until="networkidle")
            if community_modal:  # "Join the Dagster community", on an instance's first visit
                page.get_by_role("button", name="Skip").click()
                expect(page.get_by_text("Join the Dagster community")).to_be_hidden()
            expect(page.get_by_text("Global asset lineage")).to_be_visible()
            page.get_by_text("Hide navigation").click()
            for name in ASSETS:  # the asset list beside the graph
                expect(page.get_by_role("button", name=re.compile(rf"^\S+ {name} {name}$"))).to_be_visible()
            page.get_by_placeholder("Jump to…").locator("xpath=following::button[1]").click()  # hide the list
            for name in ASSETS:  # each node of the graph, drawn in full with its whole name
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            expect(page.get_by_text("Latest event")).to_have_count(len(ASSETS))
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(screenshots / "asset-graph.png"))
            page.set_viewport_size({"width": 1920, "height": 1080})

            # The measured day: topic_measurements' partitions, one topic-day and its numbers.
            orders = f"{prefix}.orders"
            page.goto(f"{server.url}/assets/topic_measurements?view=partitions&partition={day}|{CLUSTER_ID}/{orders}")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            expect(page.get_by_text(f"{CLUSTER_ID}/{orders}", exact=True).first).to_be_visible()
            expect(page.get_by_text("peak_ingress_bytes_per_sec", exact=True)).to_be_visible()
            measured = dict(cells(row)[:2] for row in page.get_by_role("row").all_inner_texts() if len(cells(row)) == 2)
            assert measured["records"] == str(topics[orders][1]), measured
            assert measured["bytes"] == str(topics[orders][1] * topics[orders][2]), measured
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(screenshots / "measured-day.png"))

            # The day's partition of topic_recommendations: its metadata and table of topics.
            page.goto(f"{server.url}/assets/topic_recommendations?view=partitions&partition={day}")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            # The "recommendations" table inside the metadata table (beside it, topic_history's table).
            table = page.locator("table table").filter(has=page.locator("thead th", has_text="binding"))
            expect(table.locator("tbody tr")).to_have_count(len(topics))
            # Each topic's history: a row per topic, a link per measured day to its topic-day.
            history = page.locator("table table").filter(has=page.locator("thead th", has_text="daily peak"))
            expect(history.locator("tbody tr")).to_have_count(len(topics))
            links = history.locator("a[href*='/assets/topic_measurements?partition=']")
            assert len(topics) <= links.count() <= 2 * len(topics)  # today, and yesterday if stored
            metadata = dict(cells(row)[:2] for row in page.get_by_role("row").all_inner_texts() if len(cells(row)) == 2)
            assert metadata["topics"] == str(len(topics)), metadata
            assert metadata["window_end_day"] == day, metadata
            header = [cell.strip() for cell in table.locator("thead th").all_inner_texts()]
            assert header[:6] == ["topic", "now", "recommended", "change", "action", "reason"], header
            rows = [all_cells(row) for row in table.locator("tbody tr").all_inner_texts()]
            shown = pd.DataFrame(rows, columns=header).set_index("topic")
            for topic in topics:
                for column, source in TABLE_COLUMNS.items():
                    assert shown.loc[topic, column] == report.loc[topic, source], (topic, column, shown.loc[topic])
            # What to act on first: the largest change first, and the change is recommended - now.
            changes = [int(change) for change in shown["change"]]
            assert changes == sorted(changes, reverse=True), shown
            for topic in topics:
                now, recommended = (
                    int(report.loc[topic, "number_of_partitions"]),
                    report.loc[topic, "recommended_partitions"],
                )
                increase = report.loc[topic, "action"] == "increase"
                assert int(shown.loc[topic, "change"]) == (int(recommended) - now if increase else 0)
            # The columns a person acts on, the reason included and whole, fit a 1600 px screen.
            page.set_viewport_size({"width": 1600, "height": 1000})
            page.wait_for_timeout(300)  # let the layout settle
            reason = header.index("reason")
            for cell in [
                table.locator("thead th").nth(reason),
                *table.locator(f"tbody tr td:nth-child({reason + 1})").all(),
            ]:
                box = cell.bounding_box()
                assert box is not None and box["x"] + box["width"] <= 1600, (cell.inner_text(), box)
                assert cell.evaluate("e => e.scrollWidth <= e.clientWidth"), f"cut: {cell.inner_text()}"
            widen_to_fit(page, table)
            table.scroll_into_view_if_needed()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(screenshots / "topic-recommendations.png"))
            page.set_viewport_size({"width": 1600, "height": 1000})

            # The report in one click: the `reports` asset's link opens it over HTTP.
            page.goto(f"{server.url}/assets/reports?view=partitions&partition={day}")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            expect(page.get_by_text("report_preview", exact=True)).to_be_visible()
            # The `html_report_local` entry: an http link whose text is its address.
            link = page.locator(f'a[href^="{reports_url}"][href$="-report.html"]', has_text=reports_url).first
            expect(link).to_be_visible()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(screenshots / "reports.png"))
            with context.expect_page() as opened:
                link.click()
            report_page = opened.value
            report_page.wait_for_load_state("load")
            assert report_page.url.startswith(reports_url), report_page.url
            expect(report_page.locator("h1")).to_contain_text(f"{CLUSTER_ID}: partitions for the window ending {day}")
            expect(report_page.locator("#coverage")).to_contain_text("2 of 2")
            report_page.set_viewport_size({"width": 1600, "height": 1000})  # a new tab has the context's 1920
            report_page.wait_for_timeout(300)  # let the layout settle
            width = report_page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1600, f"the report is {width} px wide in a 1600 px window"
            report_page.close()

            # A backfill over a day already measured: every run succeeds and so does the backfill.
            server.wait_for_daemon()
            yesterday = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
            keys = [f"{CLUSTER_ID}/{topic}" for topic in sorted(topics)]
            again = backfill(server, ["topic_measurements"], [f"{yesterday}|{key}" for key in keys])
            assert again["status"] == "COMPLETED_SUCCESS", again
            [latest] = server.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
            page.goto(f"{server.url}/runs/b/{latest['id']}")
            expect(page.get_by_text(re.compile(r"^(Completed|Succeeded|Success)$")).first).to_be_visible()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(screenshots / "backfill.png"))
            expect(page.get_by_text(re.compile(r"^[1-9]\d* failed$"))).to_have_count(0)  # was "5 failed"
        finally:
            browser.close()
