"""The HTML report the one command writes, opened from disk in a real browser with the network off.

Three topics get three days of growing traffic on the broker; `recommender-pipeline --in-process`
measures and reports them; Debian's /usr/bin/chromium, headless through Playwright, opens the
cluster's `.html` by the file:// URL that the `reports` asset's metadata links, in an offline
context that aborts (and records) any request that is not the file itself, sorts the table by
peak both ways and checks the order against the detail CSV. The screenshot goes to the test's
temporary folder, or over the README's image with `REFRESH_SCREENSHOTS=1`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from recommender_pipeline.settings import Settings
from recommender_pipeline_testing.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.pipeline import CLUSTER_ID, REPO, command_env
from recommender_pipeline_testing.workloads import create_topic, produce

README_SCREENSHOTS = REPO / "docs" / "screenshots"
TIMEOUT_MS = 30_000
# Per topic: partitions and records per day over the three days (each record 2 KiB, in hour 0).
TOPICS = {"orders": (3, [300, 600, 900]), "clicks": (2, [400, 400, 400]), "audit": (1, [50, 20, 100])}


def topic_column(page) -> list[str]:
    return page.locator("#topics tbody tr td:first-child").all_inner_texts()


def test_the_html_report_opens_offline_and_sorts_its_table(prefix, kafka_bootstrap, tmp_path):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    from recommender_pipeline.days import utc_today

    today = utc_today()
    days = [today - timedelta(days=2), today - timedelta(days=1), today]
    for name, (partitions, counts) in TOPICS.items():
        create_topic(kafka_bootstrap, f"{prefix}.{name}", partitions)
        for day, count in zip(days, counts, strict=True):
            records = records_in_hour(day, 0, count, lambda i: (None, b"v" * 2048, []), partitions)
            produce(kafka_bootstrap, f"{prefix}.{name}", records)
    env = command_env(kafka_bootstrap, tmp_path, TOPIC_FILTER=prefix, SAMPLING_DAYS="3")
    result = subprocess.run(
        [sys.executable, "-m", "recommender_pipeline.command.cli", "--in-process", "--top", "2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    paths = [line.removeprefix("report: ") for line in result.stdout.splitlines() if line.startswith("report: ")]
    [html_path] = [path for path in paths if path.endswith(".html")]
    [detail_path] = [path for path in paths if path.endswith("-detail-report.csv")]
    assert f"{CLUSTER_ID}-recommender-{today}-" in html_path
    assert f"{CLUSTER_ID}: 3 topics, window {days[0]} to {today}" in result.stdout
    assert "  ... and 1 more topics: --all" in result.stdout  # --top 2 of 3
    detail = pd.read_csv(detail_path)
    by_peak = detail.sort_values("peak_ingress_bytes_per_sec")["topic_name"].tolist()
    assert len(set(detail["peak_ingress_bytes_per_sec"])) == 3  # no tie: one right order

    # The link the `reports` asset's metadata gives the UI is the report the command printed.
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        # The materialization that wrote it: recommendations of earlier days whose windows this
        # command filled may be refreshed after it, so the latest is not always that one.
        records = instance.fetch_materializations(dg.AssetKey("reports"), limit=20).records
        [metadata] = [
            record.asset_materialization.metadata
            for record in records
            if html_path in record.asset_materialization.metadata["paths"].value
        ]
        url, path = metadata[f"html_report_{CLUSTER_ID}"].value, metadata["html_report"].value
    # Over HTTP under REPORTS_URL (a browser opens no file:// link from the UI), and its path.
    assert url == Settings.model_fields["reports_url"].default + Path(html_path).name
    assert path == html_path
    opened = Path(html_path).as_uri()  # offline, from the file: the report needs nothing else

    screenshots = README_SCREENSHOTS if os.environ.get("REFRESH_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})

            def refuse(route) -> None:
                requested.append(route.request.url)
                route.abort()

            context.route(lambda address: address != opened, refuse)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(opened, wait_until="load")
            expect(page.locator("h1")).to_contain_text(f"{CLUSTER_ID}: partitions for the window ending {today}")
            expect(page.locator("div.topic svg")).to_have_count(3)  # every topic charted: fewer than 30
            assert sorted(topic_column(page)) == sorted(detail["topic_name"])

            peak = page.locator("#topics th", has_text="peak").first
            peak.click()
            expect(peak).to_have_attribute("data-order", "asc")
            assert topic_column(page) == by_peak
            peak.click()
            expect(peak).to_have_attribute("data-order", "desc")
            assert topic_column(page) == by_peak[::-1]

            page.screenshot(path=str(screenshots / "html-report.png"), full_page=True)
        finally:
            browser.close()
    assert requested == [], f"the report asked for {requested}"
    assert (screenshots / "html-report.png").stat().st_size > 10_000
