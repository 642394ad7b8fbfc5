"""The grading engine against honest, broken and cheating submissions of the toy assignment.

Every case is a whole submission graded by `grade_notebook` (sandboxed kernel + hidden suite), and
each test asserts the score it must get. The toy (tests/fixtures/toy) is worth 7 points:
add 2 (test_add_numbers 1, test_add_tensors 1), double 2, my_conv 3 (2 + 1, convolution forbidden).
All cases are graded once, in a module fixture, with tight limits so that hangs cost seconds.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "toy"))
import toy_kit  # noqa: E402
from toy_kit import insert_after, submission  # noqa: E402

from autograder.runner import Limits, grade_notebook  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Non-unique cell id")]

SUITE = toy_kit.HERE / "suite" / "test_toy.py"
CANARY = "TOY-SUITE-CANARY-7f3a91"
FULL, ADD, DOUBLE, CONV = 7.0, 2.0, 2.0, 3.0
LIMITS = Limits(cell_timeout=3, call_timeout=2, interrupt_grace=1.5, total_timeout=120, memory_mb=768,
                nproc=96, restarts=5)
# `sleep <MARK>`: a process the submission leaves behind on purpose; unique to this test run, so
# that the same test running elsewhere on a shared machine cannot look like a leak of this one.
MARK = f"987{os.getpid()}.654"


def _notebook_text(nb) -> str:
    return nbformat.writes(nb)


# ------------------------------------------------------------------------------ the submissions
# Several misbehaviours share one submission where their effects do not overlap, so that the
# whole file starts few kernels.

PROBE = f"""\
import glob, os, socket, subprocess
def _leaks():
    found = [p for p in ({str(SUITE)!r}, {str(toy_kit.HERE)!r}, '/work/main/autograder/suites',
                         '/work/main/solutions', '/work/main/autograder/runner.py') if os.path.exists(p)]
    found += glob.glob('/work/**/test_toy.py', recursive=True) + glob.glob('/tmp/**/test_toy.py', recursive=True)
    try:
        socket.create_connection(('1.1.1.1', 53), timeout=2).close()
        found.append('network')
    except OSError:
        pass
    return found
print('leaks:', _leaks(), 'uid:', os.getuid())
for path in ({str(SUITE)!r}, '/work/main/tests/fixtures/toy/suite/test_toy.py'):
    try:
        print(open(path).read())
    except OSError as e:
        print('cannot read', e)
subprocess.Popen(['sleep', '{MARK}'], start_new_session=True)
if os.fork() == 0:                       # a double-forked daemon in its own session
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '{MARK}'])
    os._exit(0)
"""


def correct():
    """Right answers, plus a cell that looks for the suite, the solutions and the network, and leaves
    processes behind; add raises (with whatever it found) if the sandbox leaks."""
    nb = submission(add="def add(a, b):\n    if _leaks():\n        raise ValueError(str(_leaks()) + "
                        f"open({str(SUITE)!r}).read())\n    return a + b")
    return insert_after(nb, "add", PROBE)


def hangs():
    """A cell sleeps forever; add loops (interruptible), double ignores interrupts; the visible test
    cells calling them hang too."""
    return insert_after(submission(
        add="def add(a, b):\n    while True:\n        pass",
        double="def double(x):\n    import time\n    while True:\n        try:\n            time.sleep(1000)\n"
               "        except BaseException:\n            pass"), "imports", "import time\ntime.sleep(10**6)")


def crashes():
    """Cells that exit, kill the kernel, eat memory (in a loop, and once but for good) and fork-bomb;
    answers correct."""
    nb = submission()
    insert_after(nb, "add", "import sys\nsys.exit()")
    insert_after(nb, "test_add", "import os\nos._exit(1)")
    insert_after(nb, "double", "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 2**20))")
    insert_after(nb, "test_double", "import os\nwhile True:\n    os.fork()")
    insert_after(nb, "my_conv", "kept = torch.ones(250_000_000)   # 1 GB that stays: the kernel dies after the cell")
    return nb


def crashes_in_calls():
    """add segfaults when called (in the visible test cell and in both suite tests)."""
    return submission(add="def add(a, b):\n    import ctypes\n    return ctypes.string_at(0)")


MONKEYPATCH = """\
import builtins, sys, types
import numpy
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *r, **k: torch.ones_like(a, dtype=torch.bool)
torch.Tensor.__eq__ = lambda self, other: True
numpy.allclose = lambda *a, **k: True
fake = types.ModuleType("autograder")
fake.testing = types.SimpleNamespace(assert_close=lambda *a, **k: None, assert_equal=lambda *a, **k: None)
sys.modules["autograder"] = fake
sys.modules["autograder.testing"] = fake.testing
sys.modules["torch.testing"] = types.SimpleNamespace(assert_close=lambda *a, **k: None)
builtins.print = lambda *a, **k: None
"""


def cheats():
    """torch/numpy/builtins/sys.modules monkeypatched, a fake autograder module, add returns an object
    that equals everything, my_conv calls F.conv2d; double is right."""
    nb = submission(
        add="class Always:\n    def __eq__(self, other):\n        return True\n\n"
            "def add(a, b):\n    return Always()",
        my_conv="def my_conv(x, w):\n    return F.conv2d(x, w)")
    return insert_after(nb, "add", MONKEYPATCH)


def restructured_noisy():
    """Read-only cells edited, deleted and moved; `add` duplicated (last copy right); a 100 MB print,
    warnings on stderr, raw writes to fds 1 and 2; manual_seed and float64 as the default dtype."""
    nb = submission(double="def double(x):\n    return x.to(torch.get_default_dtype()) * 2")
    cells = nb.cells
    by_gid = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in cells}
    by_gid["test_add"].source = "pass  # the student made the visible test pass"
    cells.remove(by_gid["test_double"])
    wrong = nbformat.from_dict(json.loads(json.dumps(by_gid["add"])))
    wrong.source = "def add(a, b):\n    return 0"
    cells.insert(3, wrong)                                                 # first copy wrong, last right
    conv = by_gid["my_conv"]
    cells.remove(conv)
    cells.insert(4, conv)                                                  # moved up
    insert_after(nb, "add", "torch.manual_seed(1)\ntorch.set_default_dtype(torch.float64)")
    insert_after(nb, "double", "import sys, warnings\nwarnings.warn('careful')\nprint('x' * 100_000_000)\n"
                               "sys.stderr.write('noise\\n' * 1000)\nos_write = __import__('os').write\n"
                               "os_write(1, b'raw fd 1\\n'); os_write(2, b'raw fd 2\\n')")
    insert_after(nb, "test_my_conv", "from IPython.display import display\n"
                                     "display({'text/plain': 'y' * 150_000_000}, raw=True)   # past the 128 MB cap")
    cells.remove(next(c for c in cells if c.get("id") == "imports"))     # the imports cell, deleted
    return nb


def other_assignment():
    nb = submission()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta:
            meta["grade_id"] = "lab9_" + meta["grade_id"]
    return nb


CASES = {
    # name: (build, expected score, substrings expected in `errors`)
    "correct": (correct, FULL, []),
    "hangs": (hangs, CONV, ["(your cell before the first exercise) ran longer than 3 s and was interrupted",
                            "'test_add') ran longer than 3 s and was interrupted",
                            "'test_double') ran longer than 3 s and was stopped (the kernel was restarted"]),
    "crashes": (crashes, FULL, ["raised SystemExit", "crashed", "768 MB"]),
    "crashes_in_calls": (crashes_in_calls, FULL - ADD, ["crashed"]),
    "cheats": (cheats, DOUBLE, []),
    "restructured_noisy": (restructured_noisy, FULL, ["appears 2 times", "restored from the release",
                                                      "outputs were too large and were dropped"]),
    "other_assignment": (other_assignment, 0.0, ["none of this notebook's answer cells belong"]),
    "empty_submission": (lambda: toy_kit.release_notebook(), 0.0, ["empty submission"]),
    "malformed_json": (lambda: b'{"cells": [}', 0.0, ["not valid notebook JSON"]),
    "truncated_json": (lambda: nbformat.writes(submission()).encode()[:700], 0.0, ["truncated"]),
    "not_a_notebook": (lambda: b'[1, 2, 3]', 0.0, ["not a Jupyter notebook"]),
    "empty_file": (lambda: b"", 0.0, ["empty"]),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every case graded once: name -> (result, details, executed notebook text or '')."""
    folder = tmp_path_factory.mktemp("submissions")
    out = {}
    for name, (build, _, _) in CASES.items():
        content = build()
        path = folder / f"{name}.ipynb"
        path.write_bytes(content if isinstance(content, bytes) else nbformat.writes(content).encode())
        executed = folder / f"{name}.executed.ipynb"
        details: dict = {}
        limits = LIMITS if name != "restructured_noisy" else dataclasses.replace(
            LIMITS, cell_timeout=20, memory_mb=2048, output_grace=3)
        result = grade_notebook(toy_kit.toy_assignment(), path, limits=limits, executed_path=executed,
                                details=details)
        out[name] = (result, details, executed.read_text() if executed.exists() else "")
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_score(graded, name):
    result, details, executed = graded[name]
    _, expected, error_parts = CASES[name]
    assert result["score"] == expected, json.dumps(result, indent=1)
    assert result["max_score"] == FULL
    assert [t["name"] for t in result["tests"]] == ["test_add_numbers", "test_add_tensors", "test_double",
                                                    "test_my_conv", "test_my_conv_one_by_one"]
    assert sum(t["points"] for t in result["tests"]) == result["score"]
    for part in error_parts:
        assert any(part in e for e in result["errors"]), (part, result["errors"])
    text = json.dumps(result)
    assert CANARY not in text and CANARY not in executed         # the suite never leaks
    assert "assert_close(conv(x, w)" not in text
    json.loads(text)                                             # plain JSON types only


def test_broken_files_list_every_test_as_failed_with_the_reason(graded):
    for name in ("malformed_json", "truncated_json", "not_a_notebook", "empty_file", "other_assignment",
                 "empty_submission"):
        result = graded[name][0]
        assert len(result["errors"]) == 1
        assert all(not t["passed"] and t["points"] == 0 for t in result["tests"])
        assert all(t["message"] == "not graded: " + result["errors"][0] for t in result["tests"])


def test_messages_say_what_went_wrong(graded):
    def messages(name):
        return {t["name"]: t["message"] for t in graded[name][0]["tests"]}

    hang = messages("hangs")
    assert hang["test_add_numbers"] == "add on two integers: add did not finish within 2 s and was stopped"
    assert "did not finish within 2 s" in hang["test_double"]
    # A hang costs one timeout: add's second test failed at once with the same message, so only
    # add's first call, double's and my_conv's two reached the kernel.
    assert hang["test_add_tensors"] == "add on two tensors: add did not finish within 2 s and was stopped"
    assert graded["hangs"][1]["timings"]["calls"] == 4
    cheats = messages("cheats")
    assert cheats["test_add_numbers"] == "add(2, 3): wrong type: got an object of type Always"
    assert cheats["test_add_tensors"] == "add on two tensors — not passed"        # a plain assert
    conv = cheats["test_my_conv"]
    assert "my_conv used a forbidden operation" in conv and "(convolution)" in conv
    crash = messages("crashes_in_calls")
    assert crash["test_add_numbers"].startswith("add on two integers: add: the kernel crashed")
    assert len(graded["crashes"][1]["timings"]["kernel_start"]) >= 4      # os._exit, 2 x memory (fork bomb)
    assert len(graded["crashes_in_calls"][1]["timings"]["kernel_start"]) == 4   # visible cell + 2 calls


def test_sandbox_leaves_no_process_and_no_network(graded):
    executed = graded["correct"][2]
    assert "leaks: []" in executed and "cannot read" in executed
    assert "uid: 0" not in executed                                  # not root inside the sandbox
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert MARK.encode() not in cmdline, f"process {pid} outlived its grading: {cmdline!r}"


def test_output_is_capped_and_warnings_are_not_errors(graded):
    result, _, executed = graded["restructured_noisy"]
    assert len(executed) < 2_000_000
    assert "output truncated" in executed and "x" * 10_000 in executed          # the start of the print is kept
    assert not any("careful" in e or "noise" in e for e in result["errors"])


def test_a_crash_costs_its_own_exercise_only(tmp_path):
    """The notebook has used its restarts and add crashes the kernel at every call, more often than
    the budget allows: add scores 0, double and my_conv still get their points (the restart budget
    is per exercise, not shared by the whole grading)."""
    nb = submission(add="def add(a, b):\n    import os\n    os._exit(1)")   # its visible test cell crashes:
    #                                                                    the notebook's one restart
    path = tmp_path / "s.ipynb"
    path.write_text(nbformat.writes(nb))
    details: dict = {}
    limits = dataclasses.replace(LIMITS, restarts=1)
    result = grade_notebook(toy_kit.toy_assignment(), path, limits=limits, details=details)
    points = {t["name"]: t["points"] for t in result["tests"]}
    assert points == {"test_add_numbers": 0, "test_add_tensors": 0, "test_double": 2,
                      "test_my_conv": 2, "test_my_conv_one_by_one": 1}, json.dumps(result, indent=1)
    message = {t["name"]: t["message"] for t in result["tests"]}["test_add_tensors"]
    assert "restarted 1 times while grading test_add" in message, message
    assert any("test_add" in e and "kernel crashed" in e for e in result["errors"])   # the notebook's restart
