"""Feedback pages: what students read after grading."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import autograder_fakes as fakes
from autograder import feedback

REPO = Path(__file__).resolve().parents[1]

RESULT = {
    "assignment": "toyfake", "score": 1.5, "max_score": 4.0,
    "errors": ["cell 7 raised NameError: name 'mull' is not defined"],
    "tests": [
        {"name": "test_mul", "cell": "test_mul", "points": 0.0, "max_points": 2.0, "passed": False,
         "message": "mul(2, 3) returned 5.0 <script>alert('x')</script>", "description": "mul of two ints"},
        {"name": "test_add_small", "cell": "test_add", "points": 1.0, "max_points": 1.0, "passed": True,
         "message": ""},
        {"name": "test_add_large[big-ints]", "cell": "test_add", "points": 0.5, "max_points": 1.0,
         "passed": False, "message": "```\n# Injected heading\n[link](http://x)"},
    ],
}


def test_humanize():
    assert feedback.humanize("test_naive_stride_and_padding") == "Naive stride and padding"
    assert feedback.humanize("test_shapes[3x3-s2]") == "Shapes (3x3-s2)"
    assert feedback.humanize("suite/test_conv.py::test_im2col_order") == "Im2col order"
    assert feedback.fmt_points(2.0) == "2" and feedback.fmt_points(1 / 3) == "0.33"


def test_sections_follow_the_notebook_and_add_up():
    titles = feedback.exercise_titles(fakes.release_notebook())
    assert titles == {"test_add": "Exercise 1: addition (2 points)",
                      "test_mul": "Exercise 2: multiplication (2 points)"}
    secs = feedback.sections(RESULT, titles)
    assert [s.cell for s in secs] == ["test_add", "test_mul"]            # notebook order, not result order
    assert [(s.points, s.max_points) for s in secs] == [(1.5, 2.0), (0.0, 2.0)]
    assert sum(s.points for s in secs) == RESULT["score"]


def test_html_escapes_everything_from_the_student():
    html = feedback.render_html(RESULT, student="<img src=x onerror=alert(1)>",
                                cell_titles=feedback.exercise_titles(fakes.release_notebook()))
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Score: 1.5 / 4" in html
    assert html.index("Score: 1.5 / 4") < html.index("Exercise 1") < html.index("Exercise 2")
    assert "NameError" in html and "mul of two ints" in html


def test_markdown_keeps_messages_inside_code_blocks():
    md = feedback.render_markdown(RESULT, student="ann", cell_titles={})
    assert md.startswith("# Feedback: toyfake\n")
    assert "**Score: 1.5 / 4**" in md
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings == ["# Feedback: toyfake", "## Problems with the notebook as a whole",
                        "## Add: 1.5 / 2", "## Mul: 0 / 2"]
    # The message's own ``` cannot close the block: a longer fence surrounds it.
    assert "  ````\n  ```\n  # Injected heading\n  [link](http://x)\n  ````" in md


def _source_lines_not_for_students(path: Path) -> list[str]:
    """Stripped lines of a suite file except its docstrings (the docstrings are written for students)."""
    text = path.read_text()
    tree = ast.parse(text)
    doc_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                body0 = node.body[0]
                doc_lines.update(range(body0.lineno, body0.end_lineno + 1))
    return [line.strip() for i, line in enumerate(text.splitlines(), 1)
            if i not in doc_lines and len(line.strip()) >= 12 and re.search(r"[A-Za-z]", line)]


def suites() -> list[Path]:
    files = sorted((REPO / "autograder" / "suites").glob("*/test_*.py"))
    return files


@pytest.mark.parametrize("suite", suites(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_feedback_shows_no_hidden_test_source(suite, tmp_path):
    """Feedback for a result naming every test of a real suite (all failed, with messages like the
    runner's) contains no line of the suite's code."""
    tree = ast.parse(suite.read_text())
    tests = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            tests.append({"name": node.name, "cell": "c", "points": 0.0, "max_points": 1.0, "passed": False,
                          "message": "wrong shape: got (2, 3)", "description": ast.get_docstring(node) or ""})
    assert tests, f"no tests in {suite}"
    result = {"assignment": suite.parent.name, "score": 0.0, "max_score": float(len(tests)),
              "tests": tests, "errors": []}
    pages = feedback.render_html(result) + feedback.render_markdown(result)
    leaked = [line for line in _source_lines_not_for_students(suite) if line in pages]
    assert not leaked


def test_feedback_of_the_fake_suite_shows_no_source():
    """The same check against a suite with known secret lines (the oracle for the check itself)."""
    lines = [l.strip() for l in fakes.SUITE.splitlines() if "expected_hidden_value" in l]
    assert lines and all(len(l) >= 12 for l in lines)
    result = {"assignment": "toyfake", "score": 0.0, "max_score": 1.0, "errors": [],
              "tests": [{"name": "test_add_small", "cell": "test_add", "points": 0.0, "max_points": 1.0,
                         "passed": False, "message": "add(1234567, 7654321) returned the wrong value",
                         "description": "checks add_small"}]}
    pages = feedback.render_html(result) + feedback.render_markdown(result)
    assert not [l for l in lines if l in pages]
    assert "checks add_small" in pages


def test_docstring_quoted_by_the_runner_is_shown_once():
    result = {"assignment": "a", "score": 0.0, "max_score": 1.0, "errors": [],
              "tests": [{"name": "test_x", "points": 0.0, "max_points": 1.0, "passed": False,
                         "description": "x on a (2, 3) input",
                         "message": "x on a (2, 3) input: StudentError: ValueError: bad shape"}]}
    md = feedback.render_markdown(result)
    assert md.count("x on a (2, 3) input") == 1 and "StudentError: ValueError: bad shape" in md
    result["tests"][0]["message"] = "x on a (2, 3) input \u2014 not passed"
    md = feedback.render_markdown(result)
    assert md.count("x on a (2, 3) input") == 1 and "not passed" in md


FLIPPED = "your result equals the convolution with a flipped kernel (section 2)"
NAMED = {
    "assignment": "01_convolution", "score": 1.0, "max_score": 4.0, "errors": [],
    "tests": [
        {"name": "test_naive_one_channel", "cell": "test_conv2d_naive", "points": 0.0, "max_points": 1.0,
         "passed": False, "message": f"conv2d_naive on a (1, 1, 5, 6) input: {FLIPPED}", "mistake": FLIPPED},
        {"name": "test_naive_bias", "cell": "test_conv2d_naive", "points": 1.0, "max_points": 1.0, "passed": True,
         "message": ""},
        {"name": "test_naive_stride", "cell": "test_conv2d_naive", "points": 0.0, "max_points": 1.0,
         "passed": False, "message": "conv2d_naive with stride 2: wrong shape: got (2, 4, 3, 3)"},
        {"name": "test_naive_pairs", "cell": "test_conv2d_naive", "points": 0.0, "max_points": 1.0,
         "passed": False, "message": f"conv2d_naive on a (2, 2, 8, 7) input: {FLIPPED}", "mistake": FLIPPED},
    ],
}
NAMED_TITLES = {"test_conv2d_naive": "Exercise 3: `conv2d_naive` (4 points)"}


def test_a_named_mistake_comes_first_then_the_tests_it_failed():
    secs = feedback.sections(NAMED, NAMED_TITLES)
    assert [m.explain for m in secs[0].mistakes] == [FLIPPED]
    assert [c.title for c in secs[0].mistakes[0].checks] == ["Naive one channel", "Naive pairs"]
    assert [c.title for c in secs[0].other_checks] == ["Naive bias", "Naive stride"]
    for page in (feedback.render_markdown(NAMED, cell_titles=NAMED_TITLES),
                 feedback.render_html(NAMED, cell_titles=NAMED_TITLES)):
        assert page.count("flipped kernel") == 1                # once, above the tests it caused
        order = [page.index(s) for s in ("Likely mistake", "flipped kernel", "Naive one channel", "Naive pairs",
                                         "Naive bias", "Naive stride", "wrong shape")]
        assert order == sorted(order)
        assert "conv2d_naive on a (1, 1, 5, 6) input" in page   # what the test ran, without the repeated name


def test_exercise_names_keep_their_code_spans():
    md = feedback.render_markdown(NAMED, cell_titles=NAMED_TITLES)
    assert "## Exercise 3: `conv2d_naive` (4 points): 1 / 4" in md
    assert "\\`" not in md
    html = feedback.render_html(NAMED, cell_titles={"test_conv2d_naive": "Exercise 3: `<b>conv2d_naive` (4 points)"})
    assert "Exercise 3: <code>&lt;b&gt;conv2d_naive</code> (4 points)" in html
    # a named mistake's explanation quotes code too ("`>=` in a scan?"): shown as code, never as \`
    quoted = {**NAMED, "tests": [dict(t, mistake=t.get("mistake") and "use `max_pool2d` with <b>`>=`</b>")
                                 for t in NAMED["tests"]]}
    md = feedback.render_markdown(quoted, cell_titles=NAMED_TITLES)
    assert "> **Likely mistake:** use `max_pool2d` with \\<b\\>`>=`\\</b\\>" in md and "\\`" not in md
    html = feedback.render_html(quoted, cell_titles=NAMED_TITLES)
    assert "use <code>max_pool2d</code> with &lt;b&gt;<code>&gt;=</code>&lt;/b&gt;" in html
    # an unbalanced backtick stays escaped
    md = feedback.render_markdown(NAMED, cell_titles={"test_conv2d_naive": "Exercise `3 [x](y)"})
    assert "## Exercise \\`3 \\[x\\](y)" in md
