"""One student's grade in a batch: kept if nothing changed, else graded by a grading subprocess,
else 0 points with the reason. Runs in the batch's worker threads, one submission per call.

Restartable: a submission whose notebook (sha256) and suite/release (fingerprint) are unchanged
since its JSON was written is not graded again (unless forced). A student with no notebook, a
refused one, a grader that produced no result, or a failure of the batch's own code gets the
`placeholder`: every test of the suite at 0 points with the reason, never a missing row. Every
result is `stamp`ed with what it was graded from (student, notebook sha256, suite fingerprint).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import traceback
import uuid
from pathlib import Path

from autograder.batch.grader_process import MAX_STDERR, Children, run_grader
from autograder.batch.report import utc_now
from autograder.batch.store import ResultStore
from autograder.batch.submissions import Submission, read_submission
from autograder.batch.suite import suite_fingerprint
from autograder.pool import GraderPool
from autograder.result import GradeResult
from autograder.settings import Settings


def zero_result(assignment: str, reason: str, template: list[dict]) -> GradeResult:
    """A result with 0 points: every test of `template` failed with `reason` as the message."""
    return GradeResult.zero(assignment, reason, template).trimmed()


class SubmissionGrader:
    """Grades the submissions of one batch, one per call of `grade_one_safely`.

    Inputs: assignment, store (the stored results, read to keep unchanged grades), settings (handed
    whole to each grading subprocess), root, force (grade even unchanged submissions),
    placeholder_tests (assignment -> the suite's tests, for 0-point results), children (the batch's
    kill list), stopping (set by the batch: queued submissions start no grader). `pool` is set by
    the batch while it runs: the pre-started graders.
    """

    def __init__(self, assignment, store: ResultStore, settings: Settings, *, root, force: bool,
                 placeholder_tests, children: Children, stopping: threading.Event):
        self.a = assignment
        self.name = assignment.name
        self.store = store
        self.settings = settings
        self.root = root
        self.timeout = settings.submission_timeout
        self.force = force
        self.fingerprint = suite_fingerprint(assignment)
        self._placeholder = placeholder_tests
        self._template: list[dict] | None = None
        self.children = children
        self.stopping = stopping
        self.pool: GraderPool | None = None

    # --- results that need no grader ----------------------------------------------------------
    @property
    def template(self) -> list[dict]:
        """The suite's tests (collected once, in the main thread: pytest redirects stdout/stderr)."""
        if self._template is None:
            self._template = list(self._placeholder(self.a)) if self._placeholder else []
        return self._template

    def placeholder(self, reason: str) -> GradeResult:
        """0 points for every test of the suite, with `reason` (no submission, grader failure)."""
        return zero_result(self.name, reason, self.template)

    def stamp(self, result: GradeResult, sub: Submission, sha: str | None, status: str,
              seconds: float) -> GradeResult:
        return result.stamped(student=sub.student, submission=str(sub.path) if sub.path else None,
                              submission_sha256=sha, suite_fingerprint=self.fingerprint,
                              graded_at=utc_now(), status=status, grader_seconds=round(seconds, 3))

    # --- one submission (runs in a worker thread) ---------------------------------------------
    def unchanged(self, sub: Submission, sha: str) -> GradeResult | None:
        """The stored result of `sub` if its notebook (sha256) and the suite are unchanged (not forced)."""
        prev = self.store.previous(sub.student)
        if (not self.force and prev is not None and prev.submission_sha256 == sha
                and prev.suite_fingerprint == self.fingerprint):
            return prev
        return None

    def to_grade(self, subs: list[Submission]) -> int:
        """How many of `subs` will start a grader (for the pool: no grader is started in vain)."""
        count = 0
        for sub in subs:
            try:
                sha = hashlib.sha256(read_submission(sub.path)).hexdigest() if sub.path is not None else None
            except (OSError, ValueError):
                continue
            count += sha is not None and self.unchanged(sub, sha) is None
        return count

    def grade_one(self, sub: Submission) -> tuple[str, GradeResult, Path | None]:
        """-> (outcome, result, executed notebook or None); outcome in graded/skipped/failed/missing."""
        if sub.path is None:
            status = "refused" if sub.reason.startswith("submission refused") else "missing"
            return "missing", self.stamp(self.placeholder(sub.reason), sub, None, status, 0.0), None
        try:
            data = read_submission(sub.path)        # never through a symlink, whatever changed since
        except (OSError, ValueError) as e:
            reason = f"submission refused: {getattr(e, 'strerror', None) or e}"
            return "missing", self.stamp(self.placeholder(reason), sub, None, "refused", 0.0), None
        sha = hashlib.sha256(data).hexdigest()
        prev = self.unchanged(sub, sha)
        if prev is not None:
            return "skipped", prev, None
        tmp_dir = self.store.tmp_dir()
        executed = tmp_dir / f"{sub.student}-{uuid.uuid4().hex}.ipynb"
        private = tmp_dir / f"{sub.student}-{uuid.uuid4().hex}"   # the grader reads the bytes checked above
        private.mkdir(mode=0o700)
        copy = private / sub.path.name
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            run = run_grader(self.name, copy, executed, root=self.root, timeout=self.timeout,
                             children=self.children, settings=self.settings, pool=self.pool)
        finally:
            shutil.rmtree(private, ignore_errors=True)
        if run.result is None:
            executed.unlink(missing_ok=True)
            result = self.placeholder(run.reason)
            result.instructor.add("grader-failed", run.reason, detail=run.stderr)
            return "failed", self.stamp(result, sub, sha, "grader-failed", run.seconds), None
        result = run.result
        if run.stderr.strip():
            lines = run.stderr.strip().splitlines()
            result.instructor.add("grader-stderr", f"the grading subprocess wrote {len(lines)} line(s) to "
                                  f"stderr, the last: {lines[-1][:300]}", detail=run.stderr)
        status = "errors" if result.errors else "graded"
        return "graded", self.stamp(result, sub, sha, status, run.seconds), executed if executed.is_file() else None

    def grade_one_safely(self, sub: Submission) -> tuple[str, GradeResult, Path | None]:
        """grade_one, with any failure of the batch's own code turned into that student's 0."""
        if self.stopping.is_set():
            raise KeyboardInterrupt("the batch is stopping")
        try:
            return self.grade_one(sub)
        except Exception as e:  # noqa: BLE001 - never stop the batch for one submission
            reason = f"the batch could not grade this submission: {type(e).__name__}: {e}"
            result = self.placeholder(reason)
            result.instructor.add("grader-failed", reason, detail=traceback.format_exc()[-MAX_STDERR:])
            return "failed", self.stamp(result, sub, None, "grader-failed", 0.0), None
