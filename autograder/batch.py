"""Grade every submission of an assignment: `python -m autograder grade <assignment> <directory>`.

Layouts of <directory> (both may be mixed; the student id is the folder name or the file stem):

    submitted/<student>/<assignment>/<notebook>.ipynb     nbgrader's layout (the course root works too)
    <student>.ipynb                                        a flat folder

Each submission is graded in its own `python -m autograder grade <a> <nb> --json` subprocess, so a
submission that crashes or hangs the grader costs that student the points (with the reason) and
nothing else. Up to `workers` subprocesses run at once.

Outputs under `out` (default grades/<assignment>/), for every student found, graded or not:

    <student>.json                   the grader's JSON + student, submission_sha256, graded_at, ...
    executed/<student>.ipynb         the notebook as the grader executed it
    gradebook.csv                    one row per student: score, max, points per test, status, errors
    gradescope/<student>/results.json
    feedback/<student>.html, .md
and the scores into nbgrader's gradebook (<course>/gradebook.db, autograded/ for formgrader).

Restartable: a submission whose notebook (sha256) and suite/release (fingerprint) are unchanged
since its JSON was written is not graded again (unless force). The JSON is written last and
atomically (tmp file, then os.replace), and every other output is rebuilt from the JSONs on each
run, so a batch killed at any point and run again neither loses nor double-counts anything.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat
from tqdm import tqdm

from autograder import feedback
from autograder.settings import Settings

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
def zero_result(assignment: str, reason: str, template: list[dict], max_score: float) -> dict:
    """A result with 0 points: every test of `template` failed with `reason` as the message."""
    tests = [{"name": t["name"], "points": 0.0, "max_points": float(t["max_points"]), "passed": False,
              "message": reason, **({"cell": t["cell"]} if t.get("cell") else {})} for t in template]
    return {"assignment": assignment, "score": 0.0, "max_score": float(max_score),
            "tests": tests, "errors": [reason]}


def suite_tests(assignment) -> list[dict]:
    """The hidden suite's tests as [{"name", "cell", "max_points"}], in the runner's order.

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


def valid_result(obj) -> bool:
    """Whether a parsed JSON value is a grade in the engine's format."""
    try:
        return (isinstance(obj, dict) and isinstance(obj["tests"], list)
                and float(obj["score"]) >= 0 and float(obj["max_score"]) >= 0
                and isinstance(obj.get("errors", []), list)
                and all(isinstance(t, dict) and "name" in t and "points" in t and "max_points" in t
                        for t in obj["tests"]))
    except (KeyError, TypeError, ValueError):
        return False


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


def run_grader(assignment: str, notebook: Path, executed: Path, *, root: str | None,
               timeout: float, children: Children | None = None,
               settings: Settings | None = None) -> tuple[dict | None, str, float]:
    """Grade one notebook in a subprocess, under `settings` (passed whole as --settings JSON).

    Returns (result or None, reason when None, seconds). The subprocess leads its own process group
    (killed whole on timeout) and dies with the batch (AUTOGRADER_PARENT_PID, see cli.py).
    """
    cmd = grader_command() + ["grade", assignment, str(notebook), "--json", "--executed", str(executed)]
    if root is not None:
        cmd += ["--root", str(root)]
    if settings is not None:
        cmd += ["--settings", settings.to_json()]
    env = dict(os.environ, AUTOGRADER_PARENT_PID=str(os.getpid()), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env, start_new_session=True)
    if children is not None:
        children.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return None, f"the grader did not finish within {timeout:g} s", time.perf_counter() - start
    finally:
        if children is not None:
            children.discard(proc)
        _kill_group(proc)              # leftovers of a finished grader (a stray kernel), if any
    seconds = time.perf_counter() - start
    last_err = (err.strip().splitlines() or [""])[-1][:500].removeprefix("autograder: ")
    if proc.returncode != 0:
        return None, f"the grader failed (exit status {proc.returncode}): {last_err}".rstrip(": "), seconds
    try:
        result = json.loads(out)
    except ValueError:
        return None, f"the grader printed no valid JSON: {last_err}".rstrip(": "), seconds
    if not valid_result(result):
        return None, "the grader printed JSON that is not a grade result", seconds
    return result, "", seconds


# ---------------------------------------------------------------------------------------------
# Writing outputs
# ---------------------------------------------------------------------------------------------
def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers (and a rerun after a kill) see the old or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def gradescope_json(result: dict) -> dict:
    """Gradescope's autograder results format (results.json)."""
    out = {"score": float(result["score"]),
           "tests": [{"name": feedback.humanize(t["name"]), "score": float(t["points"]),
                      "max_score": float(t["max_points"]), "output": t.get("message", ""),
                      "visibility": "visible"} for t in result["tests"]]}
    if result.get("errors"):
        out["output"] = "\n".join(result["errors"])
    return out


_CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")


def _cell_text(value: str) -> str:
    """A text value a spreadsheet will not run as a formula."""
    return "'" + value if value.startswith(_CSV_RISKY) else value


def status_of(result: dict) -> str:
    if result.get("status"):
        return result["status"]
    return "errors" if result.get("errors") else "graded"


def write_csv(path: Path, rows: list[dict], test_names: list[str]) -> None:
    """gradebook.csv: student, score, max_score, one column per test (points), status, errors."""
    lines = []
    header = ["student", "score", "max_score", *test_names, "status", "errors"]
    for r in rows:
        points = {t["name"]: t["points"] for t in r["tests"]}
        lines.append([_cell_text(r["student"]), f"{float(r['score']):g}", f"{float(r['max_score']):g}",
                      *[f"{float(points[n]):g}" if n in points else "" for n in test_names],
                      status_of(r), _cell_text(" | ".join(" ".join(e.split()) for e in r.get("errors", [])))])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".gradebook.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(lines)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------
@dataclass
class BatchReport:
    """What a batch did. results: student -> stored result (every student found)."""
    results: dict[str, dict]
    graded: list[str]
    skipped: list[str]
    failed: list[str]            # the grader produced no result (crash, timeout, bad output)
    missing: list[str]           # no notebook
    gradebook_errors: list[str]
    out: Path
    seconds: float


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _previous(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if valid_result(data) else None


class Batch:
    """One run of the batch grader (see `grade_directory`, which makes and runs one)."""

    def __init__(self, assignment, directory, *, out=None, settings: Settings | None = None, workers=None,
                 force=False, course_dir=None, root=None, timeout=None, progress=True,
                 placeholder_tests=None):
        """settings: limits and batch options (default Settings(workers=1)); `workers` and `timeout`
        (seconds per submission) override the settings' values."""
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
        self.release_path = Path(assignment.release_notebook)
        self.release_nb = nbformat.read(str(self.release_path), as_version=4)
        self.notebook_id = self.release_path.stem
        self.cell_titles = feedback.exercise_titles(self.release_nb)
        self.fingerprint = suite_fingerprint(assignment)
        self._placeholder = placeholder_tests
        self._template: list[dict] | None = None
        self.children = Children()
        self.stopping = threading.Event()

    # --- results that need no grader ----------------------------------------------------------
    @property
    def template(self) -> list[dict]:
        """The suite's tests (collected once, in the main thread: pytest redirects stdout/stderr)."""
        if self._template is None:
            self._template = list(self._placeholder(self.a)) if self._placeholder else []
        return self._template

    def placeholder(self, reason: str) -> dict:
        """0 points for every test of the suite, with `reason` (no submission, grader failure)."""
        max_score = sum(float(t["max_points"]) for t in self.template)
        return zero_result(self.name, reason, self.template, max_score)

    def stamp(self, result: dict, sub: Submission, sha: str | None, status: str, seconds: float) -> dict:
        result = dict(result)
        result.update(student=sub.student, submission=str(sub.path) if sub.path else None,
                      submission_sha256=sha, suite_fingerprint=self.fingerprint,
                      graded_at=_now(), status=status, grader_seconds=round(seconds, 3))
        return result

    # --- one submission (runs in a worker thread) ---------------------------------------------
    def grade_one(self, sub: Submission) -> tuple[str, dict, Path | None]:
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
        prev = _previous(self.out / f"{sub.student}.json")
        if (not self.force and prev is not None and prev.get("submission_sha256") == sha
                and prev.get("suite_fingerprint") == self.fingerprint):
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
            result, reason, seconds = run_grader(self.name, copy, executed, root=self.root,
                                                 timeout=self.timeout, children=self.children,
                                                 settings=self.settings)
        finally:
            shutil.rmtree(private, ignore_errors=True)
        if result is None:
            executed.unlink(missing_ok=True)
            return "failed", self.stamp(self.placeholder(reason), sub, sha, "grader-failed", seconds), None
        status = "errors" if result.get("errors") else "graded"
        return "graded", self.stamp(result, sub, sha, status, seconds), executed if executed.is_file() else None

    def grade_one_safely(self, sub: Submission) -> tuple[str, dict, Path | None]:
        """grade_one, with any failure of the batch's own code turned into that student's 0."""
        if self.stopping.is_set():
            raise KeyboardInterrupt("the batch is stopping")
        try:
            return self.grade_one(sub)
        except Exception as e:  # noqa: BLE001 - never stop the batch for one submission
            reason = f"the batch could not grade this submission: {type(e).__name__}: {e}"
            return "failed", self.stamp(self.placeholder(reason), sub, None, "grader-failed", 0.0), None

    # --- storing (main thread only: one writer for files and the gradebook) -------------------
    def store(self, sub: Submission, outcome: str, result: dict, executed: Path | None) -> None:
        if outcome != "skipped":
            dest = self.out / "executed" / f"{sub.student}.ipynb"
            if executed is not None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(executed, dest)
            else:
                dest.unlink(missing_ok=True)
            # Last and atomic: from here on a rerun treats this submission as graded.
            write_atomic(self.out / f"{sub.student}.json", json.dumps(result, indent=1) + "\n")

    def with_descriptions(self, result: dict) -> dict:
        """The result with each test's description (its docstring, written for students) added."""
        docs = {t["name"]: t.get("description") for t in self.template if t.get("description")}
        tests = [t if t.get("description") or t["name"] not in docs else {**t, "description": docs[t["name"]]}
                 for t in result["tests"]]
        return {**result, "tests": tests}

    def derive(self, sub: Submission, result: dict, gb) -> str | None:
        """Feedback, Gradescope JSON, nbgrader gradebook for one stored result. -> error or None."""
        student = sub.student
        shown = self.with_descriptions(result)
        write_atomic(self.out / "feedback" / f"{student}.html",
                     feedback.render_html(shown, student=student, cell_titles=self.cell_titles))
        write_atomic(self.out / "feedback" / f"{student}.md",
                     feedback.render_markdown(shown, student=student, cell_titles=self.cell_titles))
        write_atomic(self.out / "gradescope" / student / "results.json",
                     json.dumps(gradescope_json(result), indent=1) + "\n")
        if gb is None:
            return None
        try:
            self.to_gradebook(gb, sub, result)
        except Exception as e:  # noqa: BLE001 - one student's gradebook row must not stop the batch
            gb.db.rollback()
            return f"{student}: {type(e).__name__}: {e}"
        return None

    def to_gradebook(self, gb, sub: Submission, result: dict) -> None:
        from autograder import gradebook as nbg
        executed = self.out / "executed" / f"{sub.student}.ipynb"
        graded_nb = executed if executed.is_file() else sub.path
        answered = None
        if graded_nb is not None:
            try:
                answered = nbformat.read(str(graded_nb), as_version=4)
            except Exception:  # noqa: BLE001 - an unreadable notebook: every answer counts as given
                answered = None
        stamp_file = sub.folder / "timestamp.txt" if sub.folder else None
        try:
            timestamp = read_submission(stamp_file, 4096).decode().strip() if stamp_file else None
        except (OSError, ValueError):       # none, a symlink, or not text: no timestamp
            timestamp = None
        nbg.record(gb, self.name, sub.student, result, release_nb=self.release_nb,
                   notebook_id=self.notebook_id, answered_nb=answered, timestamp=timestamp, ensure=False)
        if graded_nb is not None:
            nbg.copy_autograded(graded_nb, self.course_dir, sub.student, self.name, self.notebook_id,
                                sub.folder if sub.folder != self.directory else None)

    # --- the whole batch ----------------------------------------------------------------------
    def run(self) -> BatchReport:
        start = time.perf_counter()
        subs = find_submissions(self.directory, self.name, self.release_path.name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.template                                   # noqa: B018 - collect the suite now, once
        gb = self.open_gradebook()
        report = BatchReport({}, [], [], [], [], [], self.out, 0.0)
        bar = tqdm(total=len(subs), desc=f"grading {self.name}", unit="nb", file=sys.stderr,
                   disable=not self.progress, dynamic_ncols=True)
        restore = self.install_signal_handlers()
        pool = ThreadPoolExecutor(max_workers=self.workers)
        try:
            futures = {pool.submit(self.grade_one_safely, s): s for s in subs}
            for fut in as_completed(futures):
                sub = futures[fut]
                outcome, result, executed = fut.result()
                self.store(sub, outcome, result, executed)
                err = self.derive(sub, result, gb)
                if err:
                    report.gradebook_errors.append(err)
                report.results[sub.student] = result
                getattr(report, outcome).append(sub.student)
                bar.set_postfix_str(f"{sub.student}: {float(result['score']):g}/{float(result['max_score']):g}")
                bar.update(1)
        except BaseException:
            self.stopping.set()                 # queued submissions start no grader
            self.children.kill_all()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            restore()
            if gb is not None:
                gb.close()
        rows = [report.results[s.student] for s in subs]
        write_csv(self.out / "gradebook.csv", rows, self.test_columns(rows))
        self.clean_tmp()
        report.seconds = time.perf_counter() - start
        return report

    def test_columns(self, rows: list[dict]) -> list[str]:
        names = [t["name"] for t in self.template]
        for r in rows:
            for t in r["tests"]:
                if t["name"] not in names:
                    names.append(t["name"])
        return names

    def open_gradebook(self):
        if self.course_dir is None:
            return None
        from autograder import gradebook as nbg
        gb = nbg.open_gradebook(self.course_dir)
        nbg.ensure_assignment(gb, self.name, self.notebook_id, self.release_nb)
        return gb

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
    """A few lines for the terminal: counts, mean score, where the outputs are."""
    res = list(report.results.values())
    mean = sum(float(r["score"]) for r in res) / len(res) if res else 0.0
    max_score = max((float(r["max_score"]) for r in res), default=0.0)
    lines = [f"{len(res)} student(s): {len(report.graded)} graded, {len(report.skipped)} unchanged "
             f"(kept), {len(report.missing)} without a submission, {len(report.failed)} grader failure(s); "
             f"mean {mean:.2f}/{max_score:g}; {report.seconds:.1f} s",
             f"results: {report.out / 'gradebook.csv'}  feedback: {report.out / 'feedback'}"]
    for s in report.failed:
        lines.append(f"  grader failed for {s}: {report.results[s]['errors'][0]}")
    for e in report.gradebook_errors:
        lines.append(f"  nbgrader gradebook not updated for {e}")
    return "\n".join(lines)
