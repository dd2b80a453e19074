"""What the one command prints about a cluster's recommendations: a digest that fits a screen.

A cluster of 2,000 topics used to print 2,000 lines. The digest is the counts by action and the
`top` topics with the largest increases (then the busiest), each line at most `WIDTH` columns;
the full table is for `--all`, the charts for the HTML report.
"""

from __future__ import annotations

import pandas as pd

from recommender_pipeline.html_report import rate

WIDTH = 120
TOPIC_WIDTH = 48  # a longer topic name is cut in the middle, keeping its distinctive end
ACTIONS = ("increase", "over-provisioned", "keep", "n/a")


def shorten(name: str, width: int = TOPIC_WIDTH) -> str:
    """`name` in at most `width` characters: its start and end around an ellipsis."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head) :]}"


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
    return [f"{cluster}: {len(detail)} topics{window}", f"  {', '.join(parts)}; in error {errors}"]


def digest(detail: pd.DataFrame, top: int = 10) -> list[str]:
    """The digest's lines for one cluster's detail report (the CSV's columns)."""
    lines = counts_lines(detail)
    if detail.empty or top <= 0:
        return lines
    chosen = top_by_change(detail, top)
    table = pd.DataFrame(
        {
            "topic": chosen["topic_name"].astype(str).map(shorten),  # left-aligned below
            "now": chosen["number_of_partitions"].astype(int),
            "recommended": chosen["recommended_partitions"].astype(int),
            "change": chosen["change"].map(lambda c: f"+{int(c)}" if c > 0 else ""),
            "action": chosen["action"],
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
    rest = len(detail) - len(chosen)
    if rest:
        lines.append(f"  ... and {rest} more topics: --all prints every one, the HTML report charts the top ones")
    return lines
