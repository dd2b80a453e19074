"""The one command, `recommender-pipeline`: its runs, console, instance and signals."""
