"""The Metrics API's rate limit: a sliding window per client address and one per organization,
and Confluent's ``rateLimit-*`` headers on every ``/query`` answer.

Its own module because the limit is state of its own (hits per scope) with rules of its own,
whatever the query; ``metrics.py`` checks it before anything else.

Emulator assumptions and deviations (Confluent's behaviour where it is documented, else a choice):

- ``/query`` rate limit: two scopes, each a sliding window of ``rate_limit_window_seconds`` (60):
  per client address (``rate_limit_per_minute``) and per organization, all clients together
  (``org_rate_limit_per_minute``, default 10 x the former). Every ``/query`` response carries the
  ``rateLimit-limit``, ``rateLimit-remaining`` and ``rateLimit-reset`` (seconds from now) headers once
  per scope, client scope first: the header appears twice, and clients such as ``requests`` see
  the two values joined, e.g. ``rateLimit-remaining: 299, 2999``. Over either limit: 429 with
  ``Retry-After`` and ``{"errors":[{"status":"429","detail":"Too many requests ..."}]}``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from werkzeug.wrappers import Response


class SlidingWindow:
    def __init__(self, limit: int, window_seconds: float):
        self.limit, self.window = limit, window_seconds
        self.hits: deque[float] = deque()

    def prune(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()

    def headers(self, now: float) -> tuple[int, int, int]:
        reset = math.ceil(self.hits[0] + self.window - now) if self.hits else 0
        return self.limit, max(0, self.limit - len(self.hits)), max(reset, 0)


class RateLimitMixin:
    """Counts a ``/query`` request in both scopes. Part of ``ConfluentCloudEmulator``, whose
    ``__init__`` sets the state below."""

    rate_limit_per_minute: int
    rate_limit_window_seconds: float
    _lock: threading.RLock
    _client_windows: dict[str, SlidingWindow]
    _org_window: SlidingWindow

    def _rate_limit(self, client: str) -> tuple[list[tuple[int, int, int]], bool]:
        now = time.monotonic()
        with self._lock:
            window = self._client_windows.setdefault(
                client, SlidingWindow(self.rate_limit_per_minute, self.rate_limit_window_seconds)
            )
            scopes = [window, self._org_window]
            for scope in scopes:
                scope.prune(now)
            allowed = all(len(scope.hits) < scope.limit for scope in scopes)
            if allowed:
                for scope in scopes:
                    scope.hits.append(now)
            return [scope.headers(now) for scope in scopes], allowed


def with_rate_headers(response: Response, limits: list[tuple[int, int, int]]) -> Response:
    for limit, remaining, reset in limits:
        response.headers.add("rateLimit-limit", str(limit))
        response.headers.add("rateLimit-remaining", str(remaining))
        response.headers.add("rateLimit-reset", str(reset))
    return response
