"""A fake assignment and a fake single grader for testing the batch grader without kernels.

The fake grader is a script run in place of `python -m autograder` (via $AUTOGRADER_GRADER_CMD). It
reads a directive from the submitted notebook's first cell and answers like the real one:

    FAKE pass=test_add_small,test_mul    these tests pass, the others fail (default: none pass)
    FAKE crash                           exit status 1 with a traceback on stderr
    FAKE garbage                         exit 0 but print no JSON
    FAKE error                           a result with a notebook-level error, score 0
    FAKE sleep=2.5                       sleep first (combine with the others)
    FAKE warn                            write a line to stderr, then answer normally

Each start and end is logged to $FAKE_GRADER_LOG ("start <stem> <time> <pid>"), so tests can count
gradings and see whether they overlapped; a pooled grader (path "-", job on stdin) also logs
"ready - <time> <pid>" when it starts and "unused - ..." when it gets no job. The scores it gives are fixed by TESTS below, which is
the oracle the tests compare the batch's outputs with.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat

HERE = Path(__file__).resolve().parent

# (test name, cell, points): the fake hidden suite. Cell points: test_add 2, test_mul 2.
TESTS = [("test_add_small", "test_add", 1.0), ("test_add_large", "test_add", 1.0),
         ("test_mul", "test_mul", 2.0)]
MAX_SCORE = sum(p for _, _, p in TESTS)
FAIL_MESSAGE = "add(5, 5) returned <b>11</b> & not the sum"

FAKE_GRADER = r'''
import json, os, re, sys, time, shutil
from pathlib import Path
TESTS = %(tests)r
FAIL = %(fail)r
args = sys.argv[1:]
assert args[0] == "grade" and "--json" in args, args
assignment, nb = args[1], Path(args[2])
executed = args[args.index("--executed") + 1] if "--executed" in args else None
log = os.environ.get("FAKE_GRADER_LOG")
if args[2] == "-":                       # a pooled grader (autograder/pool.py): the job comes on stdin
    if log:
        with open(log, "a") as f:
            f.write(f"ready - {time.time():.4f} {os.getpid()}\n")
    line = sys.stdin.readline()
    if not line.strip():
        if log:
            with open(log, "a") as f:
                f.write(f"unused - {time.time():.4f} {os.getpid()}\n")
        sys.exit(0)
    job = json.loads(line)
    nb, executed = Path(job["notebook"]), job["executed"]
def note(what):
    if log:
        with open(log, "a") as f:
            f.write(f"{what} {nb.stem} {time.time():.4f} {os.getpid()}\n")
note("start")
text = nb.read_text()
m = re.search(r'FAKE ([^"\\]*)', text)
words = dict((w.split("=", 1) + [""])[:2] for w in (m.group(1).split() if m else []))
if "sleep" in words:
    time.sleep(float(words["sleep"]))
if "warn" in words:
    print("UserWarning: the fake grader warns on stderr", file=sys.stderr)
if "crash" in words:
    note("end")
    print("Traceback (most recent call last):\nRuntimeError: the fake grader crashed", file=sys.stderr)
    sys.exit(1)
if "garbage" in words:
    note("end")
    print("this is not JSON")
    sys.exit(0)
passing = set(words.get("pass", "").split(",")) - {""}
errors = ["the notebook raised NameError: name 'x' is not defined"] if "error" in words else []
tests = []
for name, cell, pts in TESTS:
    ok = name in passing and not errors
    tests.append({"name": name, "cell": cell, "points": pts if ok else 0.0, "max_points": pts,
                  "passed": ok, "message": "" if ok else FAIL,
                  "description": "checks " + name.replace("test_", "")})
if executed:
    data = json.loads(text)
    data.setdefault("metadata", {})["fake_executed"] = True
    Path(executed).write_text(json.dumps(data))
result = {"assignment": assignment, "score": sum(t["points"] for t in tests),
          "max_score": sum(t["max_points"] for t in tests), "tests": tests, "errors": errors}
note("end")
print(json.dumps(result))
''' % {"tests": TESTS, "fail": FAIL_MESSAGE}


def placeholder(assignment) -> list[dict]:
    """The fake suite's tests, as `autograder.batch.suite_tests` gives them for a real suite."""
    return [{"name": n, "cell": c, "max_points": p} for n, c, p in TESTS]


def expected_score(passing: set[str]) -> float:
    """The oracle: points for a notebook whose directive passes exactly `passing`."""
    return sum(p for n, _, p in TESTS if n in passing)


def _cell(kind, source, **nbgrader):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "locked": False, "grade": False,
                                     "solution": False, **nbgrader}
    return cell


def source_notebook():
    """An nbgrader SOURCE notebook with two answer cells, two test cells and a written answer."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [
        _cell("markdown", "# Toy assignment\n\nTotal: 5 points", grade_id="intro", locked=True),
        _cell("markdown", "## Exercise 1: addition (2 points)"),
        _cell("code", "def add(a, b):\n    ### BEGIN SOLUTION\n    secret_sum_of_both = a + b\n"
                      "    return secret_sum_of_both\n    ### END SOLUTION", grade_id="add", solution=True),
        _cell("code", "assert add(1, 2) == 3\nprint('add works on one example')\n### BEGIN HIDDEN TESTS\n"
                      "assert add(40, 2) == 42, 'hidden addition check'\n### END HIDDEN TESTS",
              grade_id="test_add", grade=True, points=2, locked=True),
        _cell("markdown", "## Exercise 2: multiplication (2 points)"),
        _cell("code", "def mul(a, b):\n    ### BEGIN SOLUTION\n    product_of_the_two = a * b\n"
                      "    return product_of_the_two\n    ### END SOLUTION", grade_id="mul", solution=True),
        _cell("code", "assert mul(2, 3) == 6\nprint('mul works on one example')",
              grade_id="test_mul", grade=True, points=2, locked=True),
        _cell("markdown", "## Question (1 point)\n\nWhy is addition commutative?"),
        _cell("markdown", "Because the model answer says integers form an abelian group.",
              grade_id="why", grade=True, solution=True, points=1),
    ]
    for i, cell in enumerate(cells):      # fixed ids: the same notebook (and fingerprint) every time
        cell.id = f"cell-{i}"
    nb.cells = cells
    return nb


def release_notebook():
    """What nbgrader's generate_assignment makes of `source_notebook` (stubs, no hidden tests)."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions, ComputeChecksums, LockCells
    nb = source_notebook()
    resources: dict = {}
    for pre in (LockCells(), ClearSolutions(code_stub={"python": "# YOUR CODE HERE\nraise NotImplementedError()"},
                                            text_stub="YOUR ANSWER HERE"),
                ClearHiddenTests(), ComputeChecksums()):
        nb, resources = pre.preprocess(nb, resources)
    return nb


SUITE = '''"""Fake hidden suite (its text must never reach feedback)."""
from autograder.testing import points


@points(1, cell="test_add")
def test_add_small(student):
    """checks add_small"""
    expected_hidden_value = 1234567 + 7654321
    assert student.add(1234567, 7654321) == expected_hidden_value
'''


def make_assignment(tmp: Path, name: str = "toyfake") -> SimpleNamespace:
    """A fake assignment in `tmp`: release notebook, a suite folder, the source notebook."""
    (tmp / "solutions" / name).mkdir(parents=True, exist_ok=True)
    (tmp / "course" / name).mkdir(parents=True, exist_ok=True)
    suite = tmp / "suites" / name
    suite.mkdir(parents=True, exist_ok=True)
    (suite / "test_fake.py").write_text(SUITE)
    nbformat.write(source_notebook(), tmp / "solutions" / name / f"{name}.ipynb")
    nbformat.write(release_notebook(), tmp / "course" / name / f"{name}.ipynb")
    return SimpleNamespace(name=name, source_notebook=tmp / "solutions" / name / f"{name}.ipynb",
                           release_notebook=tmp / "course" / name / f"{name}.ipynb", suite_dir=suite)


def submission(directive: str):
    """A submission notebook (the release) whose first cell carries the fake grader's directive."""
    nb = release_notebook()
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"# FAKE {directive}"))
    return nb


def write_submission(path: Path, directive: str) -> Path:
    """Write a fake submission (see `submission`) to `path`, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(submission(directive), path)
    return path


def install(tmp: Path, monkeypatch=None) -> dict:
    """Write the fake grader script; returns the environment variables that select it."""
    script = tmp / "fake_grader.py"
    script.write_text(FAKE_GRADER)
    env = {"AUTOGRADER_GRADER_CMD": f"{sys.executable} {script}", "FAKE_GRADER_LOG": str(tmp / "grader.log")}
    if monkeypatch is not None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    return env


def log_lines(tmp: Path, what: str = "start") -> list[list[str]]:
    path = tmp / "grader.log"
    if not path.is_file():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.startswith(what + " ")]


DRIVER = r'''
import sys
sys.path.insert(0, %(tests)r)
from pathlib import Path
import autograder_fakes as fakes
from autograder.batch import grade_directory, summary
tmp, subs, out = map(Path, sys.argv[1:4])
workers = int(sys.argv[4])
course = None if sys.argv[5] == "-" else Path(sys.argv[5])
a = fakes.make_assignment(tmp)
report = grade_directory(a, subs, out=out, workers=workers, course_dir=course, progress=False,
                         placeholder_tests=fakes.placeholder)
print(summary(report))
''' % {"tests": str(HERE)}


def driver_command(tmp: Path, subs: Path, out: Path, workers: int = 1, course: Path | None = None) -> list[str]:
    """A command that runs the batch on the fake assignment in a separate process."""
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    return [sys.executable, str(script), str(tmp), str(subs), str(out), str(workers),
            str(course) if course else "-"]


def env_with(extra: dict) -> dict:
    return dict(os.environ, **extra)
