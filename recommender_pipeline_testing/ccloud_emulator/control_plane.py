"""The control plane: organization environments (``/org/v2``), Kafka clusters (``/cmk/v2``) and
API keys (``/iam/v2``), with Confluent's list paging (page_size, page_token, metadata.next) and
errors. A Kafka API key is a real SCRAM-SHA-256 user on the broker (user = key id, password =
secret).

Its own module because these endpoints answer from the emulator's configuration and its own
state (the keys it issued), never from the broker's records.

Emulator assumptions and deviations (Confluent's behaviour where it is documented, else a choice):

- A Kafka API key authenticates on the broker after ``key_propagation_seconds`` (a timer thread),
  never for a cluster in ``unusable_clusters``. ``stop()`` deletes the SCRAM users it created.
- POST /iam/v2/api-keys with an unknown owner or cluster answers 400 (the spec lists no 404 for
  it); GET/DELETE of an unknown key 404. ``cmk`` with an unknown environment answers 403 (the
  spec lists 400/401/403 for the list). Page sizes above ``page_size_max`` (100) answer 400.
- ``http_endpoint`` of a cluster points at this server, which serves no Kafka REST API.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import threading
from typing import Any
from urllib.parse import urlencode

from confluent_kafka.admin import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from werkzeug.wrappers import Request, Response

from recommender_pipeline_testing.ccloud_emulator.responses import HttpError, json_response, now_iso

ORGANIZATION_ID = "4ee0a2fa-0d5b-4e2c-9bb4-6b5c2d2d0001"
CLUSTER_KINDS = {"Basic", "Standard", "Enterprise", "Dedicated", "Freight"}
KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class ControlPlaneMixin:
    """The ``/org/v2``, ``/cmk/v2`` and ``/iam/v2`` endpoints. Part of ``ConfluentCloudEmulator``,
    whose ``__init__`` sets the state below and which provides ``admin`` and ``_authenticate``."""

    url: str
    environments: list[dict]
    clusters: dict[str, dict]
    cluster_environment: dict[str, str]
    cloud_keys: dict[str, str]
    principals: set[str]
    page_size_max: int
    api_keys: dict[str, dict]
    deleted_keys: list[str]
    key_propagation_seconds: float
    unusable_clusters: set[str]
    scram_users: set[str]
    scram_errors: dict[str, str]
    _created_at: str
    _lock: threading.RLock
    _list_tokens: dict[str, tuple[str, int]]
    _timers: dict[str, threading.Timer]

    def _control_plane(self, request: Request, body: Any, body_error: bool) -> Response:
        path, method = request.path.rstrip("/") or "/", request.method
        routes: list[tuple[str, dict[str, Any]]] = [
            (r"/org/v2/environments", {"GET": self._list_environments}),
            (r"/org/v2/environments/(?P<id>[^/]+)", {"GET": self._get_environment}),
            (r"/cmk/v2/clusters", {"GET": self._list_clusters}),
            (r"/cmk/v2/clusters/(?P<id>[^/]+)", {"GET": self._get_cluster}),
            (r"/iam/v2/api-keys", {"GET": self._list_keys, "POST": self._create_key}),
            (r"/iam/v2/api-keys/(?P<id>[^/]+)", {"GET": self._get_key, "DELETE": self._delete_key}),
        ]
        for pattern, handlers in routes:
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            if method not in handlers:
                raise HttpError(405, f"{method} is not allowed on {path}")
            cloud_key = self._authenticate(request, metrics=False)
            if body_error:
                raise HttpError(400, "The request body is not valid JSON", "invalid_json")
            return handlers[method](request, body, cloud_key, **match.groupdict())
        raise HttpError(404, f"No such resource: {path}")

    def _page(self, request: Request, items: list[dict], filters: dict[str, str]) -> tuple[list[dict], dict]:
        """One page of a collection and its ListMeta (first, next, total_size)."""
        size_text = request.args.get("page_size", str(min(10, self.page_size_max)))  # the spec's default: 10
        try:
            page_size = int(size_text)
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= self.page_size_max:
            raise HttpError(
                400,
                f"page_size must be an integer from 1 to {self.page_size_max}",
                "invalid_page_size",
                {"parameter": "page_size"},
            )
        signature = json.dumps([request.path, filters], sort_keys=True)
        offset = 0
        token = request.args.get("page_token")
        if token is not None:
            with self._lock:
                stored = self._list_tokens.get(token)
            if stored is None or stored[0] != signature:
                raise HttpError(400, "Invalid page_token", "invalid_page_token", {"parameter": "page_token"})
            offset = stored[1]
        page = items[offset : offset + page_size]
        base = f"{self.url}{request.path}"
        metadata: dict[str, Any] = {
            "first": f"{base}?{urlencode({**filters, 'page_size': page_size})}",
            "total_size": len(items),
        }
        if offset + page_size < len(items):
            next_token = secrets.token_urlsafe(15)
            with self._lock:
                self._list_tokens[next_token] = (signature, offset + page_size)
            metadata["next"] = f"{base}?{urlencode({**filters, 'page_size': page_size, 'page_token': next_token})}"
        return page, metadata

    def _environment_json(self, environment: dict) -> dict:
        env_id = environment["id"]
        return {
            "api_version": "org/v2",
            "kind": "Environment",
            "id": env_id,
            "metadata": {
                "self": f"{self.url}/org/v2/environments/{env_id}",
                "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}",
                "created_at": self._created_at,
                "updated_at": self._created_at,
            },
            "display_name": environment.get("display_name", env_id),
            "stream_governance_config": {"package": "ESSENTIALS"},
        }

    def _environment_ref(self, env_id: str) -> dict:
        return {
            "id": env_id,
            "related": f"{self.url}/org/v2/environments/{env_id}",
            "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}",
        }

    def _cluster_json(self, cluster: dict) -> dict:
        cluster_id = cluster["id"]
        env_id = self.cluster_environment[cluster_id]
        kind = cluster.get("kind", "Standard")
        if kind not in CLUSTER_KINDS:
            kind = "Standard"
        config: dict[str, Any] = {"kind": kind}
        status: dict[str, Any] = {"phase": "PROVISIONED"}
        if kind == "Dedicated":
            config["cku"] = status["cku"] = int(cluster.get("cku", 1))
        bootstrap = f"SASL_PLAINTEXT://{self.sasl_bootstrap}"
        http_endpoint = f"{self.url}/kafka/{cluster_id}"
        return {
            "api_version": "cmk/v2",
            "kind": "Cluster",
            "id": cluster_id,
            "metadata": {
                "self": f"{self.url}/cmk/v2/clusters/{cluster_id}",
                "resource_name": (
                    f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}"
                    f"/cloud-cluster={cluster_id}"
                ),
                "created_at": self._created_at,
                "updated_at": self._created_at,
            },
            "spec": {
                "display_name": cluster.get("display_name", cluster_id),
                "availability": "SINGLE_ZONE",
                "cloud": cluster.get("cloud", "AWS"),
                "region": cluster.get("region", "us-east-1"),
                "config": config,
                "kafka_bootstrap_endpoint": bootstrap,
                "http_endpoint": http_endpoint,
                "api_endpoint": http_endpoint,
                "endpoints": {
                    "PUBLIC": {
                        "kafka_bootstrap_endpoint": bootstrap,
                        "http_endpoint": http_endpoint,
                        "connection_type": "PUBLIC",
                    }
                },
                "environment": self._environment_ref(env_id),
            },
            "status": status,
        }

    def _list_environments(self, request: Request, body: Any, cloud_key: str) -> Response:
        items = [self._environment_json(e) for e in self.environments]
        page, metadata = self._page(request, items, {})
        return json_response({"api_version": "org/v2", "kind": "EnvironmentList", "metadata": metadata, "data": page})

    def _get_environment(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        for environment in self.environments:
            if environment["id"] == id:
                return json_response(self._environment_json(environment))
        raise HttpError(404, f"Environment '{id}' not found")

    def _environment_param(self, request: Request) -> dict:
        env_id = request.args.get("environment")
        if not env_id:
            raise HttpError(
                400, "The 'environment' query parameter is required", "invalid_filter", {"parameter": "environment"}
            )
        for environment in self.environments:
            if environment["id"] == env_id:
                return environment
        raise HttpError(403, f"Forbidden Access: environment '{env_id}' does not exist or is not accessible")

    def _list_clusters(self, request: Request, body: Any, cloud_key: str) -> Response:
        environment = self._environment_param(request)
        items = [self._cluster_json(c) for c in environment.get("clusters", [])]
        page, metadata = self._page(request, items, {"environment": environment["id"]})
        return json_response({"api_version": "cmk/v2", "kind": "ClusterList", "metadata": metadata, "data": page})

    def _get_cluster(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        environment = self._environment_param(request)
        for cluster in environment.get("clusters", []):
            if cluster["id"] == id:
                return json_response(self._cluster_json(cluster))
        raise HttpError(404, f"Cluster '{id}' not found in environment '{environment['id']}'")

    # ----- API keys

    def _owner_ref(self, principal: str) -> dict:
        service_account = principal.startswith("sa-")
        collection = "service-accounts" if service_account else "users"
        kind = "ServiceAccount" if service_account else "User"
        return {
            "id": principal,
            "related": f"{self.url}/iam/v2/{collection}/{principal}",
            "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/{kind.lower()}={principal}",
            "api_version": "iam/v2",
            "kind": kind,
        }

    def _cluster_ref(self, cluster_id: str) -> dict:
        env_id = self.cluster_environment[cluster_id]
        return {
            "id": cluster_id,
            "environment": env_id,
            "related": f"{self.url}/cmk/v2/clusters/{cluster_id}",
            "resource_name": (
                f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}/cloud-cluster={cluster_id}"
            ),
            "api_version": "cmk/v2",
            "kind": "Cluster",
        }

    def _key_json(self, key: dict, with_secret: bool = False) -> dict:
        spec: dict[str, Any] = {
            "display_name": key["display_name"],
            "description": key["description"],
            "owner": self._owner_ref(key["owner"]),
            "resource": self._cluster_ref(key["resource"]),
            "resources": [self._cluster_ref(key["resource"])],
        }
        if with_secret:
            spec = {"secret": key["secret"], **spec}
        return {
            "api_version": "iam/v2",
            "kind": "ApiKey",
            "id": key["id"],
            "metadata": {
                "self": f"{self.url}/iam/v2/api-keys/{key['id']}",
                "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/api-key={key['id']}",
                "created_at": key["created_at"],
                "updated_at": key["created_at"],
            },
            "spec": spec,
        }

    def _create_key(self, request: Request, body: Any, cloud_key: str) -> Response:
        spec = body.get("spec") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            raise HttpError(
                400, "The request body must be an object with a 'spec'", "invalid_body", {"pointer": "/spec"}
            )
        owner = spec.get("owner")
        owner_id = owner.get("id") if isinstance(owner, dict) else None
        if not isinstance(owner_id, str) or owner_id not in self.principals:
            raise HttpError(
                400,
                f"Owner {owner_id!r} is not a known user or service account",
                "invalid_owner",
                {"pointer": "/spec/owner/id"},
            )
        resource = spec.get("resource")
        resource_id = resource.get("id") if isinstance(resource, dict) else None
        if not isinstance(resource_id, str) or resource_id not in self.clusters:
            raise HttpError(
                400,
                f"Resource {resource_id!r} is not a Kafka cluster",
                "invalid_resource",
                {"pointer": "/spec/resource/id"},
            )
        for name in ("display_name", "description"):
            if name in spec and not isinstance(spec[name], str):
                raise HttpError(400, f"spec.{name} must be a string", "invalid_body", {"pointer": f"/spec/{name}"})
        with self._lock:
            key_id = "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
            while key_id in self.api_keys or key_id in self.cloud_keys:
                key_id = "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
            key = {
                "id": key_id,
                "secret": "".join(secrets.choice(SECRET_ALPHABET) for _ in range(64)),
                "owner": owner_id,
                "resource": resource_id,
                "created_at": now_iso(),
                "created_by_cloud_key": cloud_key,
                "display_name": spec.get("display_name", ""),
                "description": spec.get("description", ""),
            }
            self.api_keys[key_id] = key
            delay = self.key_propagation_seconds
            usable = resource_id not in self.unusable_clusters
            if usable and delay > 0:
                timer = threading.Timer(delay, self._propagate, args=(key_id,))
                timer.daemon = True
                self._timers[key_id] = timer
                timer.start()
        if usable and delay <= 0:
            self._propagate(key_id)
        response = json_response(self._key_json(key, with_secret=True), 202)
        response.headers["Location"] = f"{self.url}/iam/v2/api-keys/{key_id}"
        return response

    def _propagate(self, key_id: str) -> None:
        """Creates the key's SCRAM-SHA-256 user on the broker, if the key still exists."""
        with self._lock:
            self._timers.pop(key_id, None)
            key = self.api_keys.get(key_id)
            if key is None:
                return
            secret = key["secret"]
        try:
            futures = self.admin.alter_user_scram_credentials(
                [
                    UserScramCredentialUpsertion(
                        key_id, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), secret.encode()
                    )
                ],
                request_timeout=30,
            )
            futures[key_id].result()
        except Exception as error:
            with self._lock:
                self.scram_errors[key_id] = str(error)
            return
        with self._lock:
            self.scram_users.add(key_id)
            deleted_meanwhile = key_id not in self.api_keys
        if deleted_meanwhile:
            self._delete_scram(key_id)

    def _delete_scram(self, user: str) -> None:
        try:
            futures = self.admin.alter_user_scram_credentials(
                [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)], request_timeout=30
            )
            futures[user].result()
        except Exception as error:
            with self._lock:
                self.scram_errors[user] = str(error)
        with self._lock:
            self.scram_users.discard(user)

    def _list_keys(self, request: Request, body: Any, cloud_key: str) -> Response:
        filters = {name: request.args[name] for name in ("spec.owner", "spec.resource") if name in request.args}
        with self._lock:
            keys = list(self.api_keys.values())
        keys = [
            k
            for k in keys
            if k["owner"] == filters.get("spec.owner", k["owner"])
            and k["resource"] == filters.get("spec.resource", k["resource"])
        ]
        page, metadata = self._page(request, [self._key_json(k) for k in keys], filters)
        return json_response({"api_version": "iam/v2", "kind": "ApiKeyList", "metadata": metadata, "data": page})

    def _get_key(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        with self._lock:
            key = self.api_keys.get(id)
        if key is None:
            raise HttpError(404, f"API key '{id}' not found")
        return json_response(self._key_json(key))

    def _delete_key(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        with self._lock:
            key = self.api_keys.pop(id, None)
            if key is None:
                raise HttpError(404, f"API key '{id}' not found")
            self.deleted_keys.append(id)
            timer = self._timers.pop(id, None)
            if timer is not None:
                timer.cancel()
            created = id in self.scram_users
        if created:
            self._delete_scram(id)
        return Response(status=204)
