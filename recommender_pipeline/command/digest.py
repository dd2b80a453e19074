"""What the one command prints about a cluster's recommendations: a digest that fits a screen.

A cluster of 2,000 topics used to print 2,000 lines. The digest is the counts by action and the
`top` topics with the largest increases (then the busiest), each line at most `WIDTH` columns;
the full table is for `--all`, the charts for the HTML report.
"""

from __future__ import annotations

import pandas as pd

from recommender_pipeline.clusters.topic_listing import NOT_SUPPORTED, UNSUPPORTED_IN_KEYS
from recommender_pipeline.outputs.units import rate

WIDTH = 120
TOPIC_WIDTH = 48  # a longer topic name is cut in the middle, keeping its distinctive end
ACTIONS = ("increase", "over-provisioned", "keep", "n/a")
RATED = ("active", "empty")  # statuses with a recommendation; the others show "-" and their status


def shorten(name: str, width: int = TOPIC_WIDTH) -> str:
    """`name` in at most `width` characters: its start and end around an ellipsis."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head) :]}"


def readable(detail: pd.DataFrame) -> pd.DataFrame:
    """The detail report as the digest reads it: pandas reads the CSV's `n/a` action as missing."""
    return detail.assign(action=detail["action"].astype(object).where(detail["action"].notna(), "n/a"))


def top_by_change(detail: pd.DataFrame, top: int) -> pd.DataFrame:
    """The `top` topics with the most partitions to add, ties and the rest by peak ingress."""
    frame = detail.assign(
        change=(detail["recommended_partitions"] - detail["number_of_partitions"]).where(
            detail["action"] == "increase", 0
        )
    )
    return frame.sort_values(
        ["change", "peak_ingress_bytes_per_sec", "topic_name"], ascending=[False, False, True]
    ).head(top)


def counts_lines(detail: pd.DataFrame) -> list[str]:
    """`<cluster>: N topics, window A to B`, then `increase n (+p partitions), ...; in error e`."""
    actions = detail["action"].value_counts()
    to_add = (detail["recommended_partitions"] - detail["number_of_partitions"])[detail["action"] == "increase"]
    parts = []
    for action in (*ACTIONS, *sorted(set(actions.index) - set(ACTIONS))):
        if actions.get(action, 0) or action in ACTIONS[:3]:
            extra = f" (+{int(to_add.sum())} partitions)" if action == "increase" and len(to_add) else ""
            parts.append(f"{action} {int(actions.get(action, 0))}{extra}")
    errors = int((detail["status"] == "error").sum())
    cluster = ", ".join(sorted(detail["cluster_id"].astype(str).unique())) or "no cluster"
    window = f", window {detail['window_start'].min()} to {detail['window_end'].max()}" if len(detail) else ""
    lines = [f"{cluster}: {len(detail)} topics{window}", f"  {', '.join(parts)}; in error {errors}"]
    return lines + not_supported_lines(detail)


def not_supported_lines(detail: pd.DataFrame) -> list[str]:
    """One line counting and naming the topics Dagster cannot key (none when there are none)."""
    names = sorted(detail.loc[detail["status"] == NOT_SUPPORTED, "topic_name"].astype(str))
    if not names:
        return []
    line = f"  not supported {len(names)}, not measured (Dagster cannot key '{UNSUPPORTED_IN_KEYS}'): "
    shown: list[str] = []
    for index, name in enumerate(names):
        more = len(names) - index - 1
        tail = f" and {more} more" if more else ""
        if len(line + ", ".join([*shown, shorten(name)]) + tail) > WIDTH and shown:
            return [f"{line}{', '.join(shown)} and {len(names) - len(shown)} more"]
        shown.append(shorten(name))
    return [line + ", ".join(shown)]


def digest(detail: pd.DataFrame, top: int = 10) -> list[str]:
    """The digest's lines for one cluster's detail report (the CSV's columns)."""
    detail = readable(detail)
    lines = counts_lines(detail)
    listed = detail[detail["status"] != NOT_SUPPORTED]  # named on their own line above
    if listed.empty or top <= 0:
        return lines
    chosen = top_by_change(listed, top)
    rated = chosen["status"].isin(RATED)
    table = pd.DataFrame(
        {
            "topic": chosen["topic_name"].astype(str).map(shorten),  # left-aligned below
            "now": chosen["number_of_partitions"].map(_count),
            # A topic in error or not measured has no recommendation: "-", and its status as action.
            "recommended": chosen["recommended_partitions"].map(_count).where(rated, "-"),
            "change": chosen["change"].map(lambda c: f"+{int(c)}" if c > 0 else ""),
            "action": chosen["action"].where(rated, chosen["status"]),
            "peak": chosen["peak_ingress_bytes_per_sec"].map(rate),
            "binding": chosen["binding"].astype(object).fillna("").astype(str),
        }
    )
    if "forecast_recommended_partitions" in chosen and chosen["forecast_recommended_partitions"].notna().any():
        table["forecast"] = chosen["forecast_recommended_partitions"].map(lambda v: "" if pd.isna(v) else int(v))
    lines.append(f"top {len(chosen)} by partitions to add, then peak:")
    width = max(table["topic"].str.len().max(), len("topic"))
    text = table.to_string(index=False, formatters={"topic": lambda name: name.ljust(width)}, justify="left")
    lines += ["  " + line.rstrip()[: WIDTH - 2] for line in text.splitlines()]
    rest = len(listed) - len(chosen)
    if rest:
        lines.append(f"  ... and {rest} more topics: --all prints every one, the HTML report charts the top ones")
    return lines


def _count(value: object) -> str:
    """A partition count, or "-" when the report has none (never "nan")."""
    return "-" if pd.isna(value) else str(int(value))
