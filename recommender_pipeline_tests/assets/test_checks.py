"""Each asset check fails on crafted bad data (and passes on the same data made good)."""

import pandas as pd
import pytest

from recommender_pipeline.assets.checks import measurement_coverage, recommendations_sane, report_complete
from recommender_pipeline.settings import Settings


def rows(**overrides) -> pd.DataFrame:
    good = {
        "cluster_id": "c1",
        "topic_name": "orders",
        "status": "active",
        "number_of_partitions": 3,
        "recommended_partitions": 6,
        "action": "increase",
        "days_missing": 0,
        "days_in_error": 0,
    }
    return pd.DataFrame(
        [
            {**good, **overrides},
            {**good, "topic_name": "clicks", "number_of_partitions": 12, "action": "over-provisioned"},
        ]
    )


def test_measurement_coverage_fails_on_a_missing_or_failed_day():
    assert measurement_coverage(rows())[0] is True
    passed, metadata = measurement_coverage(rows(days_missing=2))
    assert passed is False and metadata["gaps"].value == {"c1/orders": "2 missing, 0 in error"}
    assert measurement_coverage(rows(days_in_error=1))[0] is False


def test_recommendations_sane_fails_on_a_decrease_a_wrong_action_or_below_the_minimum():
    settings = Settings.model_construct()
    assert recommendations_sane(rows(), settings)[0] is True
    assert recommendations_sane(rows(action="decrease"), settings)[0] is False
    assert recommendations_sane(rows(action="keep"), settings)[0] is False  # 6 > 3 must be an increase
    passed, metadata = recommendations_sane(
        rows(recommended_partitions=2, action="keep", number_of_partitions=2), settings
    )
    assert passed is False and "below MIN_RECOMMENDED_PARTITIONS" in metadata["problems"].value["c1/orders"]
    assert recommendations_sane(rows(status="error", action="n/a", recommended_partitions=0), settings)[0] is True
    idle = {"status": "empty", "recommended_partitions": 2, "action": "keep", "number_of_partitions": 2}
    assert recommendations_sane(rows(**idle, binding="idle"), settings)[0] is True  # it keeps what it has
    assert recommendations_sane(rows(**idle, binding="min_recommended_partitions"), settings)[0] is False


def test_report_complete_fails_on_a_missing_or_repeated_topic(tmp_path):
    recommendations = rows()
    detail = tmp_path / "c1-recommender-1-detail-report.csv"
    files = pd.DataFrame([{"cluster_id": "c1", "kind": "detail", "path": str(detail), "rows": 2}])
    pd.DataFrame({"topic_name": ["orders", "clicks"]}).to_csv(detail, index=False)
    assert report_complete(files, recommendations)[0] is True
    pd.DataFrame({"topic_name": ["orders"]}).to_csv(detail, index=False)
    passed, metadata = report_complete(files, recommendations)
    assert passed is False and "missing ['clicks']" in metadata["problems"].value["c1"]
    pd.DataFrame({"topic_name": ["orders", "orders", "clicks"]}).to_csv(detail, index=False)
    assert report_complete(files, recommendations)[0] is False
    assert report_complete(files.iloc[0:0], recommendations)[0] is False  # no report at all


def test_checks_pass_on_an_empty_inventory_instead_of_crashing(tmp_path):
    # Every cluster's inventory failed: no topic to recommend, and the inventory run says why.
    empty = pd.DataFrame()
    assert measurement_coverage(empty)[0] is True
    assert recommendations_sane(empty, Settings.model_construct())[0] is True
    assert report_complete(pd.DataFrame(columns=["cluster_id", "kind", "path"]), empty)[0] is True


@pytest.mark.parametrize(
    ("ratio", "recommended", "current", "right"),
    [
        (2.0, 7, 6, "increase"),  # one more than there is
        (2.0, 6, 6, "keep"),
        (2.0, 6, 11, "keep"),  # just under twice as many
        (2.0, 6, 12, "over-provisioned"),  # exactly twice: the ratio is reached
        (1.5, 6, 8, "keep"),
        (1.5, 6, 9, "over-provisioned"),  # a non-default OVER_PROVISIONED_RATIO moves the boundary
    ],
)
def test_every_action_boundary_is_checked(ratio, recommended, current, right):
    settings = Settings.model_construct(over_provisioned_ratio=ratio, min_recommended_partitions=1)
    table = rows(recommended_partitions=recommended, number_of_partitions=current, action=right).head(1)
    assert recommendations_sane(table, settings)[0] is True
    for wrong in {"increase", "keep", "over-provisioned"} - {right}:
        table = rows(recommended_partitions=recommended, number_of_partitions=current, action=wrong).head(1)
        assert recommendations_sane(table, settings)[0] is False, (wrong, recommended, current)
