"""Where a batch keeps its results: <out>/<student>.json and <out>/executed/<student>.ipynb.

One writer: only the batch's main thread stores, so files and the gradebook never race. The JSON is
written last and atomically (tmp file, then os.replace): from then on a rerun treats the submission
as graded, and a batch killed at any point and run again neither loses nor double-counts anything.
Grading works in <out>/.tmp/, removed at the end of a run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from autograder.batch.submissions import Submission
from autograder.exporters import Entry
from autograder.exporters.base import write_atomic
from autograder.result import GradeResult, ResultError


class ResultStore:
    """The stored results under `out` (see the module docstring)."""

    def __init__(self, out: Path):
        self.out = out

    def previous(self, student: str) -> GradeResult | None:
        """The result stored for `student`, or None (none yet, or unreadable: graded again)."""
        try:
            return GradeResult.read(self.out / f"{student}.json")
        except (OSError, ResultError):
            return None

    def tmp_dir(self) -> Path:
        """<out>/.tmp, made if needed: where a grader's private copy and executed notebook go."""
        tmp_dir = self.out / ".tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tmp_dir

    def store(self, sub: Submission, outcome: str, result: GradeResult, executed: Path | None) -> None:
        if outcome != "skipped":
            dest = self.out / "executed" / f"{sub.student}.ipynb"
            if executed is not None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(executed, dest)
            else:
                dest.unlink(missing_ok=True)
            # Last and atomic: from here on a rerun treats this submission as graded.
            write_atomic(self.out / f"{sub.student}.json", result.to_json(indent=1) + "\n")

    def entry(self, sub: Submission, result: GradeResult) -> Entry:
        """One stored result as the exporters see it."""
        executed = self.out / "executed" / f"{sub.student}.ipynb"
        return Entry(sub.student, result, sub.folder, sub.path, executed if executed.is_file() else None)

    def clean_tmp(self) -> None:
        tmp = self.out / ".tmp"
        if tmp.is_dir():
            for p in tmp.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            try:
                tmp.rmdir()
            except OSError:
                pass
