"""Grade one submitted notebook: `grade_submission(assignment, notebook_path) -> GradeResult`.

    result = grade_submission("01_convolution", "alice.ipynb", executed_path="alice.executed.ipynb")
    grade_notebook(...)     # the same as a JSON-ready dict (result.to_dict())

1. read the submission and merge it with the release (notebook.py); an unusable submission scores
   0 with the reason in `errors` and every test listed as failed, without starting a kernel;
2. run the merged notebook in a sandboxed kernel (kernel.py, sandbox.py);
3. run the hidden suite with pytest in THIS process (plugin.py): the suite reaches the notebook's
   objects only through the `student` proxy; pytest's own output never reaches stdout.

The result is the contract of autograder/result.py (JSON Schema: autograder/schema/). Its
instructor notes record the sandbox mode the kernel got (a warning fault when the kernel could read
the hidden suites), hidden tests that crashed (with their tracebacks) and tampering findings.
Problems of the grader itself (unknown assignment, missing file, a suite that does not import, a
kernel that cannot start) raise instead.
"""
from __future__ import annotations

import contextlib
import gc
import importlib.util
import io
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat

from autograder.assignments import ROOT, Assignment, find_assignment
from autograder.kernel import GraderError, KernelSession
from autograder.notebook import SubmissionError, merge, read_notebook
from autograder.tamper import scan_tampering
from autograder.plugin import GradingPlugin
from autograder.result import READABLE_SUITES, GradeResult, InstructorNotes
from autograder.sandbox import Limits, Sandbox
from autograder.sanitize import clean_notebook

__all__ = ["grade_submission", "grade_notebook", "WarmKernel", "Limits", "GraderError", "READABLE_SUITES"]
log = logging.getLogger("autograder")
ASSIGNMENT_FILES_MB = 100


class WarmKernel:
    """A sandbox and its kernel, started before the submission is known (the batch's pool of
    pre-started graders, see pool.py): torch and the course library are imported in the kernel,
    the assignment's files are in its home. Used for exactly one submission, then closed.

    hide: folders the kernel must not see besides the course's own (the batch's submissions and
    output folders); a submission outside every hidden folder gets a fresh sandbox instead.
    """

    def __init__(self, assignment: Assignment, limits: Limits, hide=()):
        self.assignment, self.limits = assignment, limits
        self.hide = _hidden(assignment, hide)
        self.sandbox = Sandbox(limits, hide=self.hide, keep=_kernel_needs())
        self.sandbox.open()
        self.session: KernelSession | None = None
        try:
            _copy_assignment_files(assignment, self.sandbox)
            self.session = KernelSession(self.sandbox, limits)
            self.session.start()
        except BaseException:
            self.close()
            raise

    def covers(self, *paths) -> bool:
        """Whether every path lies in a folder this sandbox hides (or its private /tmp)."""
        return all(self.sandbox.hides(p) for p in paths)

    def close(self) -> None:
        try:
            if self.session is not None:
                self.session.close()
        finally:
            self.session = None
            self.sandbox.close()


def _hidden(assignment: Assignment, extra=()) -> list[Path]:
    return [ROOT, assignment.suite_dir, assignment.release_notebook.parent, assignment.source_notebook.parent,
            *(Path(p).resolve() for p in extra)]


def grade_notebook(assignment: Assignment | str, notebook_path, **kwargs) -> dict:
    """`grade_submission(...)` as the contract's JSON-ready dict."""
    return grade_submission(assignment, notebook_path, **kwargs).to_dict()


def grade_submission(assignment: Assignment | str, notebook_path, *, limits: Limits | None = None,
                     executed_path=None, details: dict | None = None, warm: WarmKernel | None = None,
                     hide=()) -> GradeResult:
    """Grade `notebook_path` for `assignment` (an Assignment or its name).

    Inputs:
      limits: Limits (time, memory, processes, output size, run size...); defaults: Limits()
      executed_path: where to write the executed, merged notebook (for formgrader and feedback)
      details: a dict to receive figures for the instructor (isolation mode, tampering, timings)
      warm: a WarmKernel started for this assignment and these limits (used if it hides the
        submission's folder, and closed in any case)
      hide: more folders the kernel must not see (the course's own and the submission's are hidden)
    Returns the GradeResult. Raises for grader problems only.
    """
    try:
        return _grade(assignment, notebook_path, limits, executed_path, details, warm, hide)
    finally:
        if warm is not None:
            warm.close()


def _grade(assignment, notebook_path, limits, executed_path, details, warm, hide) -> GradeResult:
    t0 = time.monotonic()
    if not isinstance(assignment, Assignment):
        assignment = find_assignment(assignment)
    notebook_path = Path(notebook_path)
    if not notebook_path.is_file():
        raise FileNotFoundError(f"no such notebook: {notebook_path}")
    limits = limits or (warm.limits if warm is not None else Limits())
    details = {} if details is None else details
    release = nbformat.read(assignment.release_notebook, as_version=4)

    errors: list[str] = []
    try:
        merged = merge(release, read_notebook(notebook_path), assignment.name)
    except SubmissionError as e:
        plugin = GradingPlugin(None, not_graded=str(e))
        _run_suite(assignment.suite_dir, plugin, collect_only=True)
        timings = {"total": round(time.monotonic() - t0, 3)}
        details.update(timings=timings)
        return _result(assignment, plugin, [str(e)], InstructorNotes(), timings)

    errors += merged.notes
    private = [notebook_path.resolve().parent]
    if executed_path is not None:
        private.append(Path(executed_path).resolve().parent)
    usable = (warm is not None and warm.assignment == assignment and warm.limits == limits
              and warm.covers(*private))
    if warm is not None and not usable:
        warm.close()
    if not usable:
        warm = None
    sandbox = warm.sandbox if warm else Sandbox(limits, hide=_hidden(assignment, [*private, *hide]),
                                                keep=_kernel_needs())
    with sandbox if warm is None else contextlib.nullcontext(sandbox):
        if warm is None:
            _copy_assignment_files(assignment, sandbox)
        session = warm.session if warm else KernelSession(sandbox, limits)
        try:
            errors += session.run_notebook(merged.nb, merged.labels)
            if executed_path is not None:
                nbformat.write(clean_notebook(merged.nb), str(executed_path))   # opened in formgrader
            session.tampering = scan_tampering(merged.student_code)
            plugin = GradingPlugin(session)
            t_suite = time.monotonic()
            _run_suite(assignment.suite_dir, plugin)
            suite_seconds = time.monotonic() - t_suite
            errors += session.notes
        finally:
            session.close()
        notes = InstructorNotes(isolation=sandbox.mode)
        tampering = list(session.tampering) + list(getattr(session, "tamper_events", []))
        if sandbox.mode == "none":
            notes.add("isolation", READABLE_SUITES)
        if tampering:
            notes.tampering = tampering
            notes.add("tampering", "possible tampering with the grader: " + ", ".join(tampering[:10]))
        timings = {**session.timings, "suite": round(suite_seconds, 3),
                   "call_seconds": round(session.timings["call_seconds"], 3),
                   "total": round(time.monotonic() - t0, 3)}
        details.update(isolation=sandbox.mode, tampering=session.tampering, timings=timings,
                       instructor_log=plugin.instructor_log)
    return _result(assignment, plugin, errors, notes, timings)


def _result(assignment: Assignment, plugin: GradingPlugin, errors: list[str], notes: InstructorNotes,
            timings: dict) -> GradeResult:
    notes.faults = list(plugin.faults) + notes.faults
    for fault in notes.faults:
        log.info("%s: %s", assignment.name, fault.line())
    result = GradeResult(assignment.name, [r.to_result() for r in plugin.records.values()], list(errors),
                         notes, timing=timings)
    return result.trimmed()


def _run_suite(suite_dir: Path, plugin: GradingPlugin, collect_only: bool = False) -> None:
    """pytest.main on the hidden suite, in this process, with all of pytest's output captured."""
    import pytest
    # Everything alive now (torch, the notebook's client, the imports) lives until the grader exits:
    # frozen, Python's collector no longer walks its ~400,000 objects on every full collection.
    gc.freeze()
    # --disable-plugin-autoload: only our plugin, not every pytest plugin installed (nbval alone
    # imports coverage, about a second per grading). no:unraisableexception: that plugin runs five
    # full collections at the end of every session (0.25 s each here), to report exceptions in
    # __del__ methods that a hidden suite does not have. --tb=native: the plugin writes each
    # student's message itself (plugin.py), so pytest's own report of a failed test is read only
    # for a suite's fault; Python's plain traceback says as much there, and pytest's long style
    # (source, reprs of locals) cost 0.05-0.1 s of CPU per failed test, a third of the suite's time.
    args = [str(suite_dir), "-q", "--tb=native", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
            "--disable-plugin-autoload", "-c", os.devnull,
            "--rootdir", str(suite_dir),
            "--confcutdir", str(suite_dir), "--import-mode=importlib", "-W", "ignore::DeprecationWarning"]
    if collect_only:
        args.append("--collect-only")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), _one_torch_thread():
        code = pytest.main(args, plugins=[plugin])
    if plugin.collect_errors or code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR,
                                         pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise GraderError(f"the hidden suite in {suite_dir} could not run (pytest exit code {int(code)}):\n"
                          + "\n".join(plugin.collect_errors)[-4000:] + output.getvalue()[-4000:])


@contextlib.contextmanager
def _one_torch_thread():
    """torch on one thread in the grader's process while the suite runs; the caller's setting after.

    The suite's own computations (oracles on small tensors) gain nothing from more threads, and
    OpenMP's worker threads spin while they wait for the next parallel region: with 2 graders on 2
    cores that spinning took the CPU the other grading needed (8 submissions of 01_convolution,
    --workers 2: the graders' processes used 7.3-8.9 s of user CPU with torch's default of 2 threads
    and 5.3 s with one; the kernels are unaffected, they run on Limits.threads)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _kernel_needs() -> list[Path]:
    """What the kernel must see even when it lies in a hidden folder: the venv and dlcourse."""
    keep = [Path(sys.prefix)]
    spec = importlib.util.find_spec("dlcourse")
    if spec is not None and spec.submodule_search_locations:
        keep += [Path(p) for p in spec.submodule_search_locations]
    return keep


def _copy_assignment_files(assignment: Assignment, sandbox: Sandbox) -> None:
    """Files shipped beside the release notebook (images, small data) go into the kernel's home.

    Never anything from the suite or the source notebook's folder, even if they lie inside the
    release folder."""
    release_dir = assignment.release_notebook.parent.resolve()
    secret = [assignment.suite_dir.resolve(), assignment.source_notebook.parent.resolve()]
    files = [p for p in release_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".ipynb"
             and not any(p.resolve().is_relative_to(s) for s in secret)
             and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(release_dir).parts)]
    if sum(p.stat().st_size for p in files) > ASSIGNMENT_FILES_MB * 2**20:
        log.warning("%s: assignment files over %d MB are not copied into the sandbox", release_dir,
                    ASSIGNMENT_FILES_MB)
        return
    for src in files:
        dest = sandbox.home / src.relative_to(release_dir)
        created = [d for d in reversed(dest.parents) if d.is_relative_to(sandbox.home) and not d.exists()]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        sandbox._give(*created, dest)
