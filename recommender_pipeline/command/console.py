"""The one command's console: a line per Dagster log record, never a framework traceback.

Dagster's colored console prints a failed step's whole stack, twice (the step's failure and the
run's), which buries the one line a person needs; the command ends with that line itself
(`cli._cause`). Runs launched from the UI, the schedule or a sensor keep Dagster's console: only
the command's run config names this logger, and the full error stays in each run's event log.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import dagster as dg

METADATA = "dagster_meta"  # where Dagster's log handler puts a record's run, step and event


class OneLine(logging.Formatter):
    """`<time> <LEVEL> <job> <step>: <message's first line>`, with a failed step's own error."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, METADATA, None) or {}
        message = str(meta.get("orig_message") or record.getMessage())
        event = meta.get("dagster_event")
        failed = event is not None and event.event_type == dg.DagsterEventType.STEP_FAILURE
        if failed and event.step_failure_data.error is not None:
            error = event.step_failure_data.error
            while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
                error = error.cause
            detail = error.message.strip()
            if error.cls_name == "Failure":  # raised by the op on purpose: its words, not the class
                detail = detail.split("Failure: ", 1)[-1]
            message = f"{message.strip()} {detail}"
        first = message.strip().splitlines()[0] if message.strip() else ""
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        where = " ".join(part for part in (meta.get("job_name"), meta.get("step_key")) if part)
        return f"{when} {record.levelname} {where}: {first}"


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="The one command's console: one line per record, a failed step's error without its traceback.",
)
def one_line_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("recommender_pipeline.command", level=init_context.logger_config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    logger.addHandler(handler)
    return logger


RUN_CONFIG = {"loggers": {"one_line_console": {"config": {"log_level": "INFO"}}}}
