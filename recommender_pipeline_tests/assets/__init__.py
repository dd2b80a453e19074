"""The assets, their planning, history and checks, through Dagster."""
