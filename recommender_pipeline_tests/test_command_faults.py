"""The one command as a platform team's machines treat it, on the real broker: two first runs at
once on a new DAGSTER_HOME, and `kill -9` in the middle of measuring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg

from recommender_pipeline.command_instance import COMMAND_TAG
from recommender_pipeline.measuring.days import day_start_ms, utc_today
from recommender_pipeline.orphans import COMMAND_PID
from recommender_pipeline_testing.pipeline import command_env
from recommender_pipeline_testing.workloads import Record, create_topic, produce

COMMAND = [str(Path(sys.executable).parent / "recommender-pipeline")]


def test_two_first_commands_at_once_share_a_new_dagster_home(kafka_bootstrap, prefix, tmp_path):
    """Two cron entries, one per topic filter, start together on a DAGSTER_HOME that does not exist
    yet: one creates the instance while the other waits, and both run."""
    for name in ("a", "b"):
        create_topic(kafka_bootstrap, f"{prefix}.{name}", 1)
    commands = [
        subprocess.Popen(
            COMMAND,
            cwd=tmp_path,
            env=command_env(
                kafka_bootstrap,
                tmp_path,
                TOPIC_FILTER=f"{prefix}.{name}",
                SAMPLING_DAYS="1",
                MEASUREMENT_STORE_PATH=str(tmp_path / f"{name}.duckdb"),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [command.communicate(timeout=300) for command in commands]
    for command, (_, err) in zip(commands, outputs, strict=True):
        assert command.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    with _home(tmp_path) as instance:
        runs = instance.get_runs()
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert len(runs) == 2 * 3  # each: inventory, one measuring day, recommendations


def _home(tmp_path: Path) -> dg.DagsterInstance:
    os.environ["DAGSTER_HOME"] = str(tmp_path / "home")
    try:
        return dg.DagsterInstance.get()
    finally:
        del os.environ["DAGSTER_HOME"]


def processes_of(command_pid: int) -> list[int]:
    """Every process that the command started (they carry its pid in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdecimal() or int(entry.name) == command_pid:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{COMMAND_PID}={command_pid}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_a_command_killed_mid_measure_leaves_no_process_and_its_run_is_failed_by_the_next(
    kafka_bootstrap, prefix, tmp_path
):
    day = utc_today() - timedelta(days=1)
    for index in range(2):
        topic = f"{prefix}.big{index}"
        create_topic(kafka_bootstrap, topic, 2)
        produce(
            kafka_bootstrap,
            topic,
            (Record(day_start_ms(day) + i * 150, b"v" * 200, partition=i % 2) for i in range(400_000)),
        )
    env = command_env(
        kafka_bootstrap,
        tmp_path,
        TOPIC_FILTER=prefix,
        SAMPLING_DAYS="2",
        SAMPLING_BATCH_SIZE="",
        MAX_WORKERS_PER_CLUSTER="2",
    )
    command = subprocess.Popen(COMMAND, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert command.stdout is not None
    deadline = time.monotonic() + 180
    seen = b""
    while b"STEP_WORKER_STARTED" not in seen or b"measure_topic_chunk" not in seen:
        line = command.stdout.readline()
        assert line and time.monotonic() < deadline, f"the command never started measuring: {seen[-2000:]!r}"
        seen += line
    children = processes_of(command.pid)
    assert children, "no step process running"
    os.kill(command.pid, signal.SIGKILL)
    killed = time.monotonic()
    rest = command.stdout.read()  # returns at EOF: once every process holding the pipe has ended
    closed_after = time.monotonic() - killed
    command.wait(10)
    assert closed_after < 15, f"the pipe stayed open {closed_after:.0f}s after the kill: {rest[-500:]!r}"
    assert processes_of(command.pid) == []

    with _home(tmp_path) as instance:
        started = [run for run in instance.get_runs() if run.status == dg.DagsterRunStatus.STARTED]
        assert [run.tags.get(COMMAND_TAG, "").rsplit("/", 1)[-1] for run in started] == [str(command.pid)]
    after = subprocess.run(
        COMMAND, cwd=tmp_path, env={**env, "SAMPLING_BATCH_SIZE": "10000"}, capture_output=True, text=True, timeout=600
    )
    assert "marked 1 run(s) failed: the command that ran them died" in after.stderr
    with _home(tmp_path) as instance:
        assert instance.get_run_by_id(started[0].run_id).status == dg.DagsterRunStatus.FAILURE
