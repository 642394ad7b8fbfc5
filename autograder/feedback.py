"""Feedback for one student: what each hidden test checked, the points it gave, and why.

Input is the grade result (autograder/result.py: a GradeResult, or its JSON as printed by
`python -m autograder grade ... --json`, validated on the way in):

    {"assignment", "score", "max_score", "errors": [str],
     "tests": [{"name", "points", "max_points", "passed", "message", "cell"?, "description"?,
                "mistake"?}],
     "instructor": {...}}      # never shown here: the instructor's notes are dropped first

Output is an HTML page (`render_html`) and the same content as Markdown (`render_markdown`):
the total at the top, then the notebook-level errors, then one section per exercise (the
autograded test cell a test scores for). In a section, each known mistake the suite recognised
(a test's "mistake", see autograder.testing.Mistake) comes first, as "Likely mistake: ...",
followed by the tests that failed because of it; then the other tests, each with its humanised
name, points and message.

What feedback never shows: the hidden test's source or its expected values. Only the test's name,
its docstring (written for students) and the runner's student-facing message are used, and the
runner's messages never contain expected values (the result contract, autograder/result.py). The
result's instructor notes (grader faults, tracebacks of the hidden suite, isolation mode, tampering
findings) are removed before anything is rendered. Everything that comes from the student (their
id, messages that quote their traceback) is escaped in HTML.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import jinja2
import markupsafe

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
    mistake: str = ""

    @property
    def detail(self) -> str:
        """The message without the mistake's explanation (shown once, above the tests it caused)."""
        if self.mistake and self.message.endswith(self.mistake):
            return self.message[:-len(self.mistake)].rstrip(": ").strip()
        return self.message


@dataclass
class Mistake:
    """A known mistake the suite recognised in one exercise, and the tests that failed because of it."""
    explain: str
    checks: list[Check] = field(default_factory=list)


@dataclass
class Section:
    """The tests of one exercise (one autograded test cell)."""
    cell: str | None
    title: str
    checks: list[Check] = field(default_factory=list)

    @property
    def mistakes(self) -> list[Mistake]:
        """Each named mistake once (in test order) with the failed tests that named it."""
        found: dict[str, Mistake] = {}
        for c in self.checks:
            if c.mistake and not c.passed:
                found.setdefault(c.mistake, Mistake(c.mistake)).checks.append(c)
        return list(found.values())

    @property
    def other_checks(self) -> list[Check]:
        """The tests that named no mistake (passed, or failed for another reason)."""
        return [c for c in self.checks if c.passed or not c.mistake]

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.checks)


def student_view(result) -> dict:
    """The result as students may see it, as a dict: validated against the contract, without the
    instructor's notes and timings (a GradeResult or its JSON dict)."""
    from autograder.result import GradeResult
    if not isinstance(result, GradeResult):
        result = GradeResult.from_dict(result)
    view = result.student_view().to_dict()
    view.pop("instructor", None)
    return view


def sections(result, cell_titles: dict[str, str] | None = None) -> list[Section]:
    """Group the result's tests by exercise.

    Inputs:
    - result: the grader's JSON (see the module docstring).
    - cell_titles: grade_id -> exercise title, in notebook order (from `exercise_titles`); cells
      not in it are titled after their grade_id and come after the known ones.
    Returns: one Section per cell that has tests, in notebook order, then OTHER for tests without
    a cell.
    """
    result = student_view(result)
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
            mistake=" ".join(str(test.get("mistake") or "").split()),
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
_CODE_SPAN = re.compile(r"(`+)([^`]+?)\1(?!`)")


def _html_code(text) -> markupsafe.Markup:
    """Text escaped for HTML, with its `code spans` (as in an exercise's heading) shown as <code>."""
    out, last = [], 0
    for m in _CODE_SPAN.finditer(str(text)):
        out += [markupsafe.escape(str(text)[last:m.start()]), markupsafe.Markup("<code>%s</code>") % m.group(2)]
        last = m.end()
    out.append(markupsafe.escape(str(text)[last:]))
    return markupsafe.Markup("").join(out)


_ENV.filters["code"] = _html_code

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
 .mistake { border-left: 4px solid #b54708; background: #fffaeb; padding: .4em 1em; margin: .6em 0; }
 .mistake .check { margin-left: 0; }
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
{% macro check(c, text) %}
<div class="check">
<span class="{{ 'pass' if c.passed else 'fail' }}">{{ '&#10003;'|safe if c.passed else '&#10007;'|safe }}</span>
<strong>{{ c.title }}</strong>: {{ c.points|pts }} / {{ c.max_points|pts }}
{% if c.description %}<div class="desc">{{ c.description|code }}</div>{% endif %}
{% if text and not c.passed %}<pre>{{ text }}</pre>{% endif %}
</div>
{% endmacro %}
{% for s in sections %}
<h2>{{ s.title|code }}: {{ s.points|pts }} / {{ s.max_points|pts }}</h2>
{% for m in s.mistakes %}
<div class="mistake">
<p><strong>Likely mistake:</strong> {{ m.explain|code }}</p>
<p>Tests that failed because of it:</p>
{% for c in m.checks %}{{ check(c, c.detail) }}{% endfor %}
</div>
{% endfor %}
{% for c in s.other_checks %}{{ check(c, c.message) }}{% endfor %}
{% endfor %}
{% if not sections %}<p>No tests were run.</p>{% endif %}
</body>
</html>
""")


def render_html(result, *, student: str | None = None,
                cell_titles: dict[str, str] | None = None) -> str:
    """The feedback page as HTML (every value escaped; see the module docstring)."""
    result = student_view(result)
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
    return _md_escape(" ".join(text.split()))


def _md_escape(text: str) -> str:
    text = re.sub(r"([\\`*\[\]<>])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def _md_text(text: str) -> str:
    """Like _md_inline, but balanced `code spans` (exercise names in headings) stay code spans.

    A span's content has no backtick (the pattern), and nothing inside a code span is markup, so
    it is kept as written; the text around it is escaped.
    """
    text = " ".join(str(text).split())
    out, last = [], 0
    for m in _CODE_SPAN.finditer(text):
        out += [_md_escape(text[last:m.start()]), f"`{m.group(2)}`"]
        last = m.end()
    out.append(_md_escape(text[last:]))
    return "".join(out)


def render_markdown(result, *, student: str | None = None,
                    cell_titles: dict[str, str] | None = None) -> str:
    """The same feedback as Markdown (for the terminal, an LMS comment box or a Git repository)."""
    result = student_view(result)
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
    def check(c: Check, text: str, indent: str = "") -> list[str]:
        mark = "PASS" if c.passed else "FAIL"
        out = [f"{indent}- {mark} **{_md_inline(c.title)}**: {fmt_points(c.points)} / {fmt_points(c.max_points)}"]
        if c.description:
            out.append(f"{indent}  {_md_text(c.description)}")
        out.append("")
        if text and not c.passed:
            out += _md_block(text, indent=indent + "  ")
        return out

    for s in sections(result, cell_titles):
        lines += [f"## {_md_text(s.title)}: {fmt_points(s.points)} / {fmt_points(s.max_points)}", ""]
        for m in s.mistakes:
            lines += [f"> **Likely mistake:** {_md_text(m.explain)}", ">", "> Tests that failed because of it:", ""]
            for c in m.checks:
                lines += check(c, c.detail, indent="  ")
        for c in s.other_checks:
            lines += check(c, c.message)
    return "\n".join(lines).rstrip() + "\n"
