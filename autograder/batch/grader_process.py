"""One submission graded in its own grading subprocess (`python -m autograder grade <a> - --json`).

A submission that crashes or hangs the grader must cost that student the points, with the reason,
and nothing else: so each is graded in a subprocess that leads its own process group, is killed
whole on timeout, and dies with the batch. `run_grader` gives back a `GraderRun`: the result read
back with the result contract's validation, or None and why; the subprocess's stderr is kept for
the instructor. `Children` lists the subprocesses now running, so that a signal to the batch ends
them too.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from autograder.pool import GraderPool, job_line, start_grader
from autograder.result import GradeResult, ResultError
from autograder.settings import Settings

# A command to run instead of `python -m autograder` for each submission (tests point it at a fake
# single grader); split like a shell command line, then given "grade <a> <nb> --json ...".
GRADER_ENV = "AUTOGRADER_GRADER_CMD"


def grader_command() -> list[str]:
    """`python -m autograder`, or the command in $AUTOGRADER_GRADER_CMD."""
    cmd = os.environ.get(GRADER_ENV)
    return shlex.split(cmd) if cmd else [sys.executable, "-m", "autograder"]


class Children:
    """The grading subprocesses now running, so that a signal to the batch ends them too."""

    def __init__(self):
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def add(self, proc):
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc):
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self):
        with self._lock:
            for proc in list(self._procs):
                _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a grading subprocess and everything it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class GraderRun:
    """What one grading subprocess gave: its result (None: it produced none, `reason` says why),
    its wall time and its stderr (kept for the instructor, never dropped)."""
    result: GradeResult | None
    reason: str
    seconds: float
    stderr: str = ""


MAX_STDERR = 20_000            # characters of a grading subprocess's stderr kept (its end)


def grader_env() -> dict:
    return dict(os.environ, AUTOGRADER_PARENT_PID=str(os.getpid()), PYTHONUNBUFFERED="1")


def pooled_command(assignment: str, *, root: str | None, settings: Settings | None = None, hide=()) -> list[str]:
    """A grader that starts its sandboxed kernel at once and then reads its one job from stdin."""
    cmd = grader_command() + ["grade", assignment, "-", "--json"]
    for folder in hide:
        cmd += ["--hide", str(folder)]
    if settings is not None:
        cmd += ["--settings", settings.to_json()]
    return cmd + (["--root", str(root)] if root is not None else [])


def run_grader(assignment: str, notebook: Path, executed: Path, *, root: str | None,
               timeout: float, children: Children | None = None, settings: Settings | None = None,
               pool: GraderPool | None = None) -> GraderRun:
    """Grade one notebook in a subprocess under `settings` (passed whole as --settings JSON): one of
    `pool` (pre-started with the same settings, see pool.py), or a new one.

    The subprocess leads its own process group (killed whole on timeout) and dies with the batch
    (AUTOGRADER_PARENT_PID, see cli.py). Its JSON is read back with the result contract's validation.
    """
    start = time.perf_counter()
    if pool is not None:
        proc = pool.take()
    else:
        proc = start_grader(pooled_command(assignment, root=root, settings=settings), grader_env())
    if children is not None:
        children.add(proc)
    try:
        out, err = proc.communicate(input=job_line(notebook, executed), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        _, err = proc.communicate()
        return GraderRun(None, f"the grader did not finish within {timeout:g} s", time.perf_counter() - start,
                         (err or "")[-MAX_STDERR:])
    finally:
        if children is not None:
            children.discard(proc)
        _kill_group(proc)              # leftovers of a finished grader (a stray kernel), if any
    seconds = time.perf_counter() - start
    err = (err or "")[-MAX_STDERR:]
    last_err = (err.strip().splitlines() or [""])[-1][:500].removeprefix("autograder: ")
    if proc.returncode != 0:
        return GraderRun(None, f"the grader failed (exit status {proc.returncode}): {last_err}".rstrip(": "),
                         seconds, err)
    try:
        result = GradeResult.from_json(out)
    except ResultError as e:
        if out.strip().startswith("{"):
            return GraderRun(None, f"the grader printed JSON that is not a grade result ({e})", seconds, err)
        return GraderRun(None, f"the grader printed no valid JSON: {last_err}".rstrip(": "), seconds, err)
    return GraderRun(result, "", seconds, err)
