"""Feedback for one student: what each hidden test checked, the points it gave, and why.

Input is the grader's result (the JSON of `python -m autograder grade ... --json`):

    {"assignment", "score", "max_score", "errors": [str],
     "tests": [{"name", "points", "max_points", "passed", "message", "cell"?, "description"?}]}

Output is an HTML page (`render_html`) and the same content as Markdown (`render_markdown`):
the total at the top, then the notebook-level errors, then one section per exercise (the
autograded test cell a test scores for), each test with its humanised name, points and message.

What feedback never shows: the hidden test's source or its expected values. Only the test's name,
its docstring (written for students) and the runner's student-facing message are used, and the
runner's messages never contain expected values (engine contract, SPEC.md). Everything that comes
from the student (their id, messages that quote their traceback) is escaped in HTML.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import jinja2

OTHER = "Other checks"          # section for tests that name no cell


# ---------------------------------------------------------------------------------------------
# Turning a result into sections
# ---------------------------------------------------------------------------------------------
def humanize(name: str) -> str:
    """"test_naive_stride_and_padding" -> "Naive stride and padding" (a test function's name).

    A parametrized id ("test_shapes[3x3-stride2]") keeps its parameters in parentheses.
    """
    base, _, params = name.partition("[")
    base = re.sub(r"^test_?", "", base.split("::")[-1]) or base
    words = base.replace("_", " ").strip()
    words = words[:1].upper() + words[1:]
    return f"{words} ({params.rstrip(']')})" if params else words


def fmt_points(x: float) -> str:
    """2.0 -> "2", 1.5 -> "1.5", 0.3333 -> "0.33": points as people write them."""
    return f"{round(float(x), 2):g}"


@dataclass
class Check:
    """One hidden test as the student sees it."""
    title: str
    description: str
    points: float
    max_points: float
    passed: bool
    message: str


@dataclass
class Section:
    """The tests of one exercise (one autograded test cell)."""
    cell: str | None
    title: str
    checks: list[Check] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.checks)


def sections(result: dict, cell_titles: dict[str, str] | None = None) -> list[Section]:
    """Group the result's tests by exercise.

    Inputs:
    - result: the grader's JSON (see the module docstring).
    - cell_titles: grade_id -> exercise title, in notebook order (from `exercise_titles`); cells
      not in it are titled after their grade_id and come after the known ones.
    Returns: one Section per cell that has tests, in notebook order, then OTHER for tests without
    a cell.
    """
    cell_titles = cell_titles or {}
    by_cell: dict[str | None, Section] = {}
    for test in result.get("tests", []):
        cell = test.get("cell")
        if cell not in by_cell:
            title = cell_titles.get(cell) or (humanize(cell) if cell else OTHER)
            by_cell[cell] = Section(cell, title)
        description = str(test.get("description") or test.get("doc") or "").strip()
        message = str(test.get("message") or "").strip()
        if description and message.startswith(description):      # the runner quotes the docstring
            rest = message[len(description):]
            if rest[:1] == ":" or rest.startswith(" \u2014"):      # "doc: why" or "doc — not passed"
                message = rest.lstrip(": \u2014").strip()
        by_cell[cell].checks.append(Check(
            title=humanize(str(test.get("name", "?"))),
            description=description,
            points=float(test.get("points", 0.0)),
            max_points=float(test.get("max_points", 0.0)),
            passed=bool(test.get("passed")),
            message=message,
        ))
    order = {cell: i for i, cell in enumerate(cell_titles)}
    return sorted(by_cell.values(),
                  key=lambda s: (s.cell is None, order.get(s.cell, len(order)), str(s.cell)))


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def exercise_titles(nb) -> dict[str, str]:
    """grade_id of each autograded test cell -> the title of the exercise it checks.

    The title is the last Markdown heading above the test cell (what the student reads in the
    notebook), e.g. "Exercise 1: naive convolution (3 points)"; a cell with no heading above it
    gets its humanised grade_id. Input: a notebook (nbformat NotebookNode). Order: notebook order.
    """
    titles, heading = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = _HEADING.findall(cell.source)
            if found:
                heading = found[-1].strip()
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
            gid = meta["grade_id"]
            titles[gid] = heading or humanize(gid)
    return titles


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
_ENV = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined)
_ENV.filters["pts"] = fmt_points

_HTML = _ENV.from_string("""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Feedback: {{ assignment }}{% if student %} ({{ student }}){% endif %}</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 52em; margin: 2em auto; padding: 0 1em; color: #222; }
 .total { font-size: 1.4em; font-weight: bold; }
 .pass { color: #1a7f37; } .fail { color: #b42318; }
 .check { margin: .6em 0 .6em 1em; }
 .desc { color: #555; }
 pre { background: #f6f8fa; padding: .6em; white-space: pre-wrap; overflow-wrap: anywhere; }
 .errors { border-left: 4px solid #b42318; padding-left: 1em; }
</style>
</head>
<body>
<h1>Feedback: {{ assignment }}</h1>
{% if student %}<p>Student: <strong>{{ student }}</strong></p>{% endif %}
<p class="total">Score: {{ score|pts }} / {{ max_score|pts }}</p>
{% if errors %}
<div class="errors">
<h2>Problems with the notebook as a whole</h2>
{% for e in errors %}<pre>{{ e }}</pre>
{% endfor %}
</div>
{% endif %}
{% for s in sections %}
<h2>{{ s.title }}: {{ s.points|pts }} / {{ s.max_points|pts }}</h2>
{% for c in s.checks %}
<div class="check">
<span class="{{ 'pass' if c.passed else 'fail' }}">{{ '&#10003;'|safe if c.passed else '&#10007;'|safe }}</span>
<strong>{{ c.title }}</strong>: {{ c.points|pts }} / {{ c.max_points|pts }}
{% if c.description %}<div class="desc">{{ c.description }}</div>{% endif %}
{% if c.message and not c.passed %}<pre>{{ c.message }}</pre>{% endif %}
</div>
{% endfor %}
{% endfor %}
{% if not sections %}<p>No tests were run.</p>{% endif %}
</body>
</html>
""")


def render_html(result: dict, *, student: str | None = None,
                cell_titles: dict[str, str] | None = None) -> str:
    """The feedback page as HTML (every value escaped; see the module docstring)."""
    return _HTML.render(assignment=result.get("assignment", ""), student=student,
                        score=float(result.get("score", 0.0)),
                        max_score=float(result.get("max_score", 0.0)),
                        errors=[str(e) for e in result.get("errors", [])],
                        sections=sections(result, cell_titles))


def _md_block(text: str, indent: str = "") -> list[str]:
    """Text as a fenced Markdown code block: nothing in it can start a heading or a link.

    The fence is longer than any run of backticks in the text, so the text cannot close it.
    """
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return [indent + fence] + [indent + line for line in text.splitlines()] + [indent + fence, ""]


def _md_inline(text: str) -> str:
    """One line of text safe to put in Markdown prose.

    Characters that could start markup mid-line are escaped; `_` inside words is left alone
    (CommonMark does not read it as emphasis there, and `my_conv` stays readable).
    """
    text = " ".join(text.split())
    text = re.sub(r"([\\`*\[\]<>])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def render_markdown(result: dict, *, student: str | None = None,
                    cell_titles: dict[str, str] | None = None) -> str:
    """The same feedback as Markdown (for the terminal, an LMS comment box or a Git repository)."""
    title = f"# Feedback: {_md_inline(result.get('assignment', ''))}"
    lines = [title, ""]
    if student:
        lines += [f"Student: **{_md_inline(student)}**", ""]
    lines += [f"**Score: {fmt_points(result.get('score', 0))} / {fmt_points(result.get('max_score', 0))}**", ""]
    errors = [str(e) for e in result.get("errors", [])]
    if errors:
        lines += ["## Problems with the notebook as a whole", ""]
        for e in errors:
            lines += _md_block(e)
    for s in sections(result, cell_titles):
        lines += [f"## {_md_inline(s.title)}: {fmt_points(s.points)} / {fmt_points(s.max_points)}", ""]
        for c in s.checks:
            mark = "PASS" if c.passed else "FAIL"
            lines.append(f"- {mark} **{_md_inline(c.title)}**: {fmt_points(c.points)} / {fmt_points(c.max_points)}")
            if c.description:
                lines.append(f"  {_md_inline(c.description)}")
            lines.append("")
            if c.message and not c.passed:
                lines += _md_block(c.message, indent="  ")
    return "\n".join(lines).rstrip() + "\n"
