"""What every emulated API answers with: JSON bodies, Confluent's two error shapes (the control
plane's, with ``title`` and ``source``, and the Metrics API's, without) and ISO timestamps.

Its own module so that the server, the control plane and the Metrics API build their answers
alike without importing one another.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Response


class HttpError(Exception):
    """An error answer in one of Confluent's two error shapes."""

    def __init__(self, status: int, detail: str, code: str = "", source: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.code, self.source = status, detail, code, source


TITLES = {
    400: "Bad Request",
    401: "Authentication Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
CODES = {
    400: "invalid_request",
    401: "user_unauthenticated",
    403: "user_unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
    500: "internal_error",
}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso(int(time.time() * 1000))


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def error_response(error: HttpError, metrics: bool) -> Response:
    """The error's answer: the control plane's shape, or the Metrics API's (no title, no source)."""
    item: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "status": str(error.status),
        "code": error.code or CODES.get(error.status, "error"),
        "detail": error.detail,
    }
    if not metrics:
        item["title"] = TITLES.get(error.status, "Error")
        if error.source:
            item["source"] = error.source
    response = json_response({"errors": [item]}, error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = (
            'Basic realm="Confluent Cloud", error="invalid_key", error_description="The API Key is invalid"'
        )
    return response
