"""Child processes that never outlive SKIN: tied to their parent's life, and stopped as a whole tree.

TorchServe runs as a launcher script, a Java frontend and Python workers; stopping only the process
we started leaves the other two serving. Streamlit runs in a session of its own (so that a Ctrl-C
reaches the supervisor first), which also shields it from the terminal's SIGHUP: the parent-death
signal ends it when the supervisor goes, however it goes.
"""
from __future__ import annotations

import ctypes
import signal
import subprocess
import sys

import psutil

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For Popen's ``preexec_fn``: SIGTERM this child when the process that started it dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants that are still running, parents first."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_tree(tree: list[psutil.Process], timeout: float = 15) -> None:
    """SIGTERM every process of ``tree``, and SIGKILL those still alive after ``timeout``."""
    for process in tree:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    _gone, alive = psutil.wait_procs(tree, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=timeout)


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a child we started, with everything it started, and reap it."""
    stop_tree(process_tree(process.pid), timeout)
    process.wait()
