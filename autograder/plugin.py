"""The pytest plugin that turns a hidden suite's run into per-test points and student messages.

Provides the fixtures `grading_session` (session scope: the KernelSession) and `student` (function
scope: a proxy.Student), reads `@points(n, cell=...)` marks, and records for every test: name,
points, max_points, passed, message, cell. Messages:

  * passed: ""
  * GradeFailure (assert_close, check, fail, ...): its message; when it names a known mistake
    (testing.Mistake), the record also has "mistake": that explanation (feedback groups by it)
  * a Student* failure (StudentError, StudentTimeout, ForbiddenCall, ...): "<docstring>: <message>"
  * a plain `assert`: "<docstring> — not passed"
  * anything else (a bug in the suite or the grader): INTERNAL_ERROR; a "suite-error" Fault with the
    traceback goes to `faults` (the result's instructor notes), never to the student.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from autograder.proxy import Student, StudentFailure
from autograder.result import Fault, TestResult
from autograder.testing import GradeFailure

INTERNAL_ERROR = "internal grader error in this test; your instructor has been told"


@dataclass
class TestRecord:
    name: str
    max_points: float
    cell: str | None
    doc: str
    points: float = 0.0
    passed: bool = False
    message: str = "not run"
    mistake: str | None = None

    def to_result(self) -> TestResult:
        """The test as the result contract has it (autograder/result.py)."""
        return TestResult(self.name, self.points, self.max_points, self.passed, self.message, self.cell,
                          mistake=self.mistake)

    def as_json(self) -> dict:
        return self.to_result().to_dict()


def _doc(item) -> str:
    doc = (getattr(item, "function", None) and item.function.__doc__) or ""
    first = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    return first or item.name.removeprefix("test_").replace("_", " ")


class GradingPlugin:
    """Pass as `pytest.main(..., plugins=[GradingPlugin(session)])`; results in `records`."""

    def __init__(self, session=None, not_graded: str | None = None):
        self.session = session
        self.not_graded = not_graded
        self.records: dict[str, TestRecord] = {}
        self.collect_errors: list[str] = []
        self.faults: list[Fault] = []          # for the instructor only (the result's instructor notes)

    @property
    def instructor_log(self) -> list[str]:
        """The faults as text (message, then the traceback)."""
        return [f"{f.message}\n{f.detail}".rstrip() for f in self.faults]

    # ---- configuration and fixtures ---------------------------------------------------------
    def pytest_configure(self, config):
        config.addinivalue_line("markers", "points(n, cell=None): the test's points and the grade_id of its cell")

    @pytest.fixture(scope="session")
    def grading_session(self):
        if self.session is None:
            raise RuntimeError("no kernel session: this suite is being collected, not run")
        return self.session

    @pytest.fixture
    def student(self, grading_session):
        return Student(grading_session)

    # ---- collection -------------------------------------------------------------------------
    def pytest_collectreport(self, report):
        if report.failed:
            self.collect_errors.append(str(report.longreprtext))

    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            mark = item.get_closest_marker("points")
            if mark is None or not mark.args:
                self._instructor(f"{item.nodeid} has no @points(...); counted as 1 point", item)
                max_points, cell = 1.0, None
            else:
                max_points, cell = float(mark.args[0]), mark.kwargs.get("cell")
            record = TestRecord(name=item.name, max_points=max_points, cell=cell, doc=_doc(item))
            if self.not_graded:
                record.message = f"not graded: {self.not_graded}"
            self.records[item.nodeid] = record

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        """Tell the kernel session which exercise (test cell) is graded now: its kernel restarts are
        counted per exercise, so a crash costs that exercise's points only."""
        record = self.records.get(item.nodeid)
        if self.session is not None and record is not None and hasattr(self.session, "exercise"):
            self.session.exercise = record.cell or record.name

    # ---- results ----------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        record = self.records.get(item.nodeid)
        if record is None:
            return
        if report.when == "call" and report.passed:
            record.passed, record.points, record.message = True, record.max_points, ""
        elif report.failed and report.when in ("setup", "call"):
            record.passed, record.points = False, 0.0
            record.message = self._message(item, call, record)
        elif report.failed:                       # teardown: the suite's problem, not the student's
            self._instructor(f"{item.nodeid} failed in teardown", item, report.longreprtext)
        elif report.skipped and report.when in ("setup", "call"):
            record.passed, record.points, record.message = False, 0.0, "this test was skipped"

    def _message(self, item, call, record: TestRecord) -> str:
        exc = call.excinfo.value if call.excinfo is not None else None
        if isinstance(exc, GradeFailure):
            mistake = getattr(exc, "mistake", None)
            record.mistake = mistake if isinstance(mistake, str) and mistake else None
            return str(exc)
        if isinstance(exc, StudentFailure):
            return f"{record.doc}: {exc}"
        if isinstance(exc, pytest.fail.Exception):     # pytest.fail("...") in a suite: its message
            return str(exc.msg or f"{record.doc} — not passed")
        if isinstance(exc, AssertionError):
            return f"{record.doc} — not passed"
        text = call.excinfo.getrepr(style="long", chain=True) if call.excinfo is not None else "(no traceback)"
        what = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception"
        self._instructor(f"internal error in {item.nodeid}: {what}", item, str(text))
        return INTERNAL_ERROR

    def _instructor(self, message: str, item=None, detail: str = "") -> None:
        """Record a fault of the suite or the grader (never the student's) for the instructor."""
        first = (message.strip().splitlines() or [""])[0][:500]
        self.faults.append(Fault("suite-error", first, getattr(item, "name", None), str(detail)[-20000:]))
