"""Graders forked from a pre-imported server (autograder/forkgrader.py) behave as the subprocesses
they replace: the same command line, pipes, exit status, process group and kill.

The oracle is `python -m autograder ...` run as a plain subprocess: the forked grader must give the
same output and status. The speed-up itself is measured by `python -m autograder bench` (a
benchmark, not a timed test).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import forkgrader
from autograder.pool import start_grader

pytestmark = pytest.mark.skipif(not forkgrader.available(), reason="needs fork (Linux)")
REPO = Path(__file__).resolve().parents[1]


def plain(argv, input=None):
    return subprocess.run([sys.executable, "-m", "autograder", *map(str, argv)], input=input, capture_output=True,
                          text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["grade", "no_such_assignment", "-", "--json"]],
                         ids=["help", "unknown-assignment"])
def test_same_output_and_status_as_a_subprocess(argv):
    env = dict(os.environ)
    forked = forkgrader.spawn(argv, env)
    out, err = forked.communicate(timeout=300)
    expected = plain(argv)
    assert (forked.returncode, out) == (expected.returncode, expected.stdout)
    assert err.strip().splitlines()[-1:] == expected.stderr.strip().splitlines()[-1:]


def test_the_batch_forks_our_own_command_and_runs_anything_else_as_a_subprocess(monkeypatch):
    ours = start_grader([sys.executable, "-m", "autograder", "--help"], dict(os.environ))
    other = start_grader([sys.executable, "-c", "print('other')"], dict(os.environ))
    assert isinstance(ours, forkgrader.ForkedGrader) and isinstance(other, subprocess.Popen)
    assert "grade" in ours.communicate(timeout=300)[0] and other.communicate(timeout=60)[0] == "other\n"
    monkeypatch.setenv("AUTOGRADER_NO_FORKSERVER", "1")
    off = start_grader([sys.executable, "-m", "autograder", "--help"], dict(os.environ))
    assert isinstance(off, subprocess.Popen)
    off.communicate(timeout=300)


def test_environment_is_the_one_given_not_the_servers():
    """The grader reads its environment (run size, offline data, debug): it must see the one passed
    for it, not the server's. Observable without a kernel: argparse wraps --help at $COLUMNS."""
    def forked_help(columns):
        out, _ = forkgrader.spawn(["--help"], dict(os.environ, COLUMNS=str(columns))).communicate(timeout=300)
        return out
    narrow = subprocess.run([sys.executable, "-m", "autograder", "--help"], capture_output=True, text=True,
                            cwd=REPO, env=dict(os.environ, COLUMNS="40"), timeout=300).stdout
    assert forked_help(40) == narrow != forked_help(200)


def test_leads_its_own_process_group_and_the_batch_kills_it_whole(tmp_path):
    """A pooled grader waiting for its job (its sandboxed kernel started): killing its group, as the
    batch does on a timeout, ends it and everything it started."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_cli import make_root
    root = make_root(tmp_path / "course")
    forked = forkgrader.spawn(["grade", "toy", "-", "--json", "--root", str(root)], dict(os.environ))
    assert os.getpgid(forked.pid) == forked.pid != os.getpgid(0)      # its own group from the start
    time.sleep(2)                                                       # let it start its kernel
    assert forked.poll() is None
    os.killpg(forked.pid, signal.SIGKILL)
    assert forked.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(forked.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("processes of the killed grader's group are still running")


def test_preload_leaves_out_jsonschemas_slow_optional_import_and_notebooks_still_validate():
    """The server imports PRELOAD in order; "autograder" first keeps jsonschema from importing
    rfc3987_syntax (a parser built at import, ~1.2 s per process: autograder/__init__.py). The
    oracle for "validation still works": nbformat rejects a notebook that breaks its schema."""
    code = """
import sys
PRELOAD = {preload!r}
for name in PRELOAD:
    __import__(name)
import nbformat
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
nbformat.validate(nb)
nb.cells[0]["execution_count"] = "not a number"
try:
    nbformat.validate(nb)
    print("accepted a broken notebook")
except nbformat.ValidationError:
    print("rejected", "rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is not None)
"""
    code = code.replace("{preload!r}", repr(forkgrader.PRELOAD))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.stdout.strip() == "rejected False", out.stderr[-2000:]


def test_a_batch_collects_the_suite_in_a_process_forked_from_the_server(monkeypatch):
    """Once the fork server runs (a batch with submissions to grade starts it), suite_tests collects
    in a forked `autograder tests --json` (batch/suite.py); the oracle is the collection in this
    process, which must not run."""
    from autograder.assignments import find_assignment
    from autograder.batch import suite
    assignment = find_assignment("01_convolution")
    expected = suite.collect_tests(assignment)
    forkgrader.prestart()
    assert forkgrader.started()
    monkeypatch.setattr(suite, "collect_tests", lambda a: pytest.fail("collected here, not in a forked process"))
    assert suite.suite_tests(assignment) == expected and len(expected) > 10


def test_tests_command_lists_what_the_suite_checks(tmp_path):
    """`autograder tests A` prints each test with its points and the total; --json is the list the
    batch reads. Oracle: the collection in this process. A suite that cannot be collected: exit 1
    and pytest's reason, not an empty list."""
    from autograder.assignments import find_assignment
    from autograder.batch.suite import collect_tests
    expected = collect_tests(find_assignment("02_dropout"))
    as_json = plain(["tests", "02_dropout", "--json"])
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == expected
    table = plain(["tests", "02_dropout"]).stdout.strip().splitlines()
    assert table[-1].split() == [f"{sum(t['max_points'] for t in expected):g}", "total,", str(len(expected)), "tests"]
    assert all(any(line.split()[1:2] == [t["name"]] for line in table) for t in expected)
    shutil.copytree(REPO / "autograder" / "suites" / "02_dropout", tmp_path / "autograder" / "suites" / "02_dropout")
    for folder in ("course", "solutions"):
        shutil.copytree(REPO / folder / "02_dropout", tmp_path / folder / "02_dropout")
    (tmp_path / "autograder" / "suites" / "02_dropout" / "test_broken.py").write_text("import no_such_module_here\n")
    broken = plain(["tests", "02_dropout", "--root", tmp_path])
    assert broken.returncode == 1 and "no_such_module_here" in broken.stderr
