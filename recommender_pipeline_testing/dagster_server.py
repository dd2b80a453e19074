"""`dagster dev` for tests: webserver, daemon and code server on 127.0.0.1, stopped cleanly.

    with dagster_dev(tmp_path / "home", {"TOPIC_FILTER": prefix}) as server:
        server.wait_for_daemon()
        data = server.graphql(LAUNCH_BACKFILL_MUTATION, {"params": {...}})
        expect_type(data["launchPartitionBackfill"], "LaunchBackfillSuccess")

`dagster dev` runs in its own session and process group (`start_new_session=True`). Stopping
sends SIGINT to the group, as Ctrl-C in a terminal would, waits up to 20 s, then SIGKILLs the
group. SIGTERM is no use: dagster maps it onto the SIGINT handler, and a process started from a
background job inherits an ignored SIGINT, so the helper un-ignores SIGINT for the child.
The server's output goes to `<dagster_home>/dagster-dev.log`; errors raised here quote its tail.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from recommender_pipeline.command.instance import instance_yaml as command_instance_yaml
from recommender_pipeline_testing.pipeline import CONFIG_VARIABLES, REPO, free_port

T = TypeVar("T")

LOG_NAME = "dagster-dev.log"
START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 20.0
REQUIRED_DAEMONS = ("BACKFILL", "SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR")
# Straight to 127.0.0.1, whatever http_proxy / HTTP_PROXY say.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

DAEMON_HEALTH_QUERY = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required lastHeartbeatErrors { message } } } }
}
"""

# The mutation the UI's "Launch backfill" (and a partition range's "Materialize") sends.
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""
WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message stack } }
      }
    }
    ... on PythonError { message stack }
  }
}
"""


class DagsterServerError(RuntimeError):
    """The server did not start, stopped answering, or a request failed; quotes the log's tail."""


class GraphQLError(DagsterServerError):
    """The GraphQL response carried `errors` (or no `data`)."""

    def __init__(self, message: str, errors: list | None = None, response: dict | None = None):
        super().__init__(message)
        self.errors = errors or []
        self.response = response


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Polls `condition` until it returns something truthy (returned), or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def expect_type(payload: dict, typename: str) -> dict:
    """A GraphQL union result (`launchPartitionBackfill`, `runOrError`, ...) of the expected
    `__typename` (the query must select `__typename`), else an error with its message."""
    actual = payload.get("__typename")
    if actual != typename:
        detail = payload.get("message") or json.dumps(payload)[:2000]
        raise GraphQLError(f"expected {typename}, got {actual}: {detail}", response=payload)
    return payload


@dataclass
class DagsterServer:
    """A running `dagster dev`: its base `url`, GraphQL access, and its log."""

    url: str
    process: subprocess.Popen
    log_path: Path
    dagster_home: Path
    request_timeout: float = 60.0

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as error:
            return f"(no log: {error})"

    def _fail(self, message: str) -> DagsterServerError:
        state = "running" if self.process.poll() is None else f"exited with {self.process.returncode}"
        return DagsterServerError(f"{message}\n--- dagster dev ({state}), tail of {self.log_path}:\n{self.log_tail()}")

    def graphql(self, query: str, variables: dict | None = None, timeout: float | None = None) -> dict:
        """POSTs a query or mutation to /graphql and returns its `data`.

        Raises GraphQLError with the server's `errors` (also for HTTP 4xx/5xx with a GraphQL
        body, which is how Dagster answers an invalid query), DagsterServerError when the
        server is gone or answers something that is not JSON. A refused connection (the
        request never reached the server) is retried briefly; nothing else is, so a mutation
        never runs twice. Union results that report errors as data (`PythonError`,
        `...NotFoundError`) are returned as they are: check them with `expect_type`.
        """
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with OPENER.open(request, timeout=timeout or self.request_timeout) as response:
                    status, raw = response.status, response.read()
                break
            except urllib.error.HTTPError as error:
                status, raw = error.code, error.read()
                break
            except urllib.error.URLError as error:
                refused = isinstance(error.reason, ConnectionRefusedError)
                if refused and self.process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise self._fail(f"POST {self.url}/graphql failed: {error.reason}") from error
            except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
                raise self._fail(f"POST {self.url}/graphql failed: {error!r}") from error
        try:
            payload = json.loads(raw)
        except ValueError:
            raise self._fail(f"POST /graphql answered HTTP {status} with non-JSON: {raw[:1000]!r}") from None
        if not isinstance(payload, dict):
            raise self._fail(f"POST /graphql answered HTTP {status} with {payload!r:.1000}")
        errors = payload.get("errors")
        if errors:
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            raise GraphQLError(f"GraphQL errors (HTTP {status}): {messages}", errors, payload)
        if status >= 400 or payload.get("data") is None:
            raise GraphQLError(f"GraphQL request failed with HTTP {status}: {json.dumps(payload)[:2000]}", [], payload)
        return payload["data"]

    def daemon_statuses(self) -> dict[str, bool]:
        data = self.graphql(DAEMON_HEALTH_QUERY)
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {status["daemonType"]: bool(status["healthy"]) for status in statuses}

    def wait_for_daemon(self, timeout: float = 60.0, daemons: tuple[str, ...] = REQUIRED_DAEMONS) -> dict[str, bool]:
        """Waits until the daemons that launch queued runs and backfills report healthy."""
        last: dict[str, bool] = {}

        def healthy() -> dict[str, bool] | None:
            nonlocal last
            if self.process.poll() is not None:
                raise self._fail("dagster dev exited while waiting for the daemon")
            last = self.daemon_statuses()
            return last if all(last.get(name) for name in daemons) else None

        try:
            return wait_until(healthy, timeout, f"healthy daemons {', '.join(daemons)}", interval=1.0)
        except TimeoutError as error:
            raise self._fail(f"{error}; last statuses: {last}") from None

    def wait_for_code_location(self, timeout: float = 60.0) -> list[str]:
        """Waits until every code location is loaded; raises with its error if one failed to load."""

        def loaded() -> list[str] | None:
            if self.process.poll() is not None:
                raise self._fail("dagster dev exited while loading the code location")
            workspace = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
            if workspace["__typename"] != "Workspace":
                raise self._fail(f"workspace error: {workspace.get('message')}")
            entries = workspace["locationEntries"]
            for entry in entries:
                location = entry.get("locationOrLoadError") or {}
                if location.get("__typename") == "PythonError":
                    raise self._fail(f"code location {entry['name']} failed to load: {location.get('message')}")
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                return [entry["name"] for entry in entries]
            return None

        try:
            return wait_until(loaded, timeout, "the code locations to load")
        except TimeoutError as error:
            raise self._fail(str(error)) from None


def server_env(dagster_home: Path, env: dict[str, str]) -> dict[str, str]:
    """os.environ without the recommender's configuration, plus `env`, with DAGSTER_HOME."""
    merged = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    merged.update(env)
    merged["DAGSTER_HOME"] = str(dagster_home)
    return merged


def _server_info(url: str) -> dict | None:
    try:
        with OPENER.open(f"{url}/server_info", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A child inherits an ignored SIGINT (e.g. pytest started with `&` by a script); dagster
    would then ignore SIGINT and SIGTERM alike. Un-ignore it while the child is spawned."""
    ignored = (
        threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    )
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGINT to the server's process group, then SIGKILL to the group after `grace` seconds."""
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGINT)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # The leader is gone (or stuck); give its children the rest of the grace period.
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@contextlib.contextmanager
def dagster_dev(
    dagster_home: Path,
    env: dict[str, str],
    port: int | None = None,
    workspace: Path = REPO / "workspace.yaml",
    start_timeout: float = START_TIMEOUT_SECONDS,
) -> Iterator[DagsterServer]:
    """Runs `dagster dev -w workspace.yaml` on 127.0.0.1 with DAGSTER_HOME=`dagster_home` (a
    dagster.yaml with telemetry off is written if missing) and the environment `server_env`
    builds; yields once /server_info answers and the code location has loaded."""
    dagster_home = Path(dagster_home).resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_yaml = dagster_home / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.write_text(command_instance_yaml(dagster_home))
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    log_path = dagster_home / LOG_NAME
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        with _sigint_not_ignored():
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=server_env(dagster_home, env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    server = DagsterServer(url=url, process=process, log_path=log_path, dagster_home=dagster_home)
    try:

        def answering() -> dict | None:
            if process.poll() is not None:
                raise server._fail(f"dagster dev exited with {process.returncode} before answering on {url}")
            return _server_info(url)

        try:
            wait_until(answering, start_timeout, f"{url}/server_info")
        except TimeoutError as error:
            raise server._fail(str(error)) from None
        server.wait_for_code_location(timeout=start_timeout)
        yield server
    finally:
        stop(process)
