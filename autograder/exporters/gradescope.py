"""Gradescope's autograder results format: gradescope/<student>/results.json.

The same function writes /autograder/results/results.json inside a Gradescope autograder
(autograder/gradescope.py). Format (Gradescope's documentation, "Autograder Specifications"):

    {"score": 5.0, "output": "...", "tests": [{"name", "score", "max_score", "status", "output",
                                             "visibility"}]}

status is "passed" or "failed"; every hidden test is "visible" to the student with its
student-facing message only. The instructor's notes (faults) become one extra test with 0 points
and visibility "hidden" (Gradescope shows those to instructors, never to students), holding one
line per fault: no traceback, so no line of the hidden suite's source.
"""
from __future__ import annotations

import json

from autograder import feedback
from autograder.exporters.base import Entry, ExportContext, Exporter, write_atomic
from autograder.result import GradeResult

FAULTS_TEST = "Grader faults (instructors only)"


def results_json(result: GradeResult, execution_time: float | None = None) -> dict:
    """A grade result in Gradescope's results.json format."""
    tests = [{"name": feedback.humanize(t.name), "score": float(t.points), "max_score": float(t.max_points),
              "status": "passed" if t.passed else "failed", "output": t.message, "visibility": "visible"}
             for t in result.tests]
    if result.faults:
        tests.append({"name": FAULTS_TEST, "score": 0.0, "max_score": 0.0, "status": "failed",
                      "output": "\n".join(f.line() for f in result.faults), "visibility": "hidden"})
    out: dict = {"score": result.score, "tests": tests}
    if result.errors:
        out["output"] = "\n".join(result.errors)
    if execution_time is not None:
        out["execution_time"] = round(float(execution_time), 3)
    return out


class GradescopeResults(Exporter):
    name = "gradescope"
    help = "gradescope/<student>/results.json (Gradescope's format)"

    def student(self, ctx: ExportContext, entry: Entry) -> None:
        write_atomic(ctx.out / "gradescope" / entry.student / "results.json",
                     json.dumps(results_json(entry.result, entry.result.grader_seconds), indent=1) + "\n")
