"""How Dagster runs the work: jobs, schedules, sensors, executors and event recording."""
