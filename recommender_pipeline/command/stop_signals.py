"""Ctrl-C and SIGTERM for the one command, which stops after the current run whatever that run
made of the signal.

Dagster replaces the SIGINT handler while it executes a run. A signal that lands inside a step
ends the run as interrupted, but one that lands while Dagster defers interrupts (between steps,
while it writes its event log) can be swallowed, or end the run as an ordinary failure, and the
command would go on to the next day. Python's wakeup fd is written at the C level for every
signal that has a Python handler, whichever handler that is, so it keeps the request whatever
Dagster did with it.
"""

from __future__ import annotations

import os
import signal
import threading
from types import TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _terminate_as_interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM kills Python without unwinding, which would leave provisioned API keys behind;
    re-sent as SIGINT it stops the command the way Ctrl-C does, through every `finally`."""
    signal.raise_signal(signal.SIGINT)


class StopSignals:
    """Within the block, SIGTERM acts as Ctrl-C, and `requested()` says whether either arrived.
    Outside the main thread (where Python takes no signal) `requested()` is always False."""

    def __init__(self) -> None:
        self._pipe: tuple[int, int] | None = None
        self._previous_fd = -1
        self._previous_sigterm: object = None
        self._requested = False

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._pipe = os.pipe()
            for fd in self._pipe:
                os.set_blocking(fd, False)
            self._previous_fd = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
            self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        return self

    def requested(self) -> bool:
        if self._pipe is not None and not self._requested:
            try:
                received = os.read(self._pipe[0], 4096)
            except BlockingIOError:  # nothing arrived
                received = b""
            self._requested = any(number in STOP_SIGNALS for number in received)
        return self._requested

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._pipe is not None:
            signal.set_wakeup_fd(self._previous_fd)
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
