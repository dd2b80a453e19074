"""The emulator's HTTP server: ``ConfluentCloudEmulator`` starts and stops it, logs every request,
authenticates it and routes it to the control plane or the Metrics API (or to an answer a test
injected).

Test and demo infrastructure, not product code. One HTTP server on 127.0.0.1 (a free port, a
background thread of the calling process) answers, in the shapes of Confluent's OpenAPI
specifications (vendored in recommender_pipeline_testing/confluent_openapi/, ccloud-sdk-go-v2 @
b5d63ec4):

- ``GET /org/v2/environments[/{id}]``                 environments, paged (page_size, page_token, metadata.next)
- ``GET /cmk/v2/clusters[/{id}]?environment=``        Kafka clusters, paged; the bootstrap endpoint is the
                                                        local broker's SASL_PLAINTEXT/SCRAM-SHA-256 listener
- ``POST|GET /iam/v2/api-keys``, ``GET|DELETE /iam/v2/api-keys/{id}``
                                                        API keys; a Kafka API key is a real SCRAM-SHA-256 user
                                                        on the broker (user = key id, password = secret)
- ``POST /v2/metrics/cloud/query``                     Metrics API v2, numbers computed from the records
                                                        really stored on the broker

Every endpoint takes HTTP Basic auth with a Cloud API key (``cloud_keys``: key id -> secret);
anything else answers 401 in Confluent's error shape. Usage::

    with ConfluentCloudEmulator(
        "127.0.0.1:19092",  # PLAINTEXT: the emulator reads records and manages SCRAM users here
        "127.0.0.1:19094",  # SASL_PLAINTEXT + SCRAM-SHA-256 (scripts/kafka-local: port + 2)
        environments=[{"id": "env-1", "display_name": "prod", "clusters": [
            {"id": "lkc-1", "display_name": "orders", "topic_prefix": "orders."},
        ]}],
        cloud_keys={"CLOUDKEY": "cloud-secret"},
        principals={"sa-1"},
    ) as emulator:
        requests.get(f"{emulator.url}/org/v2/environments", auth=("CLOUDKEY", "cloud-secret"))

The emulator's assumptions and deviations from Confluent are listed where they are implemented:
``control_plane.py``, ``metrics.py``, ``rate_limit.py`` and ``traffic.py``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from confluent_kafka.admin import AdminClient
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from recommender_pipeline_testing.ccloud_emulator.control_plane import ControlPlaneMixin
from recommender_pipeline_testing.ccloud_emulator.faults import injected_response
from recommender_pipeline_testing.ccloud_emulator.metrics import MetricsApiMixin, PageToken
from recommender_pipeline_testing.ccloud_emulator.rate_limit import SlidingWindow
from recommender_pipeline_testing.ccloud_emulator.responses import HttpError, error_response, now_iso
from recommender_pipeline_testing.ccloud_emulator.traffic import BrokerTraffic


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: tests read `ConfluentCloudEmulator.requests` instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ConfluentCloudEmulator(ControlPlaneMixin, MetricsApiMixin):
    """The Confluent Cloud control plane, API keys and Metrics API v2 over the local broker.

    ``environments``: ``[{"id", "display_name", "clusters": [{"id", "display_name", "topic_prefix"?,
    "kind"? (Basic, Standard (default), Enterprise, Dedicated, Freight), "cloud"?, "region"?}]}]``.

    State tests read or set: ``url``; ``requests`` (every request: method, path, query, body,
    auth_key, and the answer's status and the time); ``api_keys`` (live keys by id: id, secret,
    owner, resource, created_at, created_by_cloud_key, display_name, description);
    ``deleted_keys``; ``key_propagation_seconds`` and ``unusable_clusters`` (read when a key is
    created); ``scram_users`` (SCRAM users created and not yet deleted) and ``scram_errors``;
    ``records_read`` (records the Metrics API read from the broker: the cache keeps it flat).
    Controls: ``fail_next(path_prefix, [(status, payload, headers), ...])`` (payload: a JSON body,
    text, None, a rewrite of the real answer or a body cut mid-stream: see ``faults.py``),
    ``lose_next_answer(method, path)`` (done, answered 504), ``hold_next_answer(method, path,
    seconds)`` (done, answered late) and ``expire_page_tokens()``. Options beyond the brief:
    ``egress_ratio`` (sent_* = received_* x it),
    ``org_rate_limit_per_minute`` and ``rate_limit_window_seconds`` (the second rate-limit scope
    and the window length, so tests need not wait a minute), ``hot_partition_factor``.
    """

    def __init__(
        self,
        kafka_bootstrap: str,
        sasl_bootstrap: str,
        *,
        environments: list[dict],
        cloud_keys: dict[str, str],
        principals: set[str],
        rate_limit_per_minute: int = 300,
        page_size_max: int = 100,
        egress_ratio: float = 1.0,
        org_rate_limit_per_minute: int | None = None,
        rate_limit_window_seconds: float = 60.0,
        hot_partition_factor: float = 2.0,
    ):
        self.kafka_bootstrap = kafka_bootstrap
        self.sasl_bootstrap = sasl_bootstrap
        self.environments = environments
        self.cloud_keys = dict(cloud_keys)
        self.principals = set(principals)
        self.rate_limit_per_minute = rate_limit_per_minute
        self.org_rate_limit_per_minute = org_rate_limit_per_minute or 10 * rate_limit_per_minute
        self.rate_limit_window_seconds = rate_limit_window_seconds
        self.page_size_max = page_size_max
        self.egress_ratio = egress_ratio
        self.hot_partition_factor = hot_partition_factor
        self.clusters: dict[str, dict] = {}
        self.cluster_environment: dict[str, str] = {}
        for environment in environments:
            for cluster in environment.get("clusters", []):
                self.clusters[cluster["id"]] = cluster
                self.cluster_environment[cluster["id"]] = environment["id"]

        self.url = ""
        self.requests: list[dict] = []
        self.api_keys: dict[str, dict] = {}
        self.deleted_keys: list[str] = []
        self.key_propagation_seconds = 0.0
        self.unusable_clusters: set[str] = set()
        self.scram_users: set[str] = set()  # SCRAM users this emulator created and has not deleted
        self.scram_errors: dict[str, str] = {}

        self._created_at = now_iso()
        self._lock = threading.RLock()
        self._injections: list[tuple[str, deque]] = []
        self._lost_answers: list[tuple[str, str, int]] = []
        self._held_answers: list[tuple[str, str, float]] = []
        self._list_tokens: dict[str, tuple[str, int]] = {}
        self._query_tokens: dict[str, PageToken] = {}
        self._client_windows: dict[str, SlidingWindow] = {}
        self._org_window = SlidingWindow(self.org_rate_limit_per_minute, rate_limit_window_seconds)
        self._timers: dict[str, threading.Timer] = {}
        self._admin: AdminClient | None = None
        self._traffic: BrokerTraffic | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle

    def start(self) -> ConfluentCloudEmulator:
        if self._server is not None:
            return self
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="ccloud-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            users = sorted(self.scram_users)
        for user in users:
            self._delete_scram(user)
        if self._traffic is not None:
            with self._traffic.lock:
                self._traffic.close()

    def __enter__(self) -> ConfluentCloudEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----- test controls

    def fail_next(self, path_prefix: str, responses: list[tuple[int, Any, dict[str, str]]]) -> None:
        """The next len(responses) requests whose path starts with path_prefix get these answers
        instead: a dict or list as JSON, a str as text/html, None as an empty body, a callable as
        the real answer's JSON rewritten by it, ``CutBody`` as a body that breaks off (``faults.py``).
        A rewritten or cut answer is computed and logged as usual, with the injected status."""
        with self._lock:
            self._injections.append((path_prefix, deque(responses)))

    def expire_page_tokens(self) -> None:
        """Every outstanding /query page token becomes invalid (400 on use)."""
        with self._lock:
            for token in self._query_tokens.values():
                token.valid = False

    @property
    def records_read(self) -> int:
        """Records the Metrics API has read from the broker so far (the cache makes re-reads rare)."""
        return self._traffic.records_read if self._traffic else 0

    # ----- plumbing

    @property
    def admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient({"bootstrap.servers": self.kafka_bootstrap})
            return self._admin

    def _wsgi(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self._handle(request)(environ, start_response)

    def _handle(self, request: Request) -> Response:
        raw = request.get_data(cache=True)
        body: Any = None
        body_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = True
        auth = request.authorization
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.args.to_dict(),
            "body": body,
            "auth_key": auth.username if auth is not None and auth.type == "basic" else None,
            "status": None,
            "time": time.time(),
        }
        with self._lock:
            self.requests.append(entry)
        metrics = request.path.startswith("/v2/metrics/")

        def real() -> Response:
            try:
                if metrics:
                    answer = self._metrics(request, body, body_error)
                else:
                    answer = self._control_plane(request, body, body_error)
                return self._delivered(request, answer)
            except HttpError as error:
                return error_response(error, metrics)

        try:
            injected = self._take_injection(request.path)
            response = real() if injected is None else injected_response(*injected, real)
        except Exception as error:  # an emulator bug or a broker failure: answer, never hang the client
            response = error_response(HttpError(500, f"emulator error: {type(error).__name__}: {error}"), metrics)
        response.headers.setdefault("X-Request-Id", uuid.uuid4().hex)
        entry["status"] = response.status_code
        return response

    def lose_next_answer(self, method: str, path: str, status: int = 504) -> None:
        """The next such request is carried out, but its answer is replaced by `status`, as a
        gateway timing out after the work was done would."""
        with self._lock:
            self._lost_answers.append((method, path, status))

    def hold_next_answer(self, method: str, path: str, seconds: float) -> None:
        """The next such request is carried out at once, but its answer leaves only `seconds`
        later: a slow network, during which the client may be interrupted."""
        with self._lock:
            self._held_answers.append((method, path, seconds))

    def _take_fault(self, faults: list[tuple[str, str, Any]], request: Request) -> Any | None:
        """Removes and returns the argument of the first fault set for this request, if any."""
        with self._lock:
            for index, (method, path, argument) in enumerate(faults):
                if (method, path) == (request.method, request.path):
                    del faults[index]
                    return argument
        return None

    def _delivered(self, request: Request, response: Response) -> Response:
        """The answer as it reaches the client: late if held, replaced if lost."""
        held_seconds = self._take_fault(self._held_answers, request)
        if held_seconds is not None:
            time.sleep(held_seconds)
        lost_status = self._take_fault(self._lost_answers, request)
        if lost_status is not None:
            return error_response(HttpError(lost_status, "Gateway Timeout"), False)
        return response

    def _take_injection(self, path: str) -> tuple[int, Any, dict[str, str]] | None:
        """Removes and returns the first answer injected for this path, if any."""
        with self._lock:
            for prefix, queue in self._injections:
                if path.startswith(prefix) and queue:
                    injected = queue.popleft()
                    break
            else:
                return None
            self._injections = [(p, q) for p, q in self._injections if q]
        return injected

    def _authenticate(self, request: Request, metrics: bool) -> str:
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username:
            raise HttpError(401, "Valid authentication credentials must be provided")
        with self._lock:
            if self.cloud_keys.get(auth.username) == auth.password:
                return auth.username
            kafka_key = self.api_keys.get(auth.username)
        if kafka_key is not None and kafka_key["secret"] == auth.password:
            api = "the Metrics API" if metrics else "Confluent Cloud APIs"
            raise HttpError(
                401, f"Cluster (Kafka) API keys cannot be used with {api}; use a Cloud API key", "invalid_key_type"
            )
        raise HttpError(401, "Valid authentication credentials must be provided")
