"""A local emulator of the Confluent Cloud APIs the pipeline calls, backed by the real local broker.

Test and demo infrastructure, not product code: ``ConfluentCloudEmulator`` is one HTTP server on
127.0.0.1 that answers in the shapes of Confluent's OpenAPI specifications.

- ``server.py``: ``ConfluentCloudEmulator`` (start/stop, request log, authentication, routing,
  test controls) and the endpoint list and usage.
- ``control_plane.py``: environments, clusters and API keys (real SCRAM users on the broker),
  with their paging and errors.
- ``metrics.py``: the Metrics API query engine (parsing, intervals, granularity, filters,
  grouping, ordering, paging).
- ``rate_limit.py``: the Metrics API's rate limit and its ``rateLimit-*`` headers.
- ``traffic.py``: each topic's bytes and records per minute and partition, read from the broker.
- ``responses.py``: JSON answers, Confluent's two error shapes and timestamps, shared by all.
- ``faults.py``: answers a test injects (``fail_next``): a body, text, an empty body, the real
  answer rewritten (``points(...)``), or a body that breaks off mid-stream (``CutBody``).
"""

from recommender_pipeline_testing.ccloud_emulator.faults import CutBody, points
from recommender_pipeline_testing.ccloud_emulator.server import ConfluentCloudEmulator

__all__ = ["ConfluentCloudEmulator", "CutBody", "points"]
