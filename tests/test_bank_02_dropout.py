"""Grade the whole 02_dropout bank with ONE batch command, then check every case on its own.

The bank (tests/bank/b02_dropout.py) holds the reference, correct rewrites that must get full
marks, one notebook per typical mistake (each must lose points in its own cell), cheats that reach
PyTorch's own dropout or return a tensor subclass, and the blank release.
"""
import pytest

from bank import b02_dropout as bank
from bank.common import cell_scores, grade_bank, grade_cell_points, problems, validate_bank

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    result = grade_bank(bank.ASSIGNMENT, bank.CASES, tmp_path_factory.mktemp("bank_02_dropout"), workers=2)
    print(f"\n{len(bank.CASES)} submissions graded in {result.seconds:.0f} s")
    return result


def test_bank_is_well_formed():
    validate_bank(bank)


def test_batch_command_succeeded(run):
    assert run.returncode == 0, f"batch grading failed:\n{run.stderr[-3000:]}"
    missing = [name for name, result in run.results.items() if result is None]
    assert not missing, f"no result for {missing}\n{run.stderr[-3000:]}"


def test_suite_points_match_notebook(run):
    """The hidden tests of each cell add up to the points the notebook shows for that cell."""
    suite = {cell: max_points for cell, (_, max_points) in cell_scores(run.results["reference"]).items()}
    assert suite == grade_cell_points(bank.ASSIGNMENT)
    assert run.results["reference"]["max_score"] == sum(suite.values())


@pytest.mark.parametrize("case", bank.CASES, ids=lambda case: case.name)
def test_case(run, case):
    found = problems(case, run.results.get(case.name))
    assert not found, "\n".join(found)
