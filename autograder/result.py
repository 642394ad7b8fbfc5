"""The grade result: what `python -m autograder grade <a> <notebook> --json` prints, as types.

Every producer (the runner, the pytest plugin's records, the batch's zero results and stamps) builds
these types and every consumer (feedback, the exporters, nbgrader's gradebook, the banks, the demo)
reads them back with `GradeResult.from_json`, which validates. The JSON Schema published for other
tools is autograder/schema/grade-result.schema.json; tests check real output against it and check
that it agrees with these types.

    {"assignment": "01_convolution", "score": 19.0, "max_score": 21.0,
     "tests": [{"name": "test_naive_stride", "points": 2.0, "max_points": 2.0, "passed": true,
                "message": "", "cell": "test_conv2d_naive"}],
     "errors": ["notebook-level problems, for the student"],
     "instructor": {"isolation": "userns", "faults": [...], "tampering": [...]}}

Who sees what:
- `tests[*].message` and `errors` are written for the student (feedback shows them); they never
  contain the hidden suite's source or expected values.
- `instructor` is for the instructor only: faults that are not the student's (a hidden test that
  crashed, with its traceback; a sandbox mode in which the kernel could read the hidden suites; a
  tampering finding; the grading subprocess's stderr). No exporter that students read shows it.

A batch adds its stamp (student, submission, submission_sha256, suite_fingerprint, graded_at,
status, grader_seconds) to the same object before storing it as grades/<a>/<student>.json.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "grade-result.schema.json"
MAX_ERRORS = 50               # notebook-level errors kept (then "... and N more")
MAX_TEXT = 1000               # characters of one error
STATUSES = ("graded", "errors", "grader-failed", "missing", "refused")
FAULT_KINDS = ("suite-error", "isolation", "tampering", "grader-failed", "grader-stderr")
_TOLERANCE = 1e-6
# The "isolation" fault and the warning printed when the kernel can read the hidden suites.
READABLE_SUITES = ("the kernel ran without namespaces (isolation mode 'none'): student code could read the "
                   "hidden suites and solutions, other submissions and the instructor's files, and reach "
                   "the network; use this mode only for trusted code (run as root or allow user namespaces)")


class ResultError(ValueError):
    """A JSON value is not a grade result (the message says where and why)."""


# ---------------------------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------------------------
@dataclass
class TestResult:
    """One hidden test. points in [0, max_points]; passed means full points.

    message: why it failed, for the student ("" when passed); cell: the grade_id of the notebook's
    autograded test cell it scores for; description: its docstring, written for students (the batch
    adds it for feedback); mistake: the explanation of a known wrong answer the result matched
    (autograder.testing.Mistake; feedback puts it first in its exercise).
    """
    name: str
    points: float
    max_points: float
    passed: bool
    message: str = ""
    cell: str | None = None
    description: str | None = None
    mistake: str | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "points": float(self.points), "max_points": float(self.max_points),
               "passed": self.passed, "message": self.message}
        if self.cell:
            out["cell"] = self.cell
        if self.description:
            out["description"] = self.description
        if self.mistake:
            out["mistake"] = self.mistake
        return out


@dataclass
class Fault:
    """A fault that is not the student's, for the instructor only.

    kind: one of FAULT_KINDS; message: one line; test: the hidden test it concerns, if any;
    detail: more (a traceback, stderr); never shown to students.
    """
    kind: str
    message: str
    test: str | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "message": self.message}
        if self.test:
            out["test"] = self.test
        if self.detail:
            out["detail"] = self.detail
        return out

    def line(self) -> str:
        """One line for a summary: "suite-error in test_x: ZeroDivisionError: ..."."""
        where = f" in {self.test}" if self.test else ""
        return f"{self.kind}{where}: {' '.join(self.message.split())[:300]}"


@dataclass
class InstructorNotes:
    """What only the instructor sees: the sandbox mode the kernel got, faults, tampering findings."""
    isolation: str | None = None
    faults: list[Fault] = field(default_factory=list)
    tampering: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"isolation": self.isolation, "faults": [f.to_dict() for f in self.faults],
                "tampering": list(self.tampering)}

    def add(self, kind: str, message: str, *, test: str | None = None, detail: str = "") -> Fault:
        fault = Fault(kind, message, test, detail)
        self.faults.append(fault)
        return fault


@dataclass
class GradeResult:
    """One graded submission (see the module docstring). score and max_score are the sums of the tests'."""
    assignment: str
    tests: list[TestResult]
    errors: list[str] = field(default_factory=list)
    instructor: InstructorNotes = field(default_factory=InstructorNotes)
    timing: dict | None = None                 # where the time went (for `autograder bench`)
    # the batch's stamp
    student: str | None = None
    submission: str | None = None
    submission_sha256: str | None = None
    suite_fingerprint: str | None = None
    graded_at: str | None = None
    status: str | None = None
    grader_seconds: float | None = None

    @property
    def score(self) -> float:
        return round(sum(t.points for t in self.tests), 6)

    @property
    def max_score(self) -> float:
        return round(sum(t.max_points for t in self.tests), 6)

    @property
    def faults(self) -> list[Fault]:
        return self.instructor.faults

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def zero(cls, assignment: str, reason: str, template: list[TestResult | dict]) -> "GradeResult":
        """0 points: every test of `template` (name, max_points, cell) failed with `reason` as the message."""
        tests = []
        for t in template:
            t = t if isinstance(t, TestResult) else _test_from(t, "template", template=True)
            tests.append(TestResult(t.name, 0.0, float(t.max_points), False, reason, t.cell, t.description))
        return cls(assignment, tests, [reason])

    def add_error(self, text: str) -> None:
        self.errors.append(text)

    def trimmed(self) -> "GradeResult":
        """Errors capped (MAX_ERRORS of at most MAX_TEXT characters), as the contract promises."""
        errors = list(self.errors)
        if len(errors) > MAX_ERRORS:
            errors = errors[:MAX_ERRORS] + [f"... and {len(errors) - MAX_ERRORS} more"]
        self.errors = [e if len(e) <= MAX_TEXT else e[:MAX_TEXT - 3] + "..." for e in errors]
        return self

    def stamped(self, **stamp) -> "GradeResult":
        """A copy with the batch's stamp fields set (student, status, ...)."""
        unknown = set(stamp) - set(STAMP)
        if unknown:
            raise TypeError(f"not stamp fields: {sorted(unknown)}")
        copy = GradeResult.from_dict(self.to_dict())
        for k, v in stamp.items():
            setattr(copy, k, v)
        return copy

    def student_view(self) -> "GradeResult":
        """The result without what students never see (the instructor notes, timings)."""
        copy = GradeResult.from_dict(self.to_dict())
        copy.instructor = InstructorNotes()
        copy.timing = None
        return copy

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict[str, Any] = {"assignment": self.assignment, "score": self.score, "max_score": self.max_score,
                               "tests": [t.to_dict() for t in self.tests], "errors": list(self.errors),
                               "instructor": self.instructor.to_dict()}
        if self.timing is not None:
            out["timing"] = self.timing
        for name in STAMP:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "GradeResult":
        """Validate and read a parsed JSON value; ResultError says what is wrong."""
        if not isinstance(data, dict):
            raise ResultError("a grade result must be a JSON object")
        unknown = sorted(set(data) - TOP_KEYS)
        if unknown:
            raise ResultError(f"unknown key(s) {unknown}")
        for key in ("assignment", "score", "max_score", "tests", "errors"):
            if key not in data:
                raise ResultError(f"missing key {key!r}")
        assignment = _typed(data, "assignment", str, "result")
        if not isinstance(data["tests"], list):
            raise ResultError("tests must be a list")
        tests = [_test_from(t, f"tests[{i}]") for i, t in enumerate(data["tests"])]
        errors = data["errors"]
        if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
            raise ResultError("errors must be a list of strings")
        result = cls(assignment, tests, list(errors), _notes_from(data.get("instructor")))
        for name, kind in (("score", "score"), ("max_score", "max_score")):
            value = _number(data, name, "result")
            if not math.isclose(value, getattr(result, kind), rel_tol=0, abs_tol=_TOLERANCE * (1 + len(tests))):
                raise ResultError(f"{name} {value} is not the sum over the tests ({getattr(result, kind)})")
        if data.get("timing") is not None:
            result.timing = _typed(data, "timing", dict, "result")
        for name, kinds in STAMP.items():
            if data.get(name) is not None:
                setattr(result, name, _typed(data, name, kinds, "result"))
        if result.status is not None and result.status not in STATUSES:
            raise ResultError(f"status {result.status!r} is not one of {STATUSES}")
        if result.grader_seconds is not None:
            result.grader_seconds = float(result.grader_seconds)
        return result

    @classmethod
    def from_json(cls, text: str | bytes) -> "GradeResult":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ResultError(f"not JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> "GradeResult":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


STAMP: dict[str, type | tuple[type, ...]] = {
    "student": str, "submission": str, "submission_sha256": str, "suite_fingerprint": str,
    "graded_at": str, "status": str, "grader_seconds": (int, float)}
TOP_KEYS = {"assignment", "score", "max_score", "tests", "errors", "instructor", "timing", *STAMP}
_TEST_KEYS = {f.name for f in fields(TestResult)}
_FAULT_KEYS = {f.name for f in fields(Fault)}


def _typed(data: dict, key: str, kinds, where: str):
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        raise ResultError(f"{where}: {key} has the wrong type ({type(value).__name__})")
    return value


def _as_tuple(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _number(data: dict, key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ResultError(f"{where}: {key} must be a finite number, not {value!r}")
    return float(value)


def _test_from(data: Any, where: str, template: bool = False) -> TestResult:
    """A test of a result (template: a suite's test as collected, without points, passed, message)."""
    if not isinstance(data, dict):
        raise ResultError(f"{where} must be an object")
    unknown = sorted(set(data) - _TEST_KEYS)
    if unknown:
        raise ResultError(f"{where}: unknown key(s) {unknown}")
    needed = ("name", "max_points") if template else ("name", "points", "max_points", "passed", "message")
    missing = [k for k in needed if k not in data]
    if missing:
        raise ResultError(f"{where}: missing {', '.join(missing)}")
    name = _typed(data, "name", str, where)
    max_points = _number(data, "max_points", where)
    points = _number(data, "points", where) if "points" in data else 0.0
    if max_points < 0 or not -_TOLERANCE <= points <= max_points + _TOLERANCE:
        raise ResultError(f"{where} ({name}): points {points} outside [0, {max_points}]")
    passed = data.get("passed", False)
    if not isinstance(passed, bool):
        raise ResultError(f"{where} ({name}): passed must be true or false")
    if passed and points < max_points - _TOLERANCE:
        raise ResultError(f"{where} ({name}): passed with {points} of {max_points} points")
    message = data.get("message", "")
    cell, description, mistake = data.get("cell"), data.get("description"), data.get("mistake")
    for key, value in (("message", message), ("cell", cell), ("description", description), ("mistake", mistake)):
        if value is not None and not isinstance(value, str):
            raise ResultError(f"{where} ({name}): {key} must be a string")
    return TestResult(name, points, max_points, passed, message or "", cell or None, description or None,
                      mistake or None)


def _notes_from(data: Any) -> InstructorNotes:
    if data is None:
        return InstructorNotes()
    if not isinstance(data, dict) or set(data) - {"isolation", "faults", "tampering"}:
        raise ResultError("instructor must be an object with isolation, faults, tampering")
    isolation = data.get("isolation")
    if isolation is not None and not isinstance(isolation, str):
        raise ResultError("instructor.isolation must be a string or null")
    faults = []
    for i, f in enumerate(data.get("faults") or []):
        where = f"instructor.faults[{i}]"
        if not isinstance(f, dict) or set(f) - _FAULT_KEYS or not {"kind", "message"} <= set(f):
            raise ResultError(f"{where} must be an object with kind and message")
        if f["kind"] not in FAULT_KINDS:
            raise ResultError(f"{where}: kind {f['kind']!r} is not one of {FAULT_KINDS}")
        if not all(isinstance(f.get(k, ""), str) for k in ("message", "detail")) or \
                not isinstance(f.get("test") or "", str):
            raise ResultError(f"{where}: message, test and detail must be strings")
        faults.append(Fault(f["kind"], f["message"], f.get("test"), f.get("detail", "")))
    tampering = data.get("tampering") or []
    if not isinstance(tampering, list) or not all(isinstance(t, str) for t in tampering):
        raise ResultError("instructor.tampering must be a list of strings")
    return InstructorNotes(isolation, faults, list(tampering))


def schema() -> dict:
    """The published JSON Schema (autograder/schema/grade-result.schema.json)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def is_result(data: Any) -> bool:
    try:
        GradeResult.from_dict(data)
    except ResultError:
        return False
    return True


__all__ = ["GradeResult", "TestResult", "Fault", "InstructorNotes", "ResultError", "schema", "is_result",
           "SCHEMA_PATH", "STATUSES", "FAULT_KINDS"]
