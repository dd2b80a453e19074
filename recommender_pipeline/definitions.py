"""The code location: every asset, job and resource in one Definitions."""

import os

import dagster as dg

from recommender_pipeline.assets import (
    changes,
    credentials,
    inventory,
    measurements,
    profiles,
    published,
    recommendations,
    reports,
)
from recommender_pipeline.assets.checks import ALL_CHECKS
from recommender_pipeline.command.console import one_line_console
from recommender_pipeline.orchestration.jobs import inventory_job, measurement_job, recommendation_job
from recommender_pipeline.orchestration.sensors import ALL_SCHEDULES, ALL_SENSORS
from recommender_pipeline.resources import build_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [credentials, inventory, measurements, profiles, recommendations, reports, changes, published]
    ),
    asset_checks=ALL_CHECKS,
    jobs=[inventory_job, measurement_job, recommendation_job],
    schedules=ALL_SCHEDULES,
    sensors=ALL_SENSORS,
    resources=build_resources(os.environ.get("RECOMMENDER_ENV_FILE", ".env")),
    executor=dg.multi_or_in_process_executor,
    # Runs that do not name a logger (the UI's, the schedule's) keep Dagster's console.
    loggers={"one_line_console": one_line_console},
)


# Zero-argument factories, so `dg.reconstructable` can rebuild each job in step processes.
def get_inventory_job() -> dg.JobDefinition:
    return defs.resolve_job_def(inventory_job.name)


def get_measurement_job() -> dg.JobDefinition:
    return defs.resolve_job_def(measurement_job.name)


def get_recommendation_job() -> dg.JobDefinition:
    return defs.resolve_job_def(recommendation_job.name)
