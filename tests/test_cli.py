"""`python -m autograder ...` as instructors run it, with the real grader on real kernels.

The toy assignment (tests/fixtures/toy, H3's) is laid out as a course root in a temporary folder
(course/toy/toy.ipynb, autograder/suites/toy/) and graded through `--root`. Its suite gives
add 2 points (two tests), double 2, my_conv 3 (two tests): 7 in all; that is the oracle below.
"""
from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder import gradebook as nbg

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "toy"
TOY_RELEASE = TOY / "release" / "toy.ipynb"
CANARY = "TOY-SUITE-CANARY-7f3a91"
EXPECTED = {"alice": 7.0, "bob": 5.0, "carol": 0.0, "dave": 0.0, "erin": 0.0}
VOLATILE = {"graded_at", "grader_seconds", "submission", "timing"}


def autograder(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **kw)


def toy_kit():
    sys.path.insert(0, str(TOY))
    try:
        import toy_kit
    finally:
        sys.path.remove(str(TOY))
    return toy_kit


def make_root(root: Path) -> Path:
    """A course root holding the toy assignment and five students' hand-ins (nbgrader layout)."""
    (root / "course" / "toy").mkdir(parents=True)
    shutil.copy(TOY_RELEASE, root / "course" / "toy" / "toy.ipynb")
    shutil.copytree(TOY / "suite", root / "autograder" / "suites" / "toy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    kit = toy_kit()
    sub = root / "submitted"
    hand_ins = {"alice": kit.submission(),                                        # all correct
                "bob": kit.submission(add="def add(a, b):\n    return a - b"),    # loses add's 2 points
                "carol": nbformat.read(TOY_RELEASE, as_version=4)}          # the release untouched
    for student, nb in hand_ins.items():
        (sub / student / "toy").mkdir(parents=True)
        nbformat.write(nb, sub / student / "toy" / "toy.ipynb")
    (sub / "dave" / "toy").mkdir(parents=True)                                    # nothing handed in
    (sub / "erin" / "toy").mkdir(parents=True)
    (sub / "erin" / "toy" / "toy.ipynb").write_bytes(b"{ this is not a notebook")
    return root


def rows(out: Path) -> dict[str, dict]:
    with open(out / "gradebook.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def stable(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE}


def suite_code_lines() -> list[str]:
    """Lines of the toy suite other than docstrings (docstrings are written for students)."""
    text = (TOY / "suite" / "test_toy.py").read_text()
    docs = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.FunctionDef)) and ast.get_docstring(node) is not None:
            docs.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    return [l.strip() for i, l in enumerate(text.splitlines(), 1) if i not in docs and len(l.strip()) >= 12]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """One batch over all five students, as the instructor runs it."""
    root = make_root(tmp_path_factory.mktemp("course"))
    out = root / "grades"
    proc = autograder("grade", "toy", root / "submitted", "--root", root, "--workers", 2,
                      "--course-dir", root, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out, proc


# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_batch_grades_everyone(clean_run):
    root, out, proc = clean_run
    got = rows(out)
    assert {s: float(r["score"]) for s, r in got.items()} == EXPECTED
    assert {float(r["max_score"]) for r in got.values()} == {7.0}
    assert got["dave"]["status"] == "missing" and "no submission found" in got["dave"]["errors"]
    erin = json.loads((out / "erin.json").read_text())                # not a notebook: 0, and why
    assert erin["errors"] and got["erin"]["status"] == "errors"
    assert len(erin["tests"]) == 5 and not any(t["passed"] for t in erin["tests"])
    assert float(got["bob"]["test_add_numbers"]) == 0 and float(got["bob"]["test_double"]) == 2
    assert "5 student(s)" in proc.stdout and "%|" in proc.stderr      # summary; tqdm on stderr

    alice = json.loads((out / "alice.json").read_text())
    assert set(alice) >= {"assignment", "score", "max_score", "tests", "errors", "student",
                          "submission_sha256", "graded_at"}
    assert {t["cell"] for t in alice["tests"]} == {"test_add", "test_double", "test_my_conv"}
    gs = json.loads((out / "gradescope" / "bob" / "results.json").read_text())
    assert gs["score"] == 5.0 and sum(t["max_score"] for t in gs["tests"]) == 7.0


@pytest.mark.slow
def test_stored_results_follow_the_published_schema(clean_run):
    """Real output of the real grader, validated against autograder/schema/grade-result.schema.json."""
    import jsonschema
    from autograder.result import GradeResult, schema
    _, out, _ = clean_run
    validator = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())
    stored = sorted(out.glob("*.json"))
    assert [p.stem for p in stored] == sorted(EXPECTED)
    for path in stored:
        data = json.loads(path.read_text())
        assert [e.message for e in validator.iter_errors(data)] == [], path.name
        assert GradeResult.from_dict(data).score == EXPECTED[path.stem]


@pytest.mark.slow
def test_feedback_never_shows_the_suite(clean_run):
    _, out, _ = clean_run
    code = suite_code_lines()
    for page in sorted((out / "feedback").iterdir()):
        text = page.read_text()
        assert CANARY not in text, page.name
        assert not [l for l in code if l in text], page.name
    bob = (out / "feedback" / "bob.md").read_text()
    assert "**Score: 5 / 7**" in bob and "## 1. add: 0 / 2" in bob
    assert "add on two integers" in bob                               # the test's docstring, for students


@pytest.mark.slow
def test_batch_fills_nbgrader_gradebook(clean_run):
    root, _, _ = clean_run
    with nbg.open_gradebook(root) as gb:
        for student, score in EXPECTED.items():
            assert gb.find_submission("toy", student).score == score, student
        assert gb.find_grade("test_add", "toy", "toy", "bob").auto_score == 0.0
        assert gb.find_grade("test_my_conv", "toy", "toy", "bob").auto_score == 3.0
        assert gb.find_grade("explain", "toy", "toy", "carol").auto_score == 0.0      # left blank
    executed = nbformat.read(root / "autograded" / "alice" / "toy" / "toy.ipynb", as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")   # it was run


@pytest.mark.slow
def test_killed_batch_resumes_like_a_clean_run(clean_run, tmp_path):
    """Kill the whole batch (its process group, SIGKILL) after the first result file; run again.

    One worker and three hand-ins, renamed so that they are graded in this order: erin's broken
    file (no kernel, quick), alice's (a kernel; the kill lands while it runs), dave's (none).
    The rerun must grade alice only and end with the clean run's results.
    """
    root, clean_out, _ = clean_run
    order = {"a-erin": "erin", "b-alice": "alice", "c-dave": "dave"}
    submitted = tmp_path / "submitted"
    for new, old in order.items():
        shutil.copytree(root / "submitted" / old, submitted / new)
    out = tmp_path / "grades"
    cmd = [sys.executable, "-m", "autograder", "grade", "toy", str(submitted), "--root", str(root),
           "--workers", "1", "--no-gradebook", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert {p.stem for p in out.glob("*.json")} == {"a-erin"}, "the kill did not land while alice was graded"

    again = autograder("grade", "toy", submitted, "--root", root, "--workers", 2, "--no-gradebook",
                       "--out", out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 graded, 1 unchanged" in again.stdout                    # alice graded once, erin kept
    clean = rows(clean_out)
    assert rows(out) == {new: {**clean[old], "student": new} for new, old in order.items()}
    for new, old in order.items():
        assert ({k: v for k, v in stable(out / f"{new}.json").items() if k != "student"}
                == {k: v for k, v in stable(clean_out / f"{old}.json").items() if k != "student"}), new


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["grade", "no_such_assignment", "tests"], "no_such_assignment"),
    (["grade", "toy", "/nonexistent/x.ipynb", "--json"], "/nonexistent/x.ipynb"),
])
def test_grader_that_cannot_run_says_why_in_one_line(args, says):
    proc = autograder(*args, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert says in line


def test_help_names_every_command():
    proc = autograder("--help", timeout=60)
    assert proc.returncode == 0
    for command in ("grade", "tests", "release", "bundle", "demo", "bench", "gradescope"):
        assert command in proc.stdout


def test_demo_skips_an_assignment_without_samples_and_tables_the_rest(tmp_path):
    from autograder import demo
    from autograder.assignments import Assignment
    from autograder.result import GradeResult, TestResult
    unwritten = Assignment.at("99_not_written_yet", tmp_path)
    built, why = demo.samples_for(unwritten)
    assert built == {} and "no release notebook" in why
    ok = GradeResult("toy", [TestResult("t", 7.0, 7.0, True)], status="graded")
    crashed = GradeResult("toy", [TestResult("t", 0.0, 7.0, False, "the grader failed (exit status 1)")],
                          ["the grader failed (exit status 1)"], status="grader-failed")
    text = demo.table({"toy": {"alice-correct": ok, "dave-cheat": crashed}}, ["toy"])
    lines = text.splitlines()
    assert lines[0].split() == ["student", "toy", "notes"]
    assert lines[2].split()[:2] == ["alice-correct", "7/7"]
    assert lines[3].split()[:3] == ["dave-cheat", "0/7", "!"]          # no grade: marked, not a silent 0
    assert demo.note_for(crashed) == "the grader failed (exit status 1)"
    crashed.instructor.add("suite-error", "internal error in test_t: KeyError: 'x'", test="t")
    assert "dave-cheat: suite-error in t: internal error" in demo.faults({"toy": {"dave-cheat": crashed}})
    assert demo.faults({"toy": {"alice-correct": ok}}).endswith("none")


def test_gradebook_only_for_a_course_folder(tmp_path):
    """nbgrader's gradebook is written for <root>/submitted, never for a loose folder."""
    from autograder.cli import course_root_of
    (tmp_path / "course" / "submitted").mkdir(parents=True)
    (tmp_path / "flat").mkdir()
    assert course_root_of(tmp_path / "course" / "submitted") == (tmp_path / "course").resolve()
    assert course_root_of(tmp_path / "course") == (tmp_path / "course").resolve()
    assert course_root_of(tmp_path / "flat") is None


@pytest.mark.slow
def test_a_grader_over_its_own_memory_limit_fails_that_submission_not_the_batch(tmp_path):
    """The grading process runs under its own memory cap (grader_memory_mb); a breach is a grader
    failure the instructor sees for that submission, and the batch goes on and writes its gradebook."""
    root = make_root(tmp_path)
    out = root / "grades"
    proc = autograder("grade", "toy", root / "submitted", "--root", root, "--workers", 2, "--course-dir", root,
                      "--out", out, "--grader-memory", 64, "--no-progress")
    got = rows(out)
    assert set(got) == set(EXPECTED), proc.stderr[-3000:]
    failed = [s for s, r in got.items() if r["status"] == "grader-failed"]
    assert {"alice", "bob", "carol"} <= set(failed), got
    # the breach can come during the grader's own start-up (then the reason is a bare MemoryError) or while
    # grading (then it names the limit): either way the student's row says the grader failed, not a score
    assert all("the grader failed" in got[s]["errors"] for s in failed), \
        {s: got[s]["errors"] for s in failed if "the grader failed" not in got[s]["errors"]}


def test_more_workers_than_cores_give_the_same_scores_every_time(tmp_path):
    """Four gradings at once on two cores, twice over, with kernels crashing and restarting
    meanwhile: every run gives every student the same scores (a crashed kernel's clean-up once killed
    another grading's kernel; see test_engine_sandbox)."""
    kit = toy_kit()
    root = make_root(tmp_path / "course")
    sub = root / "submitted"
    shutil.rmtree(sub)
    crash = "import os\nos._exit(1)"
    hand_ins = {"alice": kit.submission(),
                "bob": kit.submission(add="def add(a, b):\n    return a - b"),
                "cora": kit.insert_after(kit.submission(), "test-double", crash),       # notebook restarts
                "dina": kit.submission(double="def double(x):\n    import os\n    os._exit(1)")}
    for student, nb in hand_ins.items():
        (sub / student / "toy").mkdir(parents=True)
        nbformat.write(nb, sub / student / "toy" / "toy.ipynb")
    expected = {"alice": 7.0, "bob": 5.0, "cora": 7.0, "dina": 5.0}
    for run in range(2):
        out = root / f"grades{run}"
        proc = autograder("grade", "toy", sub, "--root", root, "--workers", 4, "--force", "--out", out)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = rows(out)
        assert {s: float(r["score"]) for s, r in got.items()} == expected, (run, got)
