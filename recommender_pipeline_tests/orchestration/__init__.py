"""Jobs, schedules, sensors, executors, event batches, deployments."""
