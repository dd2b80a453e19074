"""How long the Dagster UI takes to load `topic_measurements` at full size: 2,000 topics x the rolling history.

The date dimension is bounded (`partitions.HISTORY_DAYS` + today) so that the asset stays under Dagster's
comfortable 100,000 partitions; this benchmark checks that the asset page and its partitions tab then load
within 2 s. It seeds a fresh DAGSTER_HOME (telemetry and the first-visit modal off) with `--topics` dynamic
topic keys and a runless materialization of every topic on each of the last `--days` days of the date
dimension (plus `topic_recommendations` for those days), starts `dagster dev` on it and times, `--repeats`
times each, the GraphQL queries the UI issues for those pages (the UI's own operations from dagster-webserver
1.13's bundle, trimmed of fields that do not grow with the partitions: config schemas, owners, ...). Every
answer is checked against what was seeded (partition count, materialized count, latest partition), so the
time is of real work. With Chromium and Playwright installed, it also times the real pages, from navigation
until their partitions are on screen, after one untimed visit of the front page (the app's scripts cached).

No Kafka broker is needed: the code location reads its configuration lazily and every sensor and schedule
is stopped by default.

    .venv/bin/python -m benchmarks.ui_load [--topics 2000] [--days 3] [--repeats 5] [--no-browser] [--keep-home]

Exit code 1 when a median exceeds the 2 s target, the asset has 100,000 partitions or more, or an answer
does not match what was seeded.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from recommender_pipeline.assets.partitions import HISTORY_DAYS, daily_partitions, topic_key
from recommender_pipeline.command.instance import instance_yaml
from recommender_pipeline_testing.browser import CHROMIUM, CHROMIUM_ARGS
from recommender_pipeline_testing.dagster_server import DagsterServer, dagster_dev

TARGET_SECONDS = 2.0
PARTITION_LIMIT = 100_000
CLUSTER = "local"
ASSET = {"path": ["topic_measurements"]}
NUX_OFF = "nux:\n  enabled: false\n"  # no first-visit modal in the browser

# The asset page (Overview tab): header and definition, latest event with its metadata, live status.
DEFINITION_QUERY = """
query AssetViewDefinitionQuery($assetKey: AssetKeyInput!) {
  assetOrError(assetKey: $assetKey) { ... on Asset {
    id key { path } hasDefinitionOrRecord
    assetMaterializations(limit: 1) { timestamp runId }
    definition {
      id groupName isExecutable description jobNames opNames isPartitioned kinds
      partitionDefinition { description dimensionTypes { type name dynamicPartitionsDefinitionName } }
      partitionKeysByDimension { name }
      backfillPolicy { description }
      requiredResources { resourceKey }
      targetingInstigators { ... on Schedule { id name cronSchedule } ... on Sensor { id name } }
      metadataEntries { label }
      repository { id name location { id name } }
    }
  } }
}
"""
METADATA_EVENTS_QUERY = """
query AssetOverviewMetadataEventsQuery($assetKey: AssetKeyInput!) {
  assetOrError(assetKey: $assetKey) { ... on Asset {
    id
    assetMaterializations(limit: 1) {
      timestamp runId partition
      metadataEntries { label ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
                        ... on TextMetadataEntry { text } }
    }
    assetObservations(limit: 1) { timestamp runId partition }
  } }
}
"""
LIVE_QUERY = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) {
    id assetKey { path }
    assetMaterializations(limit: 1) { timestamp runId stepKey }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
  }
  assetsLatestInfo(assetKeys: $assetKeys) { id unstartedRunIds inProgressRunIds latestRun { id status } }
}
"""
STALE_QUERY = """
query AssetStaleStatusDataQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys) { id staleStatus staleCauses { key { path } reason category } }
}
"""
# The partitions tab: every key of both dimensions and the materialized ranges (`usePartitionHealthData`).
PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode {
    id
    partitionKeysByDimension { name type partitionKeys }
    assetPartitionStatuses {
      ... on MultiPartitionStatuses {
        primaryDimensionName
        ranges {
          primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
          secondaryDim {
            ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
            ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
          }
        }
      }
    }
  } }
}
"""


def seed(home: Path, topics: int, days: int) -> tuple[list[str], list[str]]:
    """Adds the topic keys and materializes every topic on the last `days` days; returns (topics, days)."""
    keys = [topic_key(CLUSTER, f"bench.topic-{i:04d}") for i in range(topics)]
    seeded_days = daily_partitions.get_partition_keys()[-days:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("topics", keys)
        # No batch API in 1.13: SQLite's store_event_batch stores one event at a time anyway.
        for day in seeded_days:
            for i, key in enumerate(keys):
                records = 1_000 + 37 * i
                metadata = {"status": "ok", "records": records, "bytes": 250 * records, "partition_skew": 1.25}
                partition = dg.MultiPartitionKey({"date": day, "topic": key})
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset_key="topic_measurements", partition=partition, metadata=metadata)
                )
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="topic_recommendations", partition=day, metadata={"topics": topics})
            )
    return keys, seeded_days


class Expected:
    """What the server must answer, from what was seeded; each check raises AssertionError if not."""

    def __init__(self, topics: list[str], days: list[str]):
        self.topics, self.days = topics, days
        self.materialized = len(topics) * len(days)
        self.latest = f"{days[-1]}|{topics[-1]}"
        self.date_keys: list[str] = []  # the server's date dimension, from the first partition health answer

    @property
    def partitions(self) -> int:
        return len(self.date_keys) * len(self.topics)

    def definition(self, data: dict) -> None:
        asset = data["assetOrError"]
        types = asset["definition"]["partitionDefinition"]["dimensionTypes"]
        assert {t["dynamicPartitionsDefinitionName"] for t in types} == {None, "topics"}, types
        assert asset["assetMaterializations"], "no latest materialization"

    def metadata_events(self, data: dict) -> None:
        [latest] = data["assetOrError"]["assetMaterializations"]
        assert latest["partition"] == self.latest, latest["partition"]
        assert {e["label"] for e in latest["metadataEntries"]} >= {"records", "bytes"}, latest

    def live(self, data: dict) -> None:
        stats = data["assetNodes"][0]["partitionStats"]
        assert stats["numPartitions"] == self.partitions, (stats, self.partitions)
        assert stats["numMaterialized"] == self.materialized and stats["numFailed"] == 0, stats

    def stale(self, data: dict) -> None:
        assert data["assetNodes"][0]["staleStatus"], data

    def partition_health(self, data: dict) -> None:
        node = data["assetNodeOrError"]
        dimensions = {d["name"]: d["partitionKeys"] for d in node["partitionKeysByDimension"]}
        self.date_keys = dimensions["date"]
        assert len(self.date_keys) == HISTORY_DAYS + 1, len(self.date_keys)
        assert sorted(dimensions["topic"]) == sorted(self.topics) and set(self.days) <= set(self.date_keys)
        statuses = node["assetPartitionStatuses"]
        assert statuses["primaryDimensionName"] == "date", statuses.get("primaryDimensionName")
        materialized = 0
        for span in statuses["ranges"]:
            first, last = (self.date_keys.index(span[f"primaryDim{end}Key"]) for end in ("Start", "End"))
            materialized += (last - first + 1) * len(span["secondaryDim"]["materializedPartitions"])
        assert materialized == self.materialized, (materialized, self.materialized)


def time_queries(server: DagsterServer, expected: Expected, repeats: int) -> dict[str, list[float]]:
    """Each query `repeats` times (the first one cold); a check of every answer, outside the timing."""
    one, many = {"assetKey": ASSET}, {"assetKeys": [ASSET]}
    queries: list[tuple[str, str, dict, Callable[[dict], None]]] = [
        ("PartitionHealthQuery", PARTITION_HEALTH_QUERY, one, expected.partition_health),  # learns the dates
        ("AssetViewDefinitionQuery", DEFINITION_QUERY, one, expected.definition),
        ("AssetOverviewMetadataEventsQuery", METADATA_EVENTS_QUERY, one, expected.metadata_events),
        ("AssetGraphLiveQuery", LIVE_QUERY, many, expected.live),
        ("AssetStaleStatusDataQuery", STALE_QUERY, many, expected.stale),
    ]
    times: dict[str, list[float]] = {name: [] for name, *_ in queries}
    for _ in range(repeats):
        for name, query, variables, check in queries:
            started = time.perf_counter()
            data = server.graphql(query, variables, timeout=120)
            times[name].append(time.perf_counter() - started)
            check(data)
    overview = ["AssetViewDefinitionQuery", "AssetOverviewMetadataEventsQuery", "AssetGraphLiveQuery"]
    tab = ["AssetViewDefinitionQuery", "AssetGraphLiveQuery", "PartitionHealthQuery"]
    for page, names in (("asset page", [*overview, "AssetStaleStatusDataQuery"]), ("partitions tab", tab)):
        times[f"{page}: its queries in sequence"] = [sum(times[n][i] for n in names) for i in range(repeats)]
    return times


def time_browser(server: DagsterServer, expected: Expected, repeats: int) -> dict[str, list[float]]:
    """Loads each page in headless Chromium, from navigation until what it is for is on screen (the asset
    page: its latest partition; the tab: the partition count, the materialized count and the first topic).
    Returns {} without Playwright or Chromium."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        print("browser: playwright is not installed; skipped")
        return {}
    if not CHROMIUM.exists():
        print(f"browser: {CHROMIUM} is missing; skipped")
        return {}
    materialized = re.compile(rf"Materialized \(({expected.materialized}|{expected.materialized:,})\)")
    pages = {
        "/assets/topic_measurements": lambda page: [page.get_by_text(expected.latest).first],
        "/assets/topic_measurements?view=partitions": lambda page: [
            page.get_by_text(f"{expected.partitions:,} Partitions Selected"),
            page.get_by_text(materialized),
            page.get_by_text(expected.topics[0], exact=True).first,
        ],
    }
    times: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 1080})
            context.route(lambda url: not url.startswith(server.url), lambda route: route.abort())
            page = context.new_page()
            # Untimed: the front page, so the app's scripts are in the browser's cache, as for a user.
            page.goto(server.url + "/", wait_until="networkidle")
            for path, markers in pages.items():
                times[f"browser: {path}"] = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    page.goto(server.url + path, wait_until="commit")
                    for marker in markers(page):
                        expect(marker).to_be_visible(timeout=60_000)
                    times[f"browser: {path}"].append(time.perf_counter() - started)
        finally:
            browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=3, help="last days of the date dimension to materialize")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true", help="time the GraphQL queries only")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary DAGSTER_HOME")
    args = parser.parse_args()
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ui-load-"))
    try:
        failed = run(args, work)
    finally:
        if not args.keep_home:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.repeats} repetitions each, the first cold; whole benchmark {time.perf_counter() - began:.0f} s")
    sys.exit(1 if failed else 0)


def run(args: argparse.Namespace, work: Path) -> bool:
    """Seeds, serves, times and prints the table; True when a target is missed."""
    home = work / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home) + NUX_OFF)
    started = time.perf_counter()
    topics, days = seed(home, args.topics, args.days)
    expected = Expected(topics, days)
    print(
        f"seeded {len(topics):,} topics and {expected.materialized + len(days):,} materializations "
        f"({days[0]}..{days[-1]}) in {time.perf_counter() - started:.1f} s; DAGSTER_HOME={home}"
    )

    env = {
        "RECOMMENDER_ENV_FILE": str(work / "no.env"),  # never a developer's .env
        "REPORTS_DIR": str(work / "reports"),
        "MEASUREMENT_STORE_PATH": str(work / "measurements.duckdb"),
    }
    started = time.perf_counter()
    with dagster_dev(home, env) as server:
        print(f"dagster dev at {server.url}, code location loaded in {time.perf_counter() - started:.1f} s")
        times = time_queries(server, expected, args.repeats)
        if not args.no_browser:
            times |= time_browser(server, expected, args.repeats)

    failed = expected.partitions >= PARTITION_LIMIT
    print()
    print(
        f"topic_measurements partitions: {expected.partitions:,} = {len(expected.date_keys)} days x "
        f"{len(topics):,} topics, {'below' if not failed else 'NOT below'} {PARTITION_LIMIT:,}; "
        f"materialized {expected.materialized:,}"
    )
    print(f"{'what':<58} {'median s':>9} {'max s':>7}  target {TARGET_SECONDS:.0f} s")
    for what, seconds in times.items():
        median = statistics.median(seconds)
        failed |= median > TARGET_SECONDS
        verdict = "PASS" if median <= TARGET_SECONDS else "FAIL"
        print(f"{what:<58} {median:9.3f} {max(seconds):7.3f}  {verdict}")
    return failed


if __name__ == "__main__":
    main()
