"""Grade the whole 03_lenet bank with ONE batch command, then check every case on its own.

The bank (tests/bank/b03_lenet.py) holds the reference, correct variants (average pooling and tanh,
explicit forward, C5 as a convolution, log-softmax outputs) that must get full marks, typical
mistakes that must lose points in their own cell, cheats (someone else's network, zero epochs,
hard-coded shapes) and broken files. Every submission re-runs the notebook's training.

Also here, fast: the exam set that the hidden suite measures the trained network on is disjoint
from every image the notebook trains, validates or tests on.
"""
import pytest
import torch

from bank import b03_lenet as bank
from bank.common import cell_scores, grade_bank, grade_cell_points, problems, validate_bank


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    result = grade_bank(bank.ASSIGNMENT, bank.CASES, tmp_path_factory.mktemp("bank_03_lenet"), workers=2)
    print(f"\n{len(bank.CASES)} submissions graded in {result.seconds:.0f} s")
    return result


def test_bank_is_well_formed():
    validate_bank(bank)


def test_exam_set_is_disjoint_from_the_notebooks_data():
    """The odd-numbered test images (the exam) share no image with train, validation or the even test half.

    Compared by pixels, so that a duplicate scan in scikit-learn's digits would be caught too; the
    data are loaded exactly as the notebook's set-up does (offline digits at 32x32, seed 0), once
    with the small run's training subset and once with every training image (the "large" run).
    """
    from dlcourse.data import get_datasets

    for train_size in (1200, None):
        train_ds, val_ds, test_ds, _ = get_datasets("digits", image_size=32, train_size=train_size, seed=0)
        train_base = train_ds.dataset.images
        seen = torch.cat([train_base[train_ds.indices], train_base[val_ds.indices], test_ds.images[0::2]])
        exam = test_ds.images[1::2]
        assert len(exam) == 180
        seen_keys = {bytes(x.flatten().tolist()) for x in seen}
        shared = sum(bytes(x.flatten().tolist()) in seen_keys for x in exam)
        assert shared == 0, f"{shared} exam images also appear in the notebook's train/val/test data"


@pytest.mark.slow
def test_batch_command_succeeded(run):
    assert run.returncode == 0, f"batch grading failed:\n{run.stderr[-3000:]}"
    missing = [name for name, result in run.results.items() if result is None]
    assert not missing, f"no result for {missing}\n{run.stderr[-3000:]}"


@pytest.mark.slow
def test_suite_points_match_notebook(run):
    """The hidden tests of each cell add up to the points the notebook shows for that cell."""
    suite = {cell: max_points for cell, (_, max_points) in cell_scores(run.results["reference"]).items()}
    assert suite == grade_cell_points(bank.ASSIGNMENT)
    assert run.results["reference"]["max_score"] == sum(suite.values())


@pytest.mark.slow
@pytest.mark.parametrize("case", bank.CASES, ids=lambda case: case.name)
def test_case(run, case):
    found = problems(case, run.results.get(case.name))
    assert not found, "\n".join(found)
