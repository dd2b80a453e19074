"""Answers a test injects with ``ConfluentCloudEmulator.fail_next``: what one injected answer may
be, and how it is put on the wire.

Test infrastructure, not product code. Its own module because an injected answer is neither the
control plane's nor the Metrics API's: it replaces or bends whichever answer was due.

An injected answer is ``(status, payload, headers)``; ``payload`` is one of

- a dict or a list: sent as JSON (``{"errors": [...]}``, ``[]``, ``{"data": None}`` ...);
- a str: sent as text/html (a proxy's page, a body cut short but complete on the wire);
- ``None``: an empty body;
- a callable: the answer the emulator would have given, computed as usual from the broker's
  records, its JSON passed through the callable (``points(...)`` builds one that rewrites the
  points of a Metrics answer: negated values, a label removed, duplicated points ...);
- ``CutBody(...)``: a body that breaks off: sent chunked, and the connection closed after
  ``keep`` bytes without the final chunk, as a connection lost mid-answer (the client's HTTP
  library raises, requests' ``ChunkedEncodingError``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response

Rewrite = Callable[[Any], Any]


@dataclass(frozen=True)
class CutBody:
    """A body that breaks off after `keep` bytes: `payload` as JSON, or by default (None) the
    answer the emulator would have given."""

    keep: int = 16
    payload: Any = None


class _Dropped(ConnectionAbortedError):
    """Raised mid-body: werkzeug's server takes a ConnectionError for a client gone away, so it
    closes the connection without writing the final chunk or logging a traceback."""


def cut_response(body: bytes, status: int, keep: int) -> Response:
    """Headers, then the first `keep` bytes as one chunk, then a closed connection."""

    def broken() -> Iterator[bytes]:
        yield body[:keep]
        raise _Dropped("injected: the connection dropped mid-body")

    # No Content-Length: werkzeug's HTTP/1.1 server then sends the body chunked.
    return Response(broken(), status=status, mimetype="application/json")


def payload_response(payload: Any, status: int) -> Response:
    """A dict or list as JSON, a str as text/html, None as an empty body."""
    if isinstance(payload, str):
        return Response(payload, status=status, mimetype="text/html")
    if payload is None:
        return Response(b"", status=status)
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def points(change: Callable[[int, dict], dict | list[dict] | None]) -> Rewrite:
    """A rewrite of a FLAT Metrics answer's points: `change(index, point)` returns the point to
    send instead (a copy: the point given is the real one), a list of points to send in its place
    (duplicates, an extra point), or None to leave it out. The rest of the answer is kept."""

    def rewrite(answer: Any) -> Any:
        out: list[dict] = []
        for index, point in enumerate(answer["data"]):
            changed = change(index, dict(point))
            if isinstance(changed, list):
                out += changed
            elif changed is not None:
                out.append(changed)
        return {**answer, "data": out}

    return rewrite


def injected_response(
    status: int, payload: Any, headers: dict[str, str] | None, real: Callable[[], Response]
) -> Response:
    """The injected answer on the wire; `real()` computes the answer that was due, and is called
    only for a rewrite or a cut of it (so an injected 503 costs no broker read)."""
    if isinstance(payload, CutBody):
        body = real().get_data() if payload.payload is None else json.dumps(payload.payload).encode()
        response = cut_response(body, status, payload.keep)
    elif callable(payload):
        answer = real()
        response = Response(
            json.dumps(payload(json.loads(answer.get_data()))), status=status, mimetype="application/json"
        )
        for name, value in answer.headers.items():  # the rate limit's headers, the request id
            if name.lower() not in ("content-type", "content-length"):
                response.headers.add(name, value)  # add: a header may come once per rate-limit scope
    else:
        response = payload_response(payload, status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
