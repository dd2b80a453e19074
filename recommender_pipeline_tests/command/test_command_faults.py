"""The one command as a platform team's machines treat it, on the real broker: two first runs at
once on a new DAGSTER_HOME, and `kill -9` in the middle of measuring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from recommender_pipeline.command.instance import COMMAND_TAG
from recommender_pipeline.command.orphans import COMMAND_PID
from recommender_pipeline.days import day_start_ms, utc_today
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
        RECORDS_PER_CHUNK="1",  # step processes, even for this small day: they are what must end
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


def test_wrong_credentials_tls_and_dns_are_said_at_once_with_the_clients_reason(
    kafka_bootstrap, sasl_bootstrap, tmp_path
):
    """A wrong SASL password, SASL against a PLAINTEXT listener, TLS against it and a name that does
    not resolve: each cluster's own line, with librdkafka's reason, within seconds, no secret."""
    secret = "not-the-password-4f1c"
    bad = {"sasl.username": "nobody", "sasl.password": secret, "sasl.mechanism": "SCRAM-SHA-256"}
    clusters = [
        {
            "kafka_cluster_id": "wrongpass",
            "bootstrap.servers": sasl_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            **bad,
        },
        {
            "kafka_cluster_id": "saslplain",
            "bootstrap.servers": kafka_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            **bad,
        },
        {"kafka_cluster_id": "tlsplain", "bootstrap.servers": kafka_bootstrap, "security.protocol": "SSL"},
        {"kafka_cluster_id": "nowhere", "bootstrap.servers": "no-such-host.invalid:9092"},
    ]
    env = command_env(kafka_bootstrap, tmp_path, KAFKA_CREDENTIALS=json.dumps(clusters), SAMPLING_DAYS="1")
    started = time.monotonic()
    result = subprocess.run(COMMAND, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert secret not in result.stdout + result.stderr
    lines = result.stdout + result.stderr
    assert "cluster wrongpass: sasl_plaintext://" in lines and "invalid credentials" in lines
    assert "cluster saslplain: sasl_plaintext://" in lines and "handshake failed" in lines
    assert "cluster tlsplain: ssl://" in lines and "SSL handshake failed" in lines
    assert "cluster nowhere: no-such-host.invalid:9092/bootstrap: Failed to resolve" in lines
    assert took < 40, f"the command took {took:.0f}s"  # about 1 s per cluster, not 38-41 s


def test_waiting_for_a_locked_store_says_so_at_once_and_sigterm_ends_it_with_130(kafka_bootstrap, tmp_path):
    store = tmp_path / "measurements.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(store)!r}); print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        env = command_env(kafka_bootstrap, tmp_path, MEASUREMENT_STORE_PATH=str(store))
        command = subprocess.Popen(
            COMMAND, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert command.stderr is not None
        started = time.monotonic()
        first = command.stderr.readline()
        assert f"measurement store {store} is locked by another process: waiting for it" in first
        assert time.monotonic() - started < 20  # at once: the settings and the first open, not the 60 s wait
        command.send_signal(signal.SIGTERM)
        _, rest = command.communicate(timeout=30)
        assert command.returncode == 130
        assert "interrupted:" in rest and "Traceback" not in rest
    finally:
        holder.kill()


def test_a_full_reports_folder_is_one_line_of_its_cause_and_leaves_no_part_of_a_report_set(
    kafka_bootstrap, prefix, tmp_path
):
    """REPORTS_DIR on a 16 KiB filesystem: the HTML report does not fit. The command ends with one
    line naming the folder, the file and the cause, prints no traceback, and keeps no CSV of the set."""
    reports = tmp_path / "reports"
    reports.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(reports)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        for index in range(3):
            create_topic(kafka_bootstrap, f"{prefix}.t{index}", 1)
        env = command_env(kafka_bootstrap, tmp_path, TOPIC_FILTER=prefix, SAMPLING_DAYS="1")
        result = subprocess.run(COMMAND, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("FAILED: recommendation_job (") and "step reports: REPORTS_DIR" in last
        assert "No space left on device writing" in last and "nothing of this report set was kept" in last
        assert list(reports.glob("*-report.csv")) == [] and list(reports.glob(".*.tmp")) == []
    finally:
        subprocess.run(["umount", str(reports)], check=False)
