"""Confluent Cloud clients: the control plane (environments, clusters, API keys) and the Metrics API.

Both share one HTTP client: one `requests.Session`, timeouts on every call, capped exponential
backoff with full jitter on 429 and 5xx that honours `rateLimit-reset`, page following, and a
request count that assets report. Secrets only travel in the Authorization header.

An answer that looks transient is retried like a 5xx: a connection dropped mid-body, and a success
whose body is empty (where JSON is due), not JSON, or Confluent's error shape (`{"errors": [...]}`).
A Metrics API page is then checked against Confluent's published response shape before use
(`measuring/metrics_answers.py`); one that fails is not retried (see there why).
"""

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import dagster as dg
import requests
from pydantic import PrivateAttr

from recommender_pipeline.errors import ConfluentApiError, CredentialsError, InvalidAnswerError
from recommender_pipeline.measuring.metrics_answers import parse_page
from recommender_pipeline.resources.aws_secrets import AwsSecretsResource
from recommender_pipeline.resources.settings import SettingsResource

RETRYABLE = {429, 500, 502, 503, 504}
# Raised while the body is read, after the server began to answer: the connection dropped mid-body
# (a chunked body cut short, fewer bytes than Content-Length), or a compressed body that is corrupt.
CUT_SHORT = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
PAGE_SIZE = 100
METRICS_PAGE_LIMIT = 1000


@dataclass
class RestClient:
    """Basic-auth JSON calls with retries; `request_count` counts every HTTP request sent."""

    base_url: str
    key: str
    secret: str = field(repr=False)
    timeout_seconds: float = 30.0
    # Backoffs of 1, 2, 4 ... 60 s, each at least half its cap: 8 attempts outlast a whole 60 s
    # rate-limit window even when a 429 comes without its `rateLimit-reset` header.
    max_attempts: int = 8
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    request_count: int = 0
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def _wait(self, response: requests.Response | None, attempt: int) -> float:
        """Seconds before the next attempt: the rate limit's reset when given, else backoff.

        Confluent sends one `rateLimit-reset` per scope (requests joins them: "7, 30"); the
        longest one is the one that frees the call.
        """
        resets = (response.headers.get("rateLimit-reset") or "") if response is not None else ""
        try:
            reset = max(float(part) for part in resets.split(",") if part.strip())
        except ValueError:
            reset = None
        if reset is not None:
            return min(reset, self.max_backoff_seconds) + random.uniform(0, self.backoff_seconds)
        cap = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
        return cap / 2 + random.uniform(0, cap / 2)

    def request(
        self, method: str, path: str, *, expected: tuple[int, ...] = (200,), idempotent: bool = True, **kwargs
    ) -> requests.Response:
        """Sends a request, retrying what can be retried: 429, 5xx, a connection lost or cut
        mid-body, and an answer of an expected status whose body is not a usable one (see
        `_answer_problem`). A request that is not idempotent (a POST that creates something) is
        retried only on 429, which refuses it before any work: after a timeout, a 5xx or a
        broken answer it may have been carried out, so it fails at once and the
        ConfluentApiError says `ambiguous`. The GETs, the DELETEs and the Metrics API's query
        POST are idempotent. A request counts in `request_count` once an answer began to arrive."""
        what = f"{method} {path}"
        for attempt in range(self.max_attempts):
            response = None
            try:
                response = self.session.request(
                    method, self.base_url + path, auth=(self.key, self.secret), timeout=self.timeout_seconds, **kwargs
                )
            except CUT_SHORT as error:
                self.request_count += 1
                problem = f"the answer broke off mid-body ({type(error).__name__})"
                if not idempotent:
                    raise ConfluentApiError(f"{what} failed: {problem}", ambiguous=True) from None
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = f"{type(error).__name__}"
                if not idempotent:
                    raise ConfluentApiError(f"{what} failed with {problem}", ambiguous=True) from None
            else:
                self.request_count += 1
                problem = _answer_problem(response, method) if response.status_code in expected else None
                if response.status_code in expected and problem is None:
                    return response
                if problem is None:
                    problem = f"HTTP {response.status_code}: {_detail(response)}"
                if response.status_code not in RETRYABLE and response.status_code not in expected:
                    raise ConfluentApiError(f"{what} failed with {problem}", response.status_code)
                if not idempotent and response.status_code != 429:
                    raise ConfluentApiError(f"{what} failed with {problem}", response.status_code, ambiguous=True)
            if attempt + 1 < self.max_attempts:
                time.sleep(self._wait(response, attempt))
        raise ConfluentApiError(f"{what} failed after {self.max_attempts} attempts: {problem}")

    def pages(self, path: str, params: dict) -> Iterator[dict]:
        """Items of a control-plane list, following `metadata.next` until it is absent."""
        params = {**params, "page_size": PAGE_SIZE}
        while True:
            body = self.request("GET", path, params=params).json()
            yield from body.get("data", [])
            next_url = (body.get("metadata") or {}).get("next")
            token = parse_qs(urlparse(next_url).query).get("page_token") if next_url else None
            if not token:
                return
            params = {**params, "page_token": token[0]}


def _answer_problem(response: requests.Response, method: str) -> str | None:
    """What makes an answer of an expected status unusable, or None. Each of these is what a
    proxy, a gateway or a server in trouble sends, so it is retried like a 5xx: an empty body
    (only a 204 or a DELETE may have none), a body that is not JSON (an HTML error page, a body
    cut short), and a success carrying Confluent's error shape (`{"errors": [...]}`), which would
    otherwise read as an empty list of data."""
    status = response.status_code
    if not response.content:
        return None if status == 204 or method == "DELETE" else f"HTTP {status} with an empty body"
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {status} with a body that is not JSON: {response.text[:80]!r}"
    if 200 <= status < 300 and isinstance(body, dict) and body.get("errors"):
        return f"HTTP {status} with an error body: {_detail(response)}"
    return None


def _detail(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("detail") or e.get("title") or e) for e in errors) or response.text[:200]
    except ValueError:
        return response.text[:200]


class ConfluentCloudResource(dg.ConfigurableResource):
    """Environments, Kafka clusters and API keys of a Confluent Cloud organization.

    The Cloud API key comes from `CONFLUENT_CLOUD_CREDENTIAL`, or from AWS Secrets Manager
    (`CONFLUENT_CLOUD_API_SECRET_PATH`) when `USE_AWS_SECRETS_MANAGER` is true.
    """

    config: dg.ResourceDependency[SettingsResource]
    secrets: dg.ResourceDependency[AwsSecretsResource]
    backoff_seconds: float = 1.0
    _clients: dict = PrivateAttr(default_factory=dict)

    def _client(self, base_url: str) -> RestClient:
        if base_url not in self._clients:
            key, secret = self.cloud_credential()
            self._clients[base_url] = RestClient(
                base_url.rstrip("/"), key, secret, backoff_seconds=self.backoff_seconds
            )
        return self._clients[base_url]

    def cloud_credential(self) -> tuple[str, str]:
        settings = self.config.settings
        if settings.use_aws_secrets_manager and settings.confluent_cloud_api_secret_path:
            credential = self.secrets.get_json(
                settings.confluent_cloud_api_secret_path, "CONFLUENT_CLOUD_API_SECRET_PATH"
            )
            source = "the secret named by CONFLUENT_CLOUD_API_SECRET_PATH"
        else:
            credential, source = settings.confluent_cloud_credential, "CONFLUENT_CLOUD_CREDENTIAL"
        key, secret = credential.get("confluent_cloud_api_key"), credential.get("confluent_cloud_api_secret")
        if not key or not secret:
            raise CredentialsError(f"{source} lacks confluent_cloud_api_key or confluent_cloud_api_secret")
        return str(key), str(secret)

    @property
    def control_plane(self) -> RestClient:
        return self._client(self.config.settings.confluent_cloud_api_url)

    @property
    def metrics(self) -> RestClient:
        return self._client(self.config.settings.confluent_metrics_api_url)

    def request_count(self) -> int:
        return sum(client.request_count for client in self._clients.values())

    def environments(self) -> list[dict]:
        return list(self.control_plane.pages("/org/v2/environments", {}))

    def clusters(self, environment_id: str) -> list[dict]:
        return list(self.control_plane.pages("/cmk/v2/clusters", {"environment": environment_id}))

    def cluster_kinds(self) -> dict[str, str]:
        """Every cluster's type (`spec.config.kind`: Basic, Standard, Enterprise, Dedicated,
        Freight), which sets its partition cap and per-partition throughput guidelines."""
        return {
            cluster["id"]: ((cluster.get("spec") or {}).get("config") or {}).get("kind", "")
            for environment in self.environments()
            for cluster in self.clusters(environment["id"])
        }

    def create_api_key(self, owner_id: str, resource_id: str, display_name: str, description: str) -> tuple[str, str]:
        body = {
            "spec": {
                "display_name": display_name,
                "description": description,
                "owner": {"id": owner_id},
                "resource": {"id": resource_id},
            }
        }
        created = self.control_plane.request(
            "POST", "/iam/v2/api-keys", json=body, expected=(200, 201, 202), idempotent=False
        ).json()
        return created["id"], created["spec"]["secret"]

    def api_keys(self, owner_id: str, resource_id: str) -> list[dict]:
        """The keys of one owner for one resource (without their secrets)."""
        return list(
            self.control_plane.pages("/iam/v2/api-keys", {"spec.owner": owner_id, "spec.resource": resource_id})
        )

    def delete_api_key(self, key_id: str) -> None:
        self.control_plane.request("DELETE", f"/iam/v2/api-keys/{key_id}", expected=(204, 404))

    def query_metrics(self, body: dict) -> list[dict]:
        """Every data point of a Metrics API query, across pages (same body, `page_token` param),
        each page checked against Confluent's published response shape before use: a point is a
        dict with `timestamp`, a float `value` and each `group_by` label. A page of another shape,
        or a page token that comes back again (the pages would never end), raises
        InvalidAnswerError at once."""
        labels = body.get("group_by", [])
        points: list[dict] = []
        params: dict = {}
        restarted = False
        tokens: set[str] = set()
        while True:
            try:
                response = self.metrics.request("POST", "/v2/metrics/cloud/query", json=body, params=params)
            except ConfluentApiError as error:
                if error.status != 400 or not params or restarted:
                    raise
                # An expired page token: start again from the first page, once.
                points, params, restarted, tokens = [], {}, True, set()
                continue
            page = parse_page(response.json(), labels, len(tokens) + 1)
            points += [point.model_dump() for point in page.data]
            token = page.next_page_token
            if not token:
                return points
            if token in tokens:
                raise InvalidAnswerError(f"page {len(tokens) + 1} gives again the page token of an earlier page")
            tokens.add(token)
            params = {"page_token": token}
