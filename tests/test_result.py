"""The result contract (autograder/result.py) and its published JSON Schema, checked against real output.

The oracle for "real output" is jsonschema validating what the batch and the grader actually wrote;
the oracle for faults is the text a broken hidden suite raises, looked for where instructors read
(batch summary, log, result) and where students read (feedback, Gradescope's visible output).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import nbformat
import pytest

import autograder_fakes as fakes
from autograder import batch
from autograder.exporters import gradescope
from autograder.result import SCHEMA_PATH, GradeResult, ResultError, schema

REPO = Path(__file__).resolve().parents[1]
VALIDATOR = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())


def valid(data) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(data)]


def full_result() -> dict:
    return {"assignment": "toy", "score": 1.5, "max_score": 3.0,
            "tests": [{"name": "test_a", "points": 1.0, "max_points": 1.0, "passed": True, "message": "",
                       "cell": "test_a", "description": "a works"},
                      {"name": "test_b[2]", "points": 0.5, "max_points": 2.0, "passed": False, "message": "half",
                       "mistake": "the kernel is flipped"}],
            "errors": ["cell 3 raised NameError"],
            "instructor": {"isolation": "userns", "tampering": ["TorchDispatchMode"],
                           "faults": [{"kind": "suite-error", "message": "internal error in test_b: KeyError",
                                       "test": "test_b[2]", "detail": "Traceback ..."}]},
            "timing": {"total": 3.2}, "student": "ann", "submission": "/x/ann.ipynb",
            "submission_sha256": "a" * 64, "suite_fingerprint": "b" * 64,
            "graded_at": "2026-12-02T06:00:00+00:00", "status": "errors", "grader_seconds": 4.5}


# ---------------------------------------------------------------------------------------------
def test_schema_is_a_valid_json_schema_and_ships_with_the_package():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert SCHEMA_PATH.parent.name == "schema" and SCHEMA_PATH.parent.parent.name == "autograder"


def test_types_and_schema_agree_on_a_full_result():
    data = full_result()
    assert valid(data) == []
    result = GradeResult.from_dict(data)
    assert result.to_dict() == data                                   # round trip, nothing lost or added
    assert valid(result.to_dict()) == []
    assert GradeResult.from_json(result.to_json()).to_dict() == data


@pytest.mark.parametrize("change, schema_catches", [
    (lambda d: d.update(extra=1), True),                                         # unknown key
    (lambda d: d["tests"][0].pop("passed"), True),                               # missing key
    (lambda d: d["tests"][0].update(points=-1.0), True),                         # negative points
    (lambda d: d.update(status="graded-ish"), True),                             # unknown status
    (lambda d: d["instructor"]["faults"][0].update(kind="oops"), True),          # unknown fault kind
    (lambda d: d["tests"][1].update(passed=True), False),                        # passed with half points
    (lambda d: d.update(score=3.0), False),                                      # score not the sum
    (lambda d: d["tests"][1].update(points=2.5), False),                         # more than max_points
])
def test_bad_results_are_refused(change, schema_catches):
    data = full_result()
    change(data)
    with pytest.raises(ResultError):
        GradeResult.from_dict(data)
    assert bool(valid(data)) == schema_catches       # what JSON Schema cannot say, from_dict still checks


def test_student_view_drops_the_instructor_notes():
    view = GradeResult.from_dict(full_result()).student_view().to_dict()
    assert view["instructor"] == {"isolation": None, "faults": [], "tampering": []} and "timing" not in view


# ---------------------------------------------------------------------------------------------
# Real output of the batch (with the fake grader: its JSON goes through the same contract)
# ---------------------------------------------------------------------------------------------
write = fakes.write_submission


def test_every_stored_result_matches_the_schema_and_faults_reach_the_instructor(fake, tmp_path):
    """Graded, errors, missing, grader crash, and a grader that writes to stderr: all valid, and the
    crash's traceback and the stderr line reach the summary and the log, not the feedback."""
    subs = tmp_path / "subs"
    write(subs / "ann.ipynb", "pass=test_mul")
    write(subs / "ben.ipynb", "error")
    write(subs / "cal.ipynb", "crash")
    write(subs / "dee.ipynb", "warn pass=test_add_small")
    (subs / "eve").mkdir()                                                       # nothing handed in
    out = tmp_path / "grades"
    report = batch.grade_directory(fake, subs, out=out, progress=False, placeholder_tests=fakes.placeholder)
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        assert valid(data) == [], path.name
        assert GradeResult.from_dict(data).to_dict() == data
    statuses = {s: r.status for s, r in report.results.items()}
    assert statuses == {"ann": "graded", "ben": "errors", "cal": "grader-failed", "dee": "graded", "eve": "missing"}

    kinds = {s: [f.kind for f in r.faults] for s, r in report.results.items()}
    assert kinds == {"ann": [], "ben": [], "cal": ["grader-failed"], "dee": ["grader-stderr"], "eve": []}
    text = batch.summary(report)
    assert "grader failed for cal" in text and "the fake grader warns on stderr" in text
    log = report.log.read_text()
    assert "RuntimeError: the fake grader crashed" in log and "Traceback" in log      # cal's full stderr
    assert "UserWarning: the fake grader warns on stderr" in log
    for student in ("cal", "dee"):
        for page in (out / "feedback" / f"{student}.html", out / "feedback" / f"{student}.md"):
            assert "warns on stderr" not in page.read_text() and "Traceback" not in page.read_text()


def test_export_chooses_formats(fake, tmp_path):
    subs = tmp_path / "subs"
    write(subs / "ann.ipynb", "pass=test_mul")
    out = tmp_path / "grades"
    batch.grade_directory(fake, subs, out=out, progress=False, placeholder_tests=fakes.placeholder,
                          exports=["csv,markdown"])
    assert (out / "gradebook.csv").is_file() and (out / "feedback" / "ann.md").is_file()
    assert not (out / "feedback" / "ann.html").exists() and not (out / "gradescope").exists()
    with pytest.raises(ValueError, match="unknown export format"):
        batch.grade_directory(fake, subs, out=out, progress=False, placeholder_tests=fakes.placeholder,
                              exports=["pdf"])


def test_adding_a_format_is_one_file_and_one_line(fake, tmp_path, monkeypatch):
    """An exporter class registered in EXPORTERS is offered by --export and run by the batch."""
    from autograder import exporters
    from autograder.exporters.base import Exporter, write_atomic

    class Scores(Exporter):
        name, help = "scores", "scores.txt"

        def end(self, ctx, entries):
            write_atomic(ctx.out / "scores.txt", "".join(f"{e.student} {e.result.score:g}\n" for e in entries))

    monkeypatch.setattr(exporters, "EXPORTERS", [*exporters.EXPORTERS, Scores])
    subs = tmp_path / "subs"
    write(subs / "ann.ipynb", "pass=test_mul")
    write(subs / "bob.ipynb", "pass=test_add_small")
    out = tmp_path / "grades"
    batch.grade_directory(fake, subs, out=out, progress=False, placeholder_tests=fakes.placeholder,
                          exports=["scores"])
    assert (out / "scores.txt").read_text() == "ann 2\nbob 1\n"


def test_gradescope_results_keep_faults_hidden_from_students():
    result = GradeResult.from_dict(full_result())
    gs = gradescope.results_json(result)
    visible = [t for t in gs["tests"] if t["visibility"] == "visible"]
    hidden = [t for t in gs["tests"] if t["visibility"] != "visible"]
    assert [(t["score"], t["max_score"], t["status"]) for t in visible] == [(1.0, 1.0, "passed"), (0.5, 2.0, "failed")]
    assert len(hidden) == 1 and hidden[0]["visibility"] == "hidden" and hidden[0]["max_score"] == 0
    assert "KeyError" in hidden[0]["output"] and "Traceback" not in json.dumps(gs)
    assert gs["score"] == 1.5 and gs["output"] == "cell 3 raised NameError"


# ---------------------------------------------------------------------------------------------
# Real output of the real grader, with faults of every kind (slow: kernels)
# ---------------------------------------------------------------------------------------------
BUGGY_TEST = '''
from autograder.testing import points


@points(1, cell="test_add")
def test_suite_bug(student):
    """add, checked by a hidden test with a bug"""
    secret_table = {"BUGGY-SUITE-CANARY-51c2": 1}
    return secret_table["missing key"]
'''


@pytest.mark.slow
def test_suite_error_and_tampering_reach_the_instructor_in_batch_mode(tmp_path):
    from test_cli import TOY_RELEASE, autograder, toy_kit
    kit = toy_kit()
    root = tmp_path / "root"
    (root / "course" / "toy").mkdir(parents=True)
    shutil.copy(TOY_RELEASE, root / "course" / "toy" / "toy.ipynb")
    suite = root / "autograder" / "suites" / "toy"
    shutil.copytree(REPO / "tests" / "fixtures" / "toy" / "suite", suite, ignore=shutil.ignore_patterns("__pycache__"))
    (suite / "test_zbug.py").write_text(BUGGY_TEST)
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(kit.submission(), subs / "ann.ipynb")
    # A name only code that fiddles with torch's dispatch uses: a tampering finding.
    nbformat.write(kit.submission(add="def add(a, b):\n    _why = 'TorchDispatchMode'\n    return a + b"),
                   subs / "tom.ipynb")
    out = tmp_path / "grades"
    proc = autograder("grade", "toy", subs, "--root", root, "--out", out, "--no-progress", "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the instructor: summary, log, the stored result
    assert "grader faults" in proc.stdout and "suite-error in test_suite_bug" in proc.stdout, proc.stdout
    assert "KeyError" in proc.stdout and "tom: tampering" in proc.stdout
    logs = list((out / "logs").glob("*.log"))
    assert len(logs) == 1 and "BUGGY-SUITE-CANARY-51c2" in logs[0].read_text()     # the full traceback
    for student in ("ann", "tom"):
        data = json.loads((out / f"{student}.json").read_text())
        assert valid(data) == [], (student, valid(data))                              # real output, published schema
        faults = data["instructor"]["faults"]
        assert any(f["kind"] == "suite-error" and f["test"] == "test_suite_bug" and "BUGGY-SUITE-CANARY-51c2"
                   in f["detail"] for f in faults)
        assert data["instructor"]["isolation"] in ("root", "userns", "none")
    tom = json.loads((out / "tom.json").read_text())
    assert tom["instructor"]["tampering"] == ["TorchDispatchMode"]

    # the students: feedback and Gradescope's visible output say only that the instructor was told
    for page in list((out / "feedback").iterdir()) + list((out / "gradescope").rglob("results.json")):
        text = page.read_text()
        assert "BUGGY-SUITE-CANARY" not in text and "secret_table" not in text, page
    md = (out / "feedback" / "ann.md").read_text()
    assert "your instructor has been told" in md and "KeyError" not in md and "TorchDispatchMode" not in md


@pytest.mark.slow
def test_readable_suites_are_named_in_a_warning(tmp_path):
    """--isolation none: the kernel could read the hidden suites; the grader says so, and records it."""
    from test_cli import TOY_RELEASE, autograder, toy_kit
    root = tmp_path / "root"
    (root / "course" / "toy").mkdir(parents=True)
    shutil.copy(TOY_RELEASE, root / "course" / "toy" / "toy.ipynb")
    shutil.copytree(REPO / "tests" / "fixtures" / "toy" / "suite", root / "autograder" / "suites" / "toy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    nb = tmp_path / "ann.ipynb"
    nbformat.write(toy_kit().submission(), nb)
    proc = autograder("grade", "toy", nb, "--root", root, "--json", "--isolation", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" in proc.stderr and "could read the hidden suites" in proc.stderr
    data = json.loads(proc.stdout)
    assert valid(data) == []
    assert data["instructor"]["isolation"] == "none"
    assert [f["kind"] for f in data["instructor"]["faults"]] == ["isolation"]
    assert data["score"] == data["max_score"] == 7.0
