"""Every assignment's bank of submissions, graded with ONE batch command per bank, then each case on its own.

A bank (tests/bank/b<NN>_<name>.py, see tests/bank/common.py) holds the reference solution, correct
but differently written solutions that must get full marks, typical honest mistakes that must lose
points in their own cell, cheats that must lose points, and broken files. A new assignment's bank is
picked up here by its file name; nothing else needs writing.

Each bank is graded once per session. The grading starts in the background as soon as the tests
are collected (conftest.py calls `start_grading` for the banks the selected tests need, and moves
those tests to the end of the run), at a lower CPU priority: the other tests, mostly one process on
one core, keep their speed, and the banks use the cores they leave idle.
"""
import importlib
import os
import tempfile
import threading
from pathlib import Path

import pytest

from bank.common import NAMING_RATES, bank_env, cell_scores, grade_bank, grade_cell_points, naming_rate, problems, validate_bank

MIN_NAMING_RATE = 0.8       # issue 9: at least 80 % of a bank's honest mistakes named by the suite

BANKS = [importlib.import_module(f"bank.{path.stem}")
         for path in sorted((Path(__file__).parent / "bank").glob("b[0-9][0-9]_*.py"))]
CASES = [(bank, case) for bank in BANKS for case in bank.CASES]
NICE = 10          # the background banks' CPU priority (higher = yield more to the other tests)
AT_ONCE = 2        # banks graded at the same time in the background, each a batch with 2 workers


def bank_id(bank):
    return bank.ASSIGNMENT


class BankGrading:
    """Grades banks, one batch command per bank, in background threads; `run(bank)` waits for one.

    `at_once` banks are graded at the same time: a batch's last submissions leave its second worker
    idle, and many of the other tests wait on timeouts (a hung cell, an interrupted call) with a
    core free; at nice 10 the banks take only what the other tests leave."""

    def __init__(self, banks, *, nice: int = 0, at_once: int = 1):
        self.banks = list(banks)
        self.nice = nice
        self.env = bank_env()          # now, before any test can monkeypatch os.environ
        self.runs, self.errors = {}, {}
        self.done = {bank.ASSIGNMENT: threading.Event() for bank in self.banks}
        self.workdir = tempfile.TemporaryDirectory(prefix="dlcourse-banks-")
        self.queue = list(self.banks)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._grade_all, name=f"bank-grading-{i}", daemon=True)
                        for i in range(max(1, min(at_once, len(self.banks))))]

    def start(self) -> "BankGrading":
        for thread in self.threads:
            thread.start()
        return self

    def _next(self):
        with self.lock:
            return self.queue.pop(0) if self.queue else None

    def _grade_all(self):
        while (bank := self._next()) is not None:
            try:
                self.runs[bank.ASSIGNMENT] = grade_bank(bank.ASSIGNMENT, bank.CASES,
                                                        Path(self.workdir.name) / f"bank_{bank.ASSIGNMENT}",
                                                        workers=2, nice=self.nice, env=self.env)
            except Exception as e:  # noqa: BLE001 - reported by the bank's tests
                self.errors[bank.ASSIGNMENT] = e
            finally:
                self.done[bank.ASSIGNMENT].set()

    def run(self, bank):
        self.done[bank.ASSIGNMENT].wait()
        if bank.ASSIGNMENT in self.errors:
            raise self.errors[bank.ASSIGNMENT]
        return self.runs[bank.ASSIGNMENT]


_BACKGROUND: BankGrading | None = None


def start_grading(assignments) -> None:
    """Start grading the banks of `assignments` in the background (conftest.py, after collection)."""
    global _BACKGROUND
    wanted = [bank for bank in BANKS if bank.ASSIGNMENT in set(assignments)]
    if wanted and _BACKGROUND is None and not os.environ.get("DLCOURSE_BANKS_IN_FOREGROUND"):
        _BACKGROUND = BankGrading(wanted, nice=NICE, at_once=AT_ONCE).start()


@pytest.fixture(scope="session")
def graded():
    """bank -> its BankRun, each bank graded once (in the background if it was started there)."""
    runs = {}

    def get(bank):
        if bank.ASSIGNMENT not in runs:
            if _BACKGROUND is not None and bank.ASSIGNMENT in _BACKGROUND.done:
                run = _BACKGROUND.run(bank)
            else:
                run = BankGrading([bank]).start().run(bank)
            print(f"\n{bank.ASSIGNMENT}: {len(bank.CASES)} submissions graded in {run.seconds:.0f} s")
            runs[bank.ASSIGNMENT] = run
        return runs[bank.ASSIGNMENT]
    return get


def test_every_assignment_has_a_bank():
    assignments = {p.name for p in (Path(__file__).parents[1] / "autograder" / "suites").iterdir()
                   if p.is_dir() and not p.name.startswith(("_", "."))}
    assert assignments == {bank.ASSIGNMENT for bank in BANKS}


def test_background_grading_keeps_the_environment_it_was_made_with(monkeypatch):
    """The banks are graded in threads of this process while other tests run, and os.environ is
    shared by every thread: a batch started while a test had set the fake grader's variable was
    once graded by the fake grader (every case scored as the toy assignment). The grading takes
    its environment when it is made, without the fake grader's variables, and never re-reads it."""
    monkeypatch.setenv("AUTOGRADER_GRADER_CMD", "/bin/false set before")
    grading = BankGrading([])
    monkeypatch.setenv("AUTOGRADER_GRADER_CMD", "/bin/false set after")
    monkeypatch.setenv("DLCOURSE_TEST_SET_AFTER", "1")
    assert "AUTOGRADER_GRADER_CMD" not in grading.env and "DLCOURSE_TEST_SET_AFTER" not in grading.env
    assert grading.env["PATH"] == os.environ["PATH"]
    grading.workdir.cleanup()


@pytest.mark.parametrize("bank", BANKS, ids=bank_id)
def test_bank_is_well_formed(bank):
    validate_bank(bank)


@pytest.mark.slow
@pytest.mark.parametrize("bank", BANKS, ids=bank_id)
def test_batch_command_succeeded(graded, bank):
    run = graded(bank)
    assert run.returncode == 0, f"batch grading failed:\n{run.stderr[-3000:]}"
    missing = [name for name, result in run.results.items() if result is None]
    assert not missing, f"no result for {missing}\n{run.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("bank", BANKS, ids=bank_id)
def test_suite_points_match_notebook(graded, bank):
    """The hidden tests of each cell add up to the points the notebook shows for that cell."""
    reference = graded(bank).results["reference"]
    suite = {cell: max_points for cell, (_, max_points) in cell_scores(reference).items()}
    assert suite == grade_cell_points(bank.ASSIGNMENT)
    assert reference["max_score"] == sum(suite.values())


@pytest.mark.slow
@pytest.mark.parametrize("bank", BANKS, ids=bank_id)
def test_suite_names_the_honest_mistakes(graded, bank):
    """At least 80 % of the bank's honest mistakes are named (each case's Named keywords appear in the
    "mistake" of a failed test of its cell), and no correct or alternative submission gets a mistake
    named. The rate is printed in the terminal summary (tests/conftest.py)."""
    if not any(case.names for case in bank.CASES):
        NAMING_RATES[bank.ASSIGNMENT] = None
        pytest.skip(f"{bank.ASSIGNMENT}: no mistake case says how it must be named (Case(..., names=...)): "
                    f"the naming rate is not measured")
    results = graded(bank).results
    rate = naming_rate(bank.ASSIGNMENT, bank.CASES, results)
    NAMING_RATES[bank.ASSIGNMENT] = rate
    assert not rate.false, "a mistake named on a correct submission:\n" + "\n".join(rate.false)
    assert rate.rate >= MIN_NAMING_RATE, f"{rate.line()}; not named:\n" + "\n".join(rate.missed)
    # The grading demo's "typical mistakes" student (bob-mistakes) gets every one of its mistakes named.
    demo = next(c for c in bank.CASES if c.name == bank.DEMO["mistakes"])
    assert demo.names, f"the demo's mistakes case {demo.name} names no mistake"
    unnamed = [n for n in demo.names if not n.found_in(results[demo.name])]
    assert not unnamed, f"the demo's mistakes case {demo.name} does not get these named: {unnamed}"


@pytest.mark.slow
@pytest.mark.parametrize("bank, case", CASES, ids=[f"{b.ASSIGNMENT}-{c.name}" for b, c in CASES])
def test_case(graded, bank, case):
    found = problems(case, graded(bank).results.get(case.name))
    assert not found, "\n".join(found)
