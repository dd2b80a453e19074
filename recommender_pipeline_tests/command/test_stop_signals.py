"""Ctrl-C and SIGTERM reach the command even when the handler of the moment swallows them: the
signals are real (raised in this process), and Dagster's own deferring handler is the swallower."""

from __future__ import annotations

import signal

import pytest
from dagster._utils.interrupts import capture_interrupts

from recommender_pipeline.command.stop_signals import StopSignals


def test_a_ctrl_c_that_dagster_defers_and_never_raises_is_still_a_stop_request():
    with StopSignals() as stop:
        assert not stop.requested()
        with capture_interrupts():  # what Dagster installs between checkpoints: it only notes the signal
            signal.raise_signal(signal.SIGINT)
        # Leaving the block, Dagster forgets what it noted; the run would have gone on.
        assert stop.requested()
        assert stop.requested()  # stays requested once read


def test_sigterm_is_ctrl_c_inside_the_block_and_its_handler_is_restored_after():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        assert stop.requested()
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.set_wakeup_fd(-1) == -1  # the wakeup fd is released too


def test_other_signals_are_not_a_stop_request():
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda number, _frame: received.append(number))
    try:
        with StopSignals() as stop:
            signal.raise_signal(signal.SIGUSR1)
            assert received == [signal.SIGUSR1] and not stop.requested()
    finally:
        signal.signal(signal.SIGUSR1, previous)
