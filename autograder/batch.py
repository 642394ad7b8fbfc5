"""Grade every submission of an assignment: `python -m autograder grade <assignment> <directory>`.

Layouts of <directory> (both may be mixed; the student id is the folder name or the file stem):

    submitted/<student>/<assignment>/<notebook>.ipynb     nbgrader's layout (the course root works too)
    <student>.ipynb                                        a flat folder

Each submission is graded in its own `python -m autograder grade <a> <nb> --json` subprocess, so a
submission that crashes or hangs the grader costs that student the points (with the reason) and
nothing else. Up to `workers` subprocesses run at once.

Outputs under `out` (default grades/<assignment>/), for every student found, graded or not:

    <student>.json                   the grade result (autograder/result.py) + the batch's stamp
    executed/<student>.ipynb         the notebook as the grader executed it
    logs/<time>.log                  this run's grader faults with tracebacks and subprocess stderr
and, from the stored results, each output format chosen (autograder/exporters; all by default):
    gradebook.csv                    one row per student: score, max, points per test, status, errors
    feedback/<student>.html, .md     what the student reads (never the instructor notes)
    gradescope/<student>/results.json
    nbgrader's gradebook             <course>/gradebook.db, autograded/ for formgrader

Faults that are not the student's (a hidden test that crashed, a grader that failed, anything a
grading subprocess wrote to stderr, tampering findings, a sandbox in which the kernel could read
the hidden suites) are kept in each result's instructor notes, written to the log and printed by
`summary`; a machine where the kernel could read the hidden suites is named in a warning at the start.

Restartable: a submission whose notebook (sha256) and suite/release (fingerprint) are unchanged
since its JSON was written is not graded again (unless force). The JSON is written last and
atomically (tmp file, then os.replace), and every other output is rebuilt from the JSONs on each
run, so a batch killed at any point and run again neither loses nor double-counts anything.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from autograder import exporters, feedback
from autograder.exporters import Entry, ExportContext
from autograder.exporters.base import write_atomic
from autograder.result import Fault, GradeResult, ResultError
from autograder.settings import Settings
from autograder.pool import GraderPool, job_line, start_grader

# A command to run instead of `python -m autograder` for each submission (tests point it at a fake
# single grader); split like a shell command line, then given "grade <a> <nb> --json ...".
GRADER_ENV = "AUTOGRADER_GRADER_CMD"
NO_SUBMISSION = "no submission found"


# ---------------------------------------------------------------------------------------------
# Finding submissions
# ---------------------------------------------------------------------------------------------
class LayoutError(ValueError):
    """The folder of submissions cannot be read unambiguously (the message says why)."""


@dataclass(frozen=True)
class Submission:
    """One student's hand-in. path is None when the student has no notebook for this assignment."""
    student: str
    path: Path | None
    reason: str = ""

    @property
    def folder(self) -> Path | None:
        return self.path.parent if self.path is not None else None


def _notebooks(folder: Path) -> list[Path]:
    """The notebooks in `folder`, symlinks included (so that they are refused, not silently skipped)."""
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith(".")
                  and (p.is_symlink() or p.is_file()))


MAX_ENTRIES = 10_000      # entries looked at in one student's folder


def refusal(path: Path, student_root: Path) -> str | None:
    """Why a student's hand-in at `path` (a notebook, or their folder) is refused, or None.

    The grader runs as root on a grading server: a symlink in a submission (to a solution notebook,
    a hidden suite or another student's folder) would make it read, grade and copy that file, and a
    FIFO or device would hang or confuse it. Only real folders and regular files are accepted,
    looked at without following any link.
    """
    def rel(p: Path) -> str:
        return str(p.relative_to(student_root.parent)) if p.is_relative_to(student_root.parent) else p.name

    def why(p: Path, st) -> str | None:
        if stat.S_ISLNK(st.st_mode):
            return f"{rel(p)} is a symbolic link"
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return f"{rel(p)} is not a regular file"
        return None

    chain = [student_root, *reversed([q for q in path.parents if q.is_relative_to(student_root)
                                      and q != student_root]), path]
    for p in dict.fromkeys(chain):
        try:
            reason = why(p, os.lstat(p))
        except OSError as e:
            reason = f"{rel(p)} cannot be read ({e.strerror})"
        if reason:
            return f"submission refused: {reason}; hand in the notebook itself, as a regular file"
    if path.is_dir():
        seen = 0
        for top, dirs, files in os.walk(path, followlinks=False):
            for name in [*dirs, *files]:
                seen += 1
                if seen > MAX_ENTRIES:
                    return f"submission refused: more than {MAX_ENTRIES} files in {rel(path)}"
                try:
                    reason = why(Path(top) / name, os.lstat(Path(top) / name))
                except OSError as e:
                    reason = f"{rel(Path(top) / name)} cannot be read ({e.strerror})"
                if reason:
                    return f"submission refused: {reason}; hand in the notebook itself, as a regular file"
    return None


def read_submission(path: Path, max_bytes: int = 512 * 2**20) -> bytes:
    """A submitted notebook's bytes, opened without following a symlink (ValueError if it is not a
    regular file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"{path.name} is larger than {max_bytes >> 20} MB")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            if sum(map(len, chunks)) > max_bytes:
                raise ValueError(f"{path.name} is larger than {max_bytes >> 20} MB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def find_submissions(directory: str | Path, assignment: str, notebook_name: str) -> list[Submission]:
    """Every student under `directory`, sorted by id.

    Inputs: directory (see the module docstring; a course root with a submitted/ folder works
    too), assignment name, notebook_name (the release notebook's file name, preferred when a
    student's folder holds several notebooks).
    Returns: one Submission per student; a student folder with no notebook for this assignment
    gives path=None and reason NO_SUBMISSION, never a missing row.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    if (directory / "submitted").is_dir() and not _notebooks(directory):
        directory = directory / "submitted"
    subs: dict[str, Submission] = {}
    for path in _notebooks(directory):
        refused = refusal(path, path)
        subs[path.stem] = Submission(path.stem, None if refused else path, refused or "")
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or folder.name == "__pycache__":
            continue
        student = folder.name
        if student in subs:
            raise LayoutError(f"student {student!r} has both {student}.ipynb and a folder {student}/ "
                              f"in {directory}; keep one")
        adir = folder / assignment
        refused = refusal(adir, folder) if (folder.is_symlink() or adir.is_symlink() or adir.is_dir()) else None
        if refused:
            subs[student] = Submission(student, None, refused)
            continue
        found = _notebooks(adir) if adir.is_dir() else []
        preferred = [p for p in found if p.name == notebook_name]
        if preferred or len(found) == 1:
            subs[student] = Submission(student, (preferred or found)[0])
        elif found:
            names = ", ".join(p.name for p in found)
            subs[student] = Submission(student, None, f"several notebooks ({names}) and none named {notebook_name}")
        else:
            subs[student] = Submission(student, None, NO_SUBMISSION)
    return [subs[k] for k in sorted(subs)]


# ---------------------------------------------------------------------------------------------
# Fingerprints: what a stored grade depends on
# ---------------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(read_submission(Path(path))).hexdigest()


def suite_fingerprint(assignment) -> str:
    """sha256 over the hidden suite's files and the release notebook.

    Changing a hidden test (or the release the answers are merged into) changes this value, and
    every submission is graded again.
    """
    h = hashlib.sha256()
    suite = Path(assignment.suite_dir)
    files = sorted(p for p in suite.rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts and p.suffix != ".pyc") if suite.is_dir() else []
    for p in files + [Path(assignment.release_notebook)]:
        rel = p.relative_to(suite) if p.is_relative_to(suite) else Path("release") / p.name
        h.update(str(rel).encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Results that the grader did not produce (no submission, grader crash)
# ---------------------------------------------------------------------------------------------
def zero_result(assignment: str, reason: str, template: list[dict]) -> GradeResult:
    """A result with 0 points: every test of `template` failed with `reason` as the message."""
    return GradeResult.zero(assignment, reason, template).trimmed()


def suite_tests(assignment) -> list[dict]:
    """The hidden suite's tests as [{"name", "cell", "max_points", "description"}], in the runner's order.

    Collected (not run) with the runner's own pytest plugin, so names (parametrized ones too),
    points and cells are exactly those of a graded result. Used for the rows of students the
    grader never ran on (no submission, grader crash): every test listed with 0 points.
    """
    from autograder.plugin import GradingPlugin
    from autograder.runner import _run_suite
    plugin = GradingPlugin(None, not_graded="collecting")
    _run_suite(Path(assignment.suite_dir), plugin, collect_only=True)
    return [{"name": r.name, "cell": r.cell, "max_points": r.max_points, "description": r.doc}
            for r in plugin.records.values()]


# ---------------------------------------------------------------------------------------------
# Running one submission
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------
@dataclass
class BatchReport:
    """What a batch did. results: student -> stored result (every student found)."""
    results: dict[str, GradeResult]
    graded: list[str]
    skipped: list[str]
    failed: list[str]            # the grader produced no result (crash, timeout, bad output)
    missing: list[str]           # no notebook (or a refused one)
    export_errors: list[str]     # "<format>: <student>: <error>" for outputs not written
    out: Path
    seconds: float
    log: Path | None = None      # this run's log of grader faults and grading subprocesses' stderr
    outputs: list[str] = field(default_factory=list)   # where each format's files went
    warnings: list[str] = field(default_factory=list)  # printed at the start (e.g. readable suites)

    @property
    def gradebook_errors(self) -> list[str]:
        return self.export_errors

    def faults(self) -> list[tuple[str, Fault]]:
        """(student, fault) for every stored result's instructor notes, students in order."""
        return [(s, f) for s, r in sorted(self.results.items()) for f in r.faults]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _previous(path: Path) -> GradeResult | None:
    try:
        return GradeResult.read(path)
    except (OSError, ResultError):
        return None


def readable_suites_warning(settings: Settings) -> str | None:
    """The warning to print when this machine's kernels could read the hidden suites, else None."""
    from autograder.result import READABLE_SUITES
    from autograder.sandbox import isolation_mode
    if settings.limits.isolation == "none" or isolation_mode() == "none":
        return f"WARNING: {READABLE_SUITES}"
    return None


class Batch:
    """One run of the batch grader (see `grade_directory`, which makes and runs one)."""

    def __init__(self, assignment, directory, *, out=None, settings: Settings | None = None, workers=None,
                 force=False, course_dir=None, root=None, timeout=None, progress=True,
                 placeholder_tests=None, exports=None):
        """settings: limits and batch options (default Settings(workers=1)); `workers` and `timeout`
        (seconds per submission) override the settings' values. exports: names of output formats
        (autograder/exporters; None: all)."""
        self.a = assignment
        self.name = assignment.name
        self.directory = Path(directory)
        self.out = Path(out) if out is not None else Path("grades") / self.name
        settings = settings if settings is not None else Settings(workers=1)
        if workers is not None:
            settings = settings.replace(workers=max(1, int(workers)))
        if timeout is not None:
            settings = settings.replace(submission_timeout=timeout)
        self.settings = settings
        self.workers = settings.workers
        self.force = force
        self.course_dir = Path(course_dir) if course_dir is not None else None
        self.root = root
        self.timeout = settings.submission_timeout
        self.progress = progress
        self.exporters = exporters.select(exports)
        self.release_path = Path(assignment.release_notebook)
        self.release_nb = nbformat.read(str(self.release_path), as_version=4)
        self.notebook_id = self.release_path.stem
        self.cell_titles = feedback.exercise_titles(self.release_nb)
        self.fingerprint = suite_fingerprint(assignment)
        self._placeholder = placeholder_tests
        self._template: list[dict] | None = None
        self.children = Children()
        self.stopping = threading.Event()
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
                              graded_at=_now(), status=status, grader_seconds=round(seconds, 3))

    # --- one submission (runs in a worker thread) ---------------------------------------------
    def unchanged(self, sub: Submission, sha: str) -> GradeResult | None:
        """The stored result of `sub` if its notebook (sha256) and the suite are unchanged (not forced)."""
        prev = _previous(self.out / f"{sub.student}.json")
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
        tmp_dir = self.out / ".tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
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

    # --- storing (main thread only: one writer for files and the gradebook) -------------------
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

    def export_context(self) -> ExportContext:
        return ExportContext(
            assignment=self.name, out=self.out, release_nb=self.release_nb, notebook_id=self.notebook_id,
            cell_titles=self.cell_titles, course_dir=self.course_dir, directory=self.directory,
            descriptions={t["name"]: t["description"] for t in self.template if t.get("description")},
            test_names=[t["name"] for t in self.template])

    def entry(self, sub: Submission, result: GradeResult) -> Entry:
        executed = self.out / "executed" / f"{sub.student}.ipynb"
        return Entry(sub.student, result, sub.folder, sub.path, executed if executed.is_file() else None)

    def export(self, ctx: ExportContext, entry: Entry) -> list[str]:
        """Every format's output for one stored result. -> errors ("<format>: <student>: <why>")."""
        errors = []
        for exporter in self.exporters:
            try:
                exporter.student(ctx, entry)
            except Exception as e:  # noqa: BLE001 - one student's output must not stop the batch
                errors.append(f"{exporter.name}: {entry.student}: {type(e).__name__}: {e}")
        return errors

    # --- the whole batch ----------------------------------------------------------------------
    def run(self) -> BatchReport:
        start = time.perf_counter()
        subs = find_submissions(self.directory, self.name, self.release_path.name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.template                                   # noqa: B018 - collect the suite now, once
        report = BatchReport({}, [], [], [], [], [], self.out, 0.0)
        warning = readable_suites_warning(self.settings)
        if warning:
            report.warnings.append(warning)
            print(f"autograder: {warning}", file=sys.stderr, flush=True)
        log = FaultLog(self.out, self.name, self.settings, report.warnings)
        report.log = log.path
        ctx = self.export_context()
        for exporter in self.exporters:
            exporter.begin(ctx)
        entries: dict[str, Entry] = {}
        bar = tqdm(total=len(subs), desc=f"grading {self.name}", unit="nb", file=sys.stderr,
                   disable=not self.progress, dynamic_ncols=True)
        restore = self.install_signal_handlers()
        pool = ThreadPoolExecutor(max_workers=self.workers)
        # As many graders starting ahead as run at once: while one submission is graded, the next
        # one's grader and sandboxed kernel start (each serves one submission only, see pool.py).
        self.pool = GraderPool(pooled_command(self.name, root=self.root, settings=self.settings,
                                              hide=(self.directory, self.out)),
                               env=grader_env(), spare=self.workers, on_start=self.children.add,
                               on_end=self.children.discard)
        try:
            self.pool.expect(self.to_grade(subs))
            futures = {pool.submit(self.grade_one_safely, s): s for s in subs}
            for fut in as_completed(futures):
                sub = futures[fut]
                outcome, result, executed = fut.result()
                self.store(sub, outcome, result, executed)
                if outcome != "skipped":
                    log.record(sub.student, result)
                entries[sub.student] = self.entry(sub, result)
                report.export_errors += self.export(ctx, entries[sub.student])
                report.results[sub.student] = result
                getattr(report, outcome).append(sub.student)
                bar.set_postfix_str(f"{sub.student}: {result.score:g}/{result.max_score:g}")
                bar.update(1)
        except BaseException:
            self.stopping.set()                 # queued submissions start no grader
            self.children.kill_all()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.pool.close()
            bar.close()
            restore()
            ordered = [entries[s.student] for s in subs if s.student in entries]
            for exporter in self.exporters:
                try:
                    exporter.end(ctx, ordered)
                except Exception as e:  # noqa: BLE001 - reported; the other formats are written
                    report.export_errors.append(f"{exporter.name}: {type(e).__name__}: {e}")
            log.close()
        report.outputs = [o for o in (e.outputs(ctx) for e in self.exporters) if o]
        self.clean_tmp()
        report.seconds = time.perf_counter() - start
        return report

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

    def install_signal_handlers(self):
        """On SIGTERM/SIGINT/SIGHUP kill the running graders too, then stop (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {}

        def handler(signum, frame):
            self.children.kill_all()
            raise KeyboardInterrupt(f"stopped by signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            old[sig] = signal.signal(sig, handler)

        def restore():
            for sig, h in old.items():
                signal.signal(sig, h)
        return restore


def grade_directory(assignment, directory, **kwargs) -> BatchReport:
    """Grade every submission under `directory` (see `Batch` for the options). -> BatchReport."""
    return Batch(assignment, directory, **kwargs).run()


def summary(report: BatchReport) -> str:
    """A few lines for the terminal: counts, mean score, where the outputs are, and every fault that
    is not a student's (grader failures, suite errors, tampering findings, readable suites)."""
    res = list(report.results.values())
    mean = sum(r.score for r in res) / len(res) if res else 0.0
    max_score = max((r.max_score for r in res), default=0.0)
    lines = [f"{len(res)} student(s): {len(report.graded)} graded, {len(report.skipped)} unchanged "
             f"(kept), {len(report.missing)} without a submission, {len(report.failed)} grader failure(s); "
             f"mean {mean:.2f}/{max_score:g}; {report.seconds:.1f} s",
             "  ".join(report.outputs) or f"results: {report.out}"]
    lines += report.warnings
    for s in report.failed:
        lines.append(f"  grader failed for {s}: {report.results[s].errors[0]}")
    faults = [(s, f) for s, f in report.faults() if f.kind != "grader-failed"]
    readable = sorted({s for s, f in faults if f.kind == "isolation"})
    others = [(s, f) for s, f in faults if f.kind != "isolation"]
    if readable and not report.warnings:
        lines.append(f"WARNING: {len(readable)} submission(s) were graded where the kernel could read the hidden "
                     f"suites (isolation mode 'none'): {', '.join(readable[:10])}")
    if others:
        lines.append(f"grader faults (not the students'; tracebacks in {report.log or report.out}):")
        lines += [f"  {s}: {f.line()}" for s, f in others[:50]]
        if len(others) > 50:
            lines.append(f"  ... and {len(others) - 50} more")
    for e in report.export_errors:
        lines.append(f"  not written: {e}")
    return "\n".join(lines)


class FaultLog:
    """<out>/logs/<time>.log: this run's settings and warnings, then, per submission graded, every
    fault that is not the student's with its full detail (traceback, the grading subprocess's stderr)."""

    def __init__(self, out: Path, assignment: str, settings: Settings, warnings: list[str]):
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.path = out / "logs" / f"{stamp}-{uuid.uuid4().hex[:6]}.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w", encoding="utf-8")
        self.f.write(f"autograder batch for {assignment}, started {_now()}\nsettings: {settings.to_json()}\n")
        for w in warnings:
            self.f.write(w + "\n")
        self.count = 0
        self.f.flush()

    def record(self, student: str, result: GradeResult) -> None:
        notes = result.instructor
        for fault in notes.faults:
            self.count += 1
            self.f.write(f"\n== {student}: {fault.line()}\n")
            if fault.detail:
                self.f.write(fault.detail.rstrip() + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.write(f"\n{self.count} fault(s); finished {_now()}\n")
        self.f.close()
