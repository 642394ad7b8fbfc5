"""Kept notebooks are opened in the instructor's browser (formgrader): nothing in them may run there."""
from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from autograder import gradebook
from autograder.sanitize import clean_notebook

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
ATTACKS = ["<script", "onerror", "onload", "onclick", "javascript:", "alert(7)", "<iframe", "<style"]


def hostile_notebook():
    outputs = [
        new_output("display_data", data={"application/javascript": "alert(7)", "text/plain": "<Javascript>"}),
        new_output("display_data", data={"text/html": "<b>table</b><script>alert(7)</script>"
                                                      "<img src=x onerror=\"alert(7)\"><a href=\"javascript:alert(7)\">x</a>"
                                                      "<iframe src=\"https://evil.example\"></iframe>"
                                                      "<div onclick=\"alert(7)\">cell</div>"}),
        new_output("display_data", data={"image/svg+xml": "<svg xmlns=\"http://www.w3.org/2000/svg\" "
                                                          "viewBox=\"0 0 4 4\" onload=\"alert(7)\"><script>alert(7)"
                                                          "</script><path d=\"M0 0L4 4\" style=\"stroke: red\"/></svg>"}),
        new_output("execute_result", data={"text/html": "<style>body{display:none}</style><p>kept</p>",
                                           "text/plain": "kept"}, execution_count=1),
        new_output("display_data", data={"image/png": PNG}),
        new_output("stream", name="stdout", text="<script>alert(7)</script> printed text stays text\n"),
    ]
    cells = [new_code_cell("print(1)", outputs=outputs),
             new_markdown_cell("Because $a < b$ and `x<y`, the answer is **2**."),
             new_markdown_cell("My answer <img src=x onerror=alert(7)> <script>alert(7)</script>"),
             new_raw_cell("<script>alert(7)</script>", metadata={"format": "text/html"})]
    cells[1]["attachments"] = {"a.svg": {"image/svg+xml": "<svg onload='alert(7)'/>"}, "b.png": {"image/png": PNG}}
    return new_notebook(cells=cells)


def rendered_parts(nb) -> str:
    """What a browser would render: outputs' rich data, markdown and raw sources, attachments."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            parts += [json.dumps(o.get("data", {})) for o in cell.outputs]
        else:
            parts.append(cell.source)
        parts.append(json.dumps(cell.get("attachments", {})))
    return "\n".join(parts)


def test_hostile_outputs_are_cleaned_and_honest_ones_kept():
    nb = clean_notebook(hostile_notebook())
    text = rendered_parts(nb)
    for attack in ATTACKS:
        assert attack not in text, attack
    outputs = nb.cells[0].outputs
    assert "application/javascript" not in outputs[0]["data"] and outputs[0]["data"]["text/plain"] == "<Javascript>"
    assert "<b>table</b>" in outputs[1]["data"]["text/html"] and "cell</div>" in outputs[1]["data"]["text/html"]
    assert 'viewBox="0 0 4 4"' in outputs[2]["data"]["image/svg+xml"] and "stroke: red" in outputs[2]["data"]["image/svg+xml"]
    assert "<p>kept</p>" in outputs[3]["data"]["text/html"]
    assert outputs[4]["data"]["image/png"] == PNG
    assert outputs[5]["text"].startswith("<script>")            # a stream is shown as text, never as HTML
    assert nb.cells[1].source == "Because $a < b$ and `x<y`, the answer is **2**."   # untouched
    assert "My answer" in nb.cells[2].source
    assert list(nb.cells[1]["attachments"]) == ["b.png"]
    nbformat.validate(nb)


def test_the_notebook_formgrader_opens_is_clean(tmp_path):
    src = tmp_path / "submitted.ipynb"
    nbformat.write(hostile_notebook(), src)
    dest = gradebook.copy_autograded(src, tmp_path / "course", "ann", "a", "a")
    text = rendered_parts(nbformat.read(dest, as_version=4))
    assert "printed text" in dest.read_text()
    for attack in ATTACKS:
        assert attack not in text, attack


@pytest.mark.slow
def test_the_executed_notebook_the_grader_keeps_is_clean(tmp_path):
    """End to end: a cell displays JavaScript and an HTML handler; the executed notebook written by
    the grader (grades/<a>/executed/, then autograded/) holds neither."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "toy"))
    import toy_kit

    from autograder.runner import Limits, grade_notebook
    cell = ("from IPython.display import HTML, Javascript, SVG, display\n"
            "display(Javascript('alert(7)'))\n"
            "display(HTML('<b>bold</b><img src=x onerror=\"alert(7)\">'))\n"
            "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(7)\"><circle r=\"1\"/></svg>'))")
    nb = toy_kit.insert_after(toy_kit.submission(), "add", cell)
    path, executed = tmp_path / "s.ipynb", tmp_path / "executed.ipynb"
    path.write_text(nbformat.writes(nb))
    result = grade_notebook(toy_kit.toy_assignment(), path, limits=Limits(call_timeout=30), executed_path=executed)
    assert result["score"] == 7.0
    text = rendered_parts(nbformat.read(executed, as_version=4))     # the cell's source is shown as code
    assert "<b>bold</b>" in text and "<circle" in text
    for attack in ("application/javascript", "onerror", "onload", "alert(7)"):
        assert attack not in text, attack
