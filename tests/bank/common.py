"""Building blocks of the submission banks (tests/bank/b<NN>_<name>.py) and their tests.

A bank is a list of `Case`s, each a notebook a student could hand in together with what the
grader must make of it. The banks pin the grader's behaviour on real notebooks: the reference
solution gets full marks, correct but differently written solutions also do, each typical honest
mistake loses points in the cell it belongs to (and keeps the others), and cheats lose points.

How a case is built: take the RELEASE notebook (course/<a>/<a>.ipynb, what students receive) and
fill its answer cells (nbgrader `solution: true`) with the reference solution's source, except
those given as keywords:

    submission("01_convolution")                               # the reference, in the release
    submission("01_convolution", im2col=None)                  # im2col left as the stub
    submission("01_convolution", conv_params=edit(ref["conv_params"], "+ out_channels", ""))

A bank module defines

    ASSIGNMENT = "01_convolution"
    CASES = [Case(...), ...]
    DEMO = {"correct": name, "mistakes": name, "blank": name, "cheat": name}

and tests/test_banks.py picks it up by its file name: it grades every case of the bank at once with
the batch command (`grade_bank`) and checks each result with `problems(case, result)`.
The demo (tasks.py) loads a bank with `load_bank(assignment)` and writes cases with `write_cases`.
"""
from __future__ import annotations

import functools
import importlib
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import nbformat
from nbformat import NotebookNode

from autograder.result import GradeResult

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"

KINDS = ("correct", "alternative", "mistake", "cheat", "broken")

# The lines nbgrader's generate_assignment replaces with the stub (ClearSolutions' delimiters).
_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


# ---------------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------------
def source_path(assignment: str) -> Path:
    """The instructor's source notebook: solutions/<a>/<a>.ipynb."""
    return REPO / "solutions" / assignment / f"{assignment}.ipynb"


def release_path(assignment: str) -> Path:
    """The release notebook students receive: course/<a>/<a>.ipynb (made by generate_assignment)."""
    return REPO / "course" / assignment / f"{assignment}.ipynb"


def _read(path: Path, what: str) -> NotebookNode:
    if not path.is_file():
        hint = (" (run `.venv/bin/nbgrader generate_assignment <assignment> --force` from the repository root)"
                if what == "release" else "")
        raise FileNotFoundError(f"the {what} notebook {path} does not exist{hint}")
    return nbformat.read(path, as_version=4)


def _nbgrader(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def answer_cells(nb: NotebookNode) -> dict[str, NotebookNode]:
    """The notebook's answer cells (nbgrader `solution: true`) by grade_id, in notebook order."""
    cells = {}
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta.get("solution"):
            cells[meta["grade_id"]] = cell
    return cells


def solution_answers(assignment: str) -> dict[str, str]:
    """grade_id -> source of each answer cell of the SOURCE notebook, solution markers removed.

    The `### BEGIN SOLUTION` / `### END SOLUTION` lines are dropped and everything else kept, so
    the result is exactly what a student who wrote the reference solution into the stub would hand
    in (the signature and docstring around the region stay).
    """
    nb = _read(source_path(assignment), "source")
    return {gid: "\n".join(line for line in cell.source.split("\n") if not _MARKER.match(line))
            for gid, cell in answer_cells(nb).items()}


@functools.cache
def _solution_answers_cached(assignment: str) -> dict[str, str]:
    return solution_answers(assignment)


def reference(assignment: str, grade_id: str) -> str:
    """The reference answer of one answer cell (the source notebook is read once per assignment)."""
    return _solution_answers_cached(assignment)[grade_id]


def release(assignment: str) -> NotebookNode:
    """The release notebook, untouched (the "blank" submission)."""
    return _read(release_path(assignment), "release")


def submission(assignment: str, /, **answers: str | None) -> NotebookNode:
    """The release notebook with its answer cells filled.

    Every answer cell gets the reference solution's source, except the grade_ids given as keywords:
    a string replaces that cell's source, None leaves the release's stub. An unknown grade_id is an
    error, so a renamed cell cannot silently turn a mistake case into the reference.
    """
    nb = release(assignment)
    cells = answer_cells(nb)
    unknown = sorted(set(answers) - set(cells))
    if unknown:
        raise KeyError(f"{assignment} has no answer cell(s) {unknown}; answer cells: {sorted(cells)}")
    reference = solution_answers(assignment)
    for gid, cell in cells.items():
        if gid in answers:
            if answers[gid] is not None:
                cell.source = answers[gid]
        elif gid in reference:
            cell.source = reference[gid]
    return nb


def grade_cell_points(assignment: str) -> dict[str, float]:
    """grade_id -> points of the source notebook's AUTOGRADED test cells (grade, not solution).

    The hidden suite's points per cell must add up to these (manually graded answers are not in it).
    """
    nb = _read(source_path(assignment), "source")
    return {m["grade_id"]: float(m.get("points", 0)) for m in map(_nbgrader, nb.cells)
            if m.get("grade") and not m.get("solution")}


def edit(source: str, old: str, new: str, count: int = 1) -> str:
    """`source` with `old` replaced by `new`, insisting that `old` occurs exactly `count` times.

    Mistake cases are small edits of the reference; if the reference changes so that an edit no
    longer applies, the bank fails here, loudly, instead of grading an unchanged reference.
    """
    found = source.count(old)
    if found != count:
        raise ValueError(f"expected {count} occurrence(s) of {old!r} in the source, found {found}:\n{source}")
    return source.replace(old, new)


def append(source: str, code: str) -> str:
    """`source` followed by more code (e.g. a redefinition that wraps the reference)."""
    return source.rstrip("\n") + "\n\n" + code.strip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# Cases and expectations
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lose:
    """The case must lose points in each of `cells` and keep full points in each of `keep`.

    Cells are the grade_ids of autograded test cells (the `cell` of the suite's tests).
    """
    cells: tuple[str, ...]
    keep: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "cells", tuple([self.cells] if isinstance(self.cells, str) else self.cells))
        object.__setattr__(self, "keep", tuple([self.keep] if isinstance(self.keep, str) else self.keep))
        if not self.cells:
            raise ValueError("Lose needs at least one cell that must lose points")
        both = set(self.cells) & set(self.keep)
        if both:
            raise ValueError(f"cells both lost and kept: {sorted(both)}")

    @classmethod
    def only(cls, cells, among) -> "Lose":
        """Lose points in `cells`, keep full points in every other cell of `among`."""
        cells = tuple([cells] if isinstance(cells, str) else cells)
        return cls(cells, keep=tuple(c for c in among if c not in cells))


Expect = Union[str, float, Lose]


@dataclass(frozen=True)
class Named:
    """One honest mistake of a case, and the words with which the grader must name it.

    The mistake counts as named when a failed test of `cell` carries a "mistake" (the explanation
    of a testing.Mistake the suite recognised) that contains every one of `keywords`
    (case-insensitive). Example: Named("test_conv2d_naive", "flipped").
    """
    cell: str
    keywords: tuple[str, ...]

    def __init__(self, cell: str, *keywords: str):
        if not keywords or not all(isinstance(k, str) and k.strip() for k in keywords):
            raise ValueError(f"Named({cell!r}, ...) needs at least one non-empty keyword")
        object.__setattr__(self, "cell", cell)
        object.__setattr__(self, "keywords", tuple(keywords))

    def found_in(self, result: dict | None) -> bool:
        """Whether `result` (the grader's JSON) names this mistake in its cell."""
        for test in (result or {}).get("tests", []):
            mistake = str(test.get("mistake") or "").lower()
            if (test.get("cell") == self.cell and not test.get("passed") and mistake
                    and all(k.lower() in mistake for k in self.keywords)):
                return True
        return False


@dataclass(frozen=True)
class Case:
    """One submission of a bank.

    name: file stem and student id ([A-Za-z0-9_-]); kind: one of KINDS;
    build() -> NotebookNode (or bytes for a malformed file); expect: "full" (score == max_score),
    "zero" (score == 0), an exact score (float), or Lose(cells, keep); note: why the case exists;
    names: for a "mistake" case, each honest mistake it contains as Named(cell, *keywords): the
    words its grading must use (`naming_rate` measures how many of a bank's mistakes are named).
    """
    name: str
    kind: str
    build: Callable[[], Union[NotebookNode, bytes]]
    expect: Expect
    note: str = ""
    names: tuple[Named, ...] = ()

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ValueError(f"case name {self.name!r} must be a plain file stem")
        if self.kind not in KINDS:
            raise ValueError(f"case {self.name}: kind {self.kind!r} is not one of {KINDS}")
        ok = (self.expect in ("full", "zero") or isinstance(self.expect, Lose)
              or (isinstance(self.expect, (int, float)) and not isinstance(self.expect, bool)))
        if not ok:
            raise ValueError(f"case {self.name}: expect {self.expect!r} is not 'full', 'zero', a score or Lose")
        object.__setattr__(self, "names", tuple([self.names] if isinstance(self.names, Named) else self.names))
        if self.names and self.kind != "mistake":
            raise ValueError(f"case {self.name}: only mistake cases name mistakes (names=...)")


def write_cases(cases, directory) -> list[Path]:
    """Write each case as `<directory>/<case.name>.ipynb` (a flat folder for the batch command)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate case names: {dupes}")
    paths = []
    for case in cases:
        path = directory / f"{case.name}.ipynb"
        built = case.build()
        if isinstance(built, (bytes, bytearray)):
            path.write_bytes(bytes(built))
        else:
            nbformat.write(built, path)
        paths.append(path)
    return paths


def cell_scores(result: dict) -> dict[str, tuple[float, float]]:
    """grade cell -> (points, max_points) summed over the result's tests that carry that cell."""
    scores: dict[str, list[float]] = {}
    for test in result.get("tests", []):
        cell = test.get("cell")
        if cell is None:
            continue
        got = scores.setdefault(cell, [0.0, 0.0])
        got[0] += float(test["points"])
        got[1] += float(test["max_points"])
    return {cell: (p, m) for cell, (p, m) in scores.items()}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-6)


def _failed(result: dict, cell: str | None = None) -> str:
    lines = [f"  - {t['name']} [{t.get('cell')}] {t['points']}/{t['max_points']}: {t.get('message', '')[:300]}"
             for t in result.get("tests", [])
             if not t.get("passed") and (cell is None or t.get("cell") == cell)]
    errors = [f"  ! {e[:300]}" for e in result.get("errors", [])]
    return "\n".join(lines + errors) or "  (no failed tests)"


def problems(case: Case, result: dict | None) -> list[str]:
    """What is wrong with `result` (the grader's JSON for this case) given `case.expect`; [] if fine."""
    if result is None:
        return [f"{case.name}: the batch command produced no result"]
    score, max_score = float(result["score"]), float(result["max_score"])
    out = []
    if max_score <= 0:
        out.append(f"{case.name}: max_score is {max_score}")
    expect = case.expect
    if expect == "full":
        if not _close(score, max_score):
            out.append(f"{case.name}: expected full marks, got {score}/{max_score}\n{_failed(result)}")
    elif expect == "zero":
        if not _close(score, 0.0):
            out.append(f"{case.name}: expected 0, got {score}/{max_score}")
    elif isinstance(expect, Lose):
        cells = cell_scores(result)
        for cell in expect.cells:
            if cell not in cells:
                out.append(f"{case.name}: no test scores for cell {cell!r} (cells: {sorted(cells)})")
            elif not cells[cell][0] < cells[cell][1] - 1e-9:
                out.append(f"{case.name}: expected to lose points in {cell!r}, got full {cells[cell]}")
        for cell in expect.keep:
            if cell not in cells:
                out.append(f"{case.name}: no test scores for cell {cell!r} (cells: {sorted(cells)})")
            elif not _close(*cells[cell]):
                out.append(f"{case.name}: expected full points in {cell!r}, got {cells[cell]}\n"
                           f"{_failed(result, cell)}")
    else:
        if not _close(score, float(expect)):
            out.append(f"{case.name}: expected score {expect}, got {score}/{max_score}\n{_failed(result)}")
    return out


# ---------------------------------------------------------------------------------------------
# Naming the mistakes (issue 9)
# ---------------------------------------------------------------------------------------------
@dataclass
class NamingRate:
    """How many of a bank's honest mistakes its grading named, and where it named one it should not."""
    assignment: str
    named: list[str]             # "case: cell: keywords" of each mistake named
    missed: list[str]            # the same for each mistake not named (or a mistake case without `names`)
    false: list[str]             # "case: test: mistake" named on a correct or alternative submission

    @property
    def total(self) -> int:
        return len(self.named) + len(self.missed)

    @property
    def rate(self) -> float:
        return len(self.named) / self.total if self.total else 1.0

    def line(self) -> str:
        return (f"{self.assignment}: {len(self.named)} of {self.total} honest mistakes named ({self.rate:.0%}), "
                f"{len(self.false)} false namings on correct and alternative submissions")


NAMING_RATES: dict[str, NamingRate] = {}          # filled by tests/test_banks.py, printed by tests/conftest.py


def naming_rate(assignment: str, cases, results: dict[str, dict | None]) -> NamingRate:
    """Each mistake case's `names` checked against its result; named explanations on correct ones listed."""
    named, missed, false = [], [], []
    for case in cases:
        result = results.get(case.name)
        if case.kind == "mistake":
            if not case.names:
                missed.append(f"{case.name}: (no names=... given)")
            for n in case.names:
                (named if n.found_in(result) else missed).append(f"{case.name}: {n.cell}: {', '.join(n.keywords)}")
        elif case.kind in ("correct", "alternative"):
            false += [f"{case.name}: {t.get('name')}: {t['mistake']}" for t in (result or {}).get("tests", [])
                      if t.get("mistake")]
    return NamingRate(assignment, named, missed, false)


# ---------------------------------------------------------------------------------------------
# Loading and grading a bank
# ---------------------------------------------------------------------------------------------
def load_bank(assignment: str):
    """The bank module for an assignment ("01_convolution" -> tests/bank/b01_convolution.py)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module(f"bank.b{assignment}")


def validate_bank(module) -> None:
    """Raise if a bank module breaks the contract (names, DEMO keys pointing at real cases)."""
    names = [c.name for c in module.CASES]
    if len(set(names)) != len(names):
        raise ValueError(f"{module.__name__}: duplicate case names")
    missing = {"correct", "mistakes", "blank", "cheat"} - set(module.DEMO)
    if missing:
        raise ValueError(f"{module.__name__}: DEMO lacks {sorted(missing)}")
    unknown = sorted(v for v in module.DEMO.values() if v not in names)
    if unknown:
        raise ValueError(f"{module.__name__}: DEMO names unknown cases {unknown}")


@dataclass
class BankRun:
    """What one batch grading of a bank produced."""
    results: dict[str, dict | None]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    out_dir: Path
    cases: list = field(default_factory=list)


# What a bank grading must never inherit from a test that runs beside it: the fake grader
# (tests/autograder_fakes.py, which grades every notebook as its toy assignment).
TEST_ONLY_ENV = ("AUTOGRADER_GRADER_CMD", "FAKE_GRADER_LOG")


def bank_env() -> dict:
    """The environment a bank's batch command runs in: os.environ, read now, without TEST_ONLY_ENV.
    The background grading (test_banks.py) takes its copy when the tests are collected, before any
    test's monkeypatch.setenv: os.environ is the process's, shared by every thread, so a batch
    started while a test had set AUTOGRADER_GRADER_CMD was once graded by the fake grader."""
    return {name: value for name, value in os.environ.items() if name not in TEST_ONLY_ENV}


def grade_bank(assignment: str, cases, workdir, *, workers: int = 2, timeout: float = 1800,
               nice: int = 0, env: dict | None = None) -> BankRun:
    """Write `cases` into `workdir/submissions` and grade them all with ONE batch command.

    Runs `python -m autograder grade <assignment> <workdir/submissions> --workers N --force
    --run-size tiny --out <workdir/grades>` and reads back `<out>/<case>.json` for each case (None
    where missing). Run size "tiny" (DLCOURSE_RUN_SIZE in the kernel) shrinks the notebooks' own
    demonstrations, which the hidden suites never grade.
    nice > 0 runs it (and the kernels it starts) at a lower CPU priority.
    env: the command's environment (default bank_env(), this process's environment read now).
    """
    workdir = Path(workdir)
    subs, out = workdir / "submissions", workdir / "grades"
    write_cases(cases, subs)
    cmd = [sys.executable, "-m", "autograder", "grade", assignment, str(subs),
           "--workers", str(workers), "--force", "--run-size", "tiny", "--out", str(out)]
    start = time.perf_counter()
    if nice > 0 and shutil.which("nice"):
        cmd = [shutil.which("nice"), "-n", str(nice), *cmd]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else bank_env())
    seconds = time.perf_counter() - start
    results = {}
    for case in cases:
        path = out / f"{case.name}.json"
        # Read through the result contract (autograder/result.py): a malformed result fails here.
        results[case.name] = GradeResult.read(path).to_dict() if path.is_file() else None
    return BankRun(results, proc.returncode, proc.stdout, proc.stderr, seconds, out, list(cases))
