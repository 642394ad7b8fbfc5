"""The bank framework itself (tests/bank/common.py), on the real 01_convolution notebooks; no grading."""
import nbformat
import pytest

from bank.common import (Case, Lose, answer_cells, edit, grade_cell_points, load_bank, problems, release,
                         solution_answers, submission, validate_bank, write_cases)

A = "01_convolution"


def test_solution_answers_drop_only_the_marker_lines():
    answers = solution_answers(A)
    assert "def conv2d_naive(x, weight, bias=None, stride=1, padding=0):" in answers["conv2d_naive"]
    assert all("BEGIN SOLUTION" not in s and "END SOLUTION" not in s for s in answers.values())
    namespace = {"pair": lambda v: (v, v) if isinstance(v, int) else tuple(v)}
    exec("import math\n" + answers["conv_output_size"] + "\n" + answers["receptive_field"], namespace)
    assert namespace["conv_output_size"](7, 3, stride=2) == 3          # floor((7 - 3) / 2) + 1
    assert namespace["receptive_field"]([(3, 1)] * 3) == 7


def test_submission_fills_answers_and_keeps_everything_else():
    blank, nb = release(A), submission(A, im2col=None, conv_params="def conv_params(*a, **k):\n    return 0\n")
    cells, stubs = answer_cells(nb), answer_cells(blank)
    assert cells["im2col"].source == stubs["im2col"].source                    # None: the stub stays
    assert "NotImplementedError" in stubs["im2col"].source
    assert cells["conv_params"].source.endswith("return 0\n")
    assert cells["conv2d_naive"].source == solution_answers(A)["conv2d_naive"]
    others = [c.source for c in nb.cells if "nbgrader" not in c.metadata or not c.metadata.nbgrader.get("solution")]
    assert others == [c.source for c in blank.cells
                      if "nbgrader" not in c.metadata or not c.metadata.nbgrader.get("solution")]
    with pytest.raises(KeyError, match="no answer cell"):
        submission(A, conv2d_naiv="typo")


def test_edit_insists_on_the_text_it_replaces():
    assert edit("a + b", "+", "-") == "a - b"
    with pytest.raises(ValueError, match="expected 1 occurrence"):
        edit("a + b", "*", "-")


def test_write_cases_writes_notebooks_and_raw_bytes(tmp_path):
    cases = [Case("ok", "correct", lambda: release(A), "zero"), Case("junk", "broken", lambda: b"{", "zero")]
    write_cases(cases, tmp_path)
    assert nbformat.read(tmp_path / "ok.ipynb", as_version=4).cells
    assert (tmp_path / "junk.ipynb").read_bytes() == b"{"
    with pytest.raises(ValueError, match="duplicate"):
        write_cases(cases + cases[:1], tmp_path)


def result(*tests):
    return {"score": sum(t[1] for t in tests), "max_score": sum(t[2] for t in tests), "errors": [],
            "tests": [{"name": n, "points": p, "max_points": m, "passed": p == m, "cell": c, "message": ""}
                      for n, p, m, c in tests]}


def test_problems_checks_each_kind_of_expectation():
    graded = result(("t1", 0, 1, "a"), ("t2", 1, 1, "a"), ("t3", 2, 2, "b"))
    build = lambda: b""
    assert problems(Case("x", "mistake", build, Lose("a", keep="b")), graded) == []
    assert problems(Case("x", "mistake", build, Lose("b")), graded)                  # b kept full points
    assert problems(Case("x", "mistake", build, Lose("a", keep="c")), graded)        # no such cell
    assert problems(Case("x", "correct", build, "full"), graded)
    assert problems(Case("x", "correct", build, 3.0), graded) == []
    assert problems(Case("x", "broken", build, "zero"), graded)
    assert problems(Case("x", "broken", build, "zero"), None)                       # no result at all
    with pytest.raises(ValueError):
        Case("bad name!", "correct", build, "full")
    with pytest.raises(ValueError):
        Lose("a", keep="a")


def test_bank_01_is_well_formed_and_its_cases_build():
    bank = load_bank(A)
    validate_bank(bank)
    assert set(grade_cell_points(A).values()) and sum(grade_cell_points(A).values()) == 26
    for case in bank.CASES:                # every edit still applies to the current reference
        built = case.build()
        assert isinstance(built, (bytes, nbformat.NotebookNode)), case.name
