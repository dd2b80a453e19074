"""Processes the one command starts end when it dies, whatever kills it.

`kill -9`, the OOM killer or a pod past its grace period give the command no chance to stop its
children: the multiprocess executor's forkserver, its step processes and their resource tracker
would be left blocked for ever, holding the command's stdout (so `recommender-pipeline | tee`
or a cron capture never ends). The command names itself in `COMMAND_PID` before it starts any;
every process that imports this package with that variable set, and every process forked from
one (the forkserver forks the step processes), watches that pid and exits when it is gone.
"""

from __future__ import annotations

import os
import threading
import time

COMMAND_PID = "RECOMMENDER_COMMAND_PID"
POLL_SECONDS = 1.0


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _watch(pid: int) -> None:
    while alive(pid):
        time.sleep(POLL_SECONDS)
    os._exit(1)  # the command is gone: nothing this process does can reach anyone any more


def watch_the_command() -> None:
    """In a child of the command (the variable names another pid), exits when the command dies."""
    text = os.environ.get(COMMAND_PID, "")
    if not text.isdecimal() or int(text) == os.getpid():
        return
    threading.Thread(target=_watch, args=(int(text),), name="recommender-orphan-watch", daemon=True).start()


def mark_as_the_command() -> None:
    """Called by the command before it starts any process."""
    os.environ[COMMAND_PID] = str(os.getpid())


watch_the_command()  # a process started by the command (the forkserver imports this package)
os.register_at_fork(after_in_child=watch_the_command)  # threads do not survive fork: start one anew
