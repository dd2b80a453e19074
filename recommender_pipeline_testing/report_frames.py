"""Recommendations and stored days for N topics, built by hand with known numbers: what the HTML
report's and the terminal digest's tests render without a broker (2,000 topics in a second)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

MIB = 1024 * 1024


def recommendations_frame(topics: int, cluster_id: str = "lkc-1", day: str = "2026-11-30") -> pd.DataFrame:
    """Topic i (`t0000`...) has i % 7 + 1 partitions and a peak of (i + 1) x 0.1 MiB/s; every
    5th topic is to increase by i % 4 + 1 partitions, every 7th is over-provisioned, the 11th
    in error; odd topics are estimated (intervals of +-10 %)."""
    end = date.fromisoformat(day)
    rows = []
    for i in range(topics):
        now = i % 7 + 1
        peak = (i + 1) * 0.1 * MIB
        action = "increase" if i % 5 == 0 else "over-provisioned" if i % 7 == 3 else "keep"
        status = "error" if i == 10 else "active"
        recommended = now + i % 4 + 1 if action == "increase" else max(1, now - 1) if action != "keep" else now
        if status == "error":
            action, recommended = "n/a", 0
        exact = i % 2 == 0
        total = peak * 3600 * 2
        rows.append(
            {
                "cluster_id": cluster_id,
                "topic_name": f"t{i:04d}",
                "method": "sampling_records",
                "number_of_partitions": now,
                "recommended_partitions": recommended,
                "needed_partitions": recommended,
                "action": action,
                "status": status,
                "binding": "consumer_throughput" if action == "increase" else "min_recommended_partitions",
                "window_start": (end - timedelta(days=2)).isoformat(),
                "window_end": day,
                "window_days": 3,
                "days_measured": 3,
                "peak_ingress_bytes_per_sec": peak,
                "avg_ingress_bytes_per_sec": peak / 4,
                "peak_ci_low": None if exact else peak * 0.9,
                "peak_ci_high": None if exact else peak * 1.1,
                "bytes_in_window": total,
                "bytes_ci_low": total if exact else total * 0.9,
                "bytes_ci_high": total if exact else total * 1.1,
                "partition_skew": 1.0 + (i % 3) * 0.5,
                "busiest_partition_share": 1 / now,
                "hot_key": "no",
                "exact": exact,
                "reason": f"peak ingress x factor sets the need: {recommended} partitions vs {now} now ({action})",
                "cluster_partition_cap": 4500,
                "cluster_counted": "partitions",
                "cluster_partitions_now": 3000,
                "cluster_partitions_after": 3400,
            }
        )
    return pd.DataFrame(rows)


def history_frame(recommendations: pd.DataFrame, days: int = 3) -> pd.DataFrame:
    """The store's rows for each topic over `days` days ending on its window end: the daily peak
    climbs to the window peak (day k of n at k/n of it), the average a quarter of the peak."""
    rows = []
    for row in recommendations.itertuples():
        end = date.fromisoformat(row.window_end)
        for k in range(1, days + 1):
            peak = row.peak_ingress_bytes_per_sec * k / days
            rows.append(
                {
                    "date": (end - timedelta(days=days - k)).isoformat(),
                    "cluster_id": row.cluster_id,
                    "topic": row.topic_name,
                    "status": "measured",
                    "peak_ingress_bytes_per_sec": peak,
                    "avg_ingress_bytes_per_sec": peak / 4,
                    "peak_ci_low": None if row.exact else peak * 0.9,
                    "peak_ci_high": None if row.exact else peak * 1.1,
                }
            )
    return pd.DataFrame(rows)
