"""Topic-days measured so far per cluster, printed while a measurement run goes on.

`dg.execute_job` returns only when the run ends, and a day of 2,000 topics can take minutes. Each
chunk materializes its topic-days as it stores them, so a thread beside the run reads the run's
new materialization events from the instance every few seconds and prints a line when a
cluster's count moved: one line per chunk finished, whatever the executor (in process, step
processes, Celery). The run is found by a tag the command gives it.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping

import dagster as dg

from recommender_pipeline.assets.partitions import split_day_topic_key, split_topic_key

PROGRESS_TAG = "recommender/progress"
POLL_SECONDS = 2.0


def progress_line(day: str, done: Mapping[str, int], totals: Mapping[str, int], clusters: list[str]) -> str:
    """`measuring <day>: <cluster> <done>/<total> topic-days, ...` for `clusters`."""
    parts = [f"{cluster} {done.get(cluster, 0)}/{totals.get(cluster, 0)} topic-days" for cluster in clusters]
    return f"measuring {day}: {', '.join(parts)}"


class MeasurementProgress:
    """Use as a context manager around the run; give the run `tags` to be found by. Without
    `emit`, it watches nothing (a caller that wants no progress lines)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        day: str,
        totals: Mapping[str, int],
        emit: Callable[[str], None] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.instance, self.day, self.totals = instance, day, dict(totals)
        self.emit = emit
        self.poll_seconds = poll_seconds
        self.tags = {PROGRESS_TAG: uuid.uuid4().hex}
        self.done: Counter[str] = Counter()
        self._run_id: str | None = None
        self._cursor: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="measurement-progress", daemon=True)

    def __enter__(self) -> MeasurementProgress:
        if self.emit is not None:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.emit is None:
            return
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):  # never hide how the run ended behind a progress error
            self.poll()  # what the last chunks stored after the thread's last look

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # progress is a courtesy: never let it disturb the run
                continue

    def poll(self) -> None:
        """Reads the run's materializations since the last poll; emits a line for the clusters whose count moved."""
        if self._run_id is None:
            records = self.instance.get_run_records(filters=dg.RunsFilter(tags=self.tags), limit=1)
            if not records:
                return
            self._run_id = records[0].dagster_run.run_id
        moved: Counter[str] = Counter()
        while True:
            page = self.instance.get_records_for_run(
                self._run_id, cursor=self._cursor, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000
            )
            self._cursor = page.cursor
            for record in page.records:
                event = record.event_log_entry.dagster_event
                if event is None or event.asset_key != dg.AssetKey("topic_measurements") or not event.partition:
                    continue
                if _settled(event):  # measured by an earlier run, re-reported: not progress
                    continue
                moved[split_topic_key(split_day_topic_key(event.partition)[1])[0]] += 1
            if not page.has_more:
                break
        if moved and self.emit is not None:
            self.done.update(moved)
            self.emit(progress_line(self.day, self.done, self.totals, sorted(moved)))


def _settled(event: dg.DagsterEvent) -> bool:
    """Whether a materialization re-reports a topic-day an earlier run settled (`topic_days.py`)."""
    data = event.step_materialization_data
    settled = data.materialization.metadata.get("settled") if data else None
    return bool(settled is not None and getattr(settled, "value", settled))
