"""The one command's checks before any work: each problem is one line and exit 2, or 1 for the
store, with no traceback and no secret. No broker: these fail before any cluster is reached."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from recommender_pipeline.assets.partitions import HISTORY_DAYS, history_start
from recommender_pipeline.command.cli import check_before_running
from recommender_pipeline.days import utc_today
from recommender_pipeline.errors import StoreError
from recommender_pipeline.resources import build_resources
from recommender_pipeline_testing.pipeline import command_env

TODAY = utc_today()


@pytest.fixture
def settings(configured_settings):
    return configured_settings


def test_a_future_day_is_refused_not_stored_as_not_measurable(settings):
    problem = check_before_running(settings(), TODAY + timedelta(days=1), 1)
    assert problem is not None and "is in the future" in problem


def test_a_window_before_the_rolling_history_is_refused_with_what_to_change(settings):
    assert check_before_running(settings(SAMPLING_DAYS=7), TODAY, 1) is None
    # The window's first day is HISTORY_DAYS + 1 days back: one day before the history starts.
    problem = check_before_running(settings(SAMPLING_DAYS=HISTORY_DAYS + 2), TODAY, 1)
    assert problem is not None and history_start() in problem and "SAMPLING_DAYS" in problem
    assert check_before_running(settings(SAMPLING_DAYS=HISTORY_DAYS + 1), TODAY, 1) is None
    assert "--backfill-days" in check_before_running(settings(SAMPLING_DAYS=7), TODAY, HISTORY_DAYS)


def test_no_cluster_to_analyse_and_an_unwritable_reports_dir_are_named(settings, tmp_path):
    assert "KAFKA_CREDENTIALS: no Kafka cluster" in check_before_running(settings(KAFKA_CREDENTIALS="[]"), TODAY, 1)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    problem = check_before_running(settings(REPORTS_DIR=str(blocked / "reports")), TODAY, 1)
    assert problem is not None and problem.startswith("REPORTS_DIR:")


def test_a_corrupt_store_file_is_one_line_naming_the_file(configure, tmp_path):
    path = tmp_path / "measurements.duckdb"
    path.write_bytes(b"this is not a DuckDB database" * 100)
    configure(MEASUREMENT_STORE_PATH=str(path))
    with pytest.raises(StoreError) as raised:
        build_resources(str(tmp_path / "absent.env"))["store"].check()
    message = str(raised.value)
    assert str(path) in message and "\n" not in message and "MEASUREMENT_STORE_PATH" in message


def test_an_unreachable_postgresql_store_is_named_without_its_password(configure, tmp_path):
    configure(MEASUREMENT_STORE_URL="postgresql://pipeline:hunter2@127.0.0.1:1/measurements?connect_timeout=2")
    with pytest.raises(StoreError) as raised:
        build_resources(str(tmp_path / "absent.env"))["store"].check()
    message = str(raised.value)
    assert "127.0.0.1:1" in message and "hunter2" not in message and "\n" not in message


def test_the_command_exits_2_or_1_with_one_line_before_any_work(bootstrap_address, tmp_path):
    env = command_env(bootstrap_address, tmp_path)
    command = [sys.executable, "-m", "recommender_pipeline.command.cli"]

    def run(*args: str, **variables: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *args], env={**env, **variables}, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    future = run("--day", (TODAY + timedelta(days=3)).isoformat())
    assert (future.returncode, future.stderr.count("\n")) == (2, 1) and "in the future" in future.stderr
    empty = run(KAFKA_CREDENTIALS="[]")
    assert (empty.returncode, empty.stderr.count("\n")) == (2, 1)
    Path(env["MEASUREMENT_STORE_PATH"]).write_bytes(b"garbage" * 500)
    corrupt = run()
    assert (corrupt.returncode, corrupt.stderr.count("\n")) == (1, 1), corrupt.stderr[-2000:]
    assert corrupt.stderr.startswith("FAILED: measurement store ")
    assert not (tmp_path / "home").exists()  # nothing ran


def test_a_misspelt_variable_is_warned_about_and_a_latin1_env_is_one_line_with_exit_2(bootstrap_address, tmp_path):
    """The command's first lines: a warning naming the misspelt variable (then the run goes on: here
    it stops at the future --day), and for a `.env` that is not UTF-8, one line naming it, exit 2."""
    env = command_env(bootstrap_address, tmp_path)
    command = [
        sys.executable,
        "-m",
        "recommender_pipeline.command.cli",
        "--day",
        (TODAY + timedelta(days=3)).isoformat(),
    ]
    (tmp_path / ".env").write_text("SAMPLNG_DAYS=2\n")
    typo = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert typo.returncode == 2 and typo.stderr.splitlines()[0] == (
        "warning: SAMPLNG_DAYS in .env is not a variable this pipeline reads; did you mean SAMPLING_DAYS?"
    )
    (tmp_path / ".env").write_bytes("# café\nSAMPLING_DAYS=2\n".encode("latin-1"))
    latin1 = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (latin1.returncode, latin1.stderr) == (
        2,
        ".env: not UTF-8 at line 1, column 6 (byte offset 5); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)\n",
    )
