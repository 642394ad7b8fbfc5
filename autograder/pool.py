"""Graders started before their submission is known: the batch's pool.

Starting a grader is most of the fixed cost of grading one notebook: the grader process imports
torch, pytest and Jupyter's client, opens its sandbox and starts a kernel there, which imports torch
and the course library. A `GraderPool` does that ahead of time: each pooled process runs

    python -m autograder grade <assignment> - --json --hide <submissions> --hide <out> ...

which starts everything, then waits on stdin for its one job, a JSON line
`{"notebook": ..., "executed": ...}`, grades that notebook, prints the result and exits. So while
one submission is graded, the next one's grader and kernel are already starting.

Each pooled grader, and the kernel in it, serves exactly ONE submission and is then gone: no state
of one student's kernel can reach another's. A grader that gets end-of-file instead of a job (the
batch is done, or stopping) closes its kernel and exits.

The pool keeps `spare` graders starting or waiting, never more than the submissions still to be
handed out (`expect`), so the last submissions start no grader that will not be used.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path


class GraderPool:
    """Pre-started grader processes.

    Inputs: command (argv of a grader that reads its job from stdin, see the module docstring),
    env (its environment), spare (how many to keep ahead), on_start/on_end (called with each
    process when it starts / when the pool lets go of an unused one: the batch's kill list).
    """

    def __init__(self, command: list[str], *, env: dict, spare: int, on_start=None, on_end=None):
        self.command, self.env, self.spare = list(command), dict(env), max(0, int(spare))
        self._on_start, self._on_end = on_start, on_end
        self._idle: deque[subprocess.Popen] = deque()
        self._wanted = 0
        self._lock = threading.Lock()
        self.started = 0

    def expect(self, jobs: int) -> None:
        """`jobs` submissions will be handed out (take); start graders for the first of them now."""
        with self._lock:
            self._wanted = max(0, int(jobs))
            self._fill()

    def take(self) -> subprocess.Popen:
        """A grader for one submission (started earlier if one is waiting); send it its job with
        `job_line(...)` on stdin."""
        with self._lock:
            self._wanted = max(0, self._wanted - 1)
            proc = self._idle.popleft() if self._idle else self._spawn()
            self._fill()
        return proc

    def close(self, timeout: float = 30.0) -> None:
        """End the graders nobody took: end-of-file on stdin (they close their kernels), then kill."""
        with self._lock:
            idle, self._idle, self._wanted = list(self._idle), deque(), 0
        for proc in idle:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in idle:
            try:
                proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            finally:
                if self._on_end:
                    self._on_end(proc)

    def _fill(self) -> None:
        while len(self._idle) < min(self.spare, self._wanted):
            self._idle.append(self._spawn())

    def _spawn(self) -> subprocess.Popen:
        proc = start_grader(self.command, self.env)
        self.started += 1
        if self._on_start:
            self._on_start(proc)
        return proc


def start_grader(command: list[str], env: dict):
    """Start a grader process: forked from the pre-imported server when the command is this
    interpreter's `python -m autograder ...` (forkgrader.py), else a plain subprocess. Either way
    it leads its own process group (killed whole on timeout, with its kernel) and has text pipes.

    $AUTOGRADER_NO_FORKSERVER=1 forces plain subprocesses (to compare, or to rule the server out)."""
    from autograder import forkgrader
    if _forked(command):
        return forkgrader.spawn(command[3:], env)
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def _forked(command: list[str]) -> bool:
    """Whether start_grader forks `command` from the pre-imported server."""
    from autograder import forkgrader
    return (command[:3] == [sys.executable, "-m", "autograder"] and forkgrader.available()
            and not os.environ.get("AUTOGRADER_NO_FORKSERVER"))


def prestart(command: list[str]) -> None:
    """Begin what start_grader(command, ...) will need (the fork server's imports) without waiting."""
    if _forked(command):
        from autograder import forkgrader
        forkgrader.prestart()


def job_line(notebook: Path, executed: Path | None) -> str:
    """The one line a pooled grader reads: which notebook to grade, where the executed copy goes."""
    return json.dumps({"notebook": str(notebook), "executed": str(executed) if executed else None}) + "\n"


def read_job(stream) -> tuple[Path, Path | None] | None:
    """The pooled grader's side of job_line: (notebook, executed) or None at end-of-file."""
    line = stream.readline()
    if not line.strip():
        return None
    job = json.loads(line)
    return Path(job["notebook"]), (Path(job["executed"]) if job.get("executed") else None)
