"""Measuring a topic-day: attribution, estimation, hours, untidy logs, the Metrics API answers."""
