"""What every exporter gets and must provide (see autograder/exporters/__init__.py for the list).

An exporter turns the batch's stored results into one output format. The batch calls, in its main
thread (one writer):

    begin(ctx)                 once, before any student (open a database, make folders)
    student(ctx, entry)        once per student whose result is stored or kept (every student found)
    end(ctx, entries)          once, with every student's entry (write a table of all of them)

An exception in `student` costs that student's row in this format only: the batch reports it and
goes on. Exporters read the grade result (autograder/result.py) and never show its instructor notes
to students.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder.result import GradeResult


@dataclass
class ExportContext:
    """What a batch knows about the assignment and where outputs go.

    out: the batch's output folder (grades/<assignment>/); release_nb: the release notebook;
    notebook_id: its file stem; cell_titles: grade_id -> exercise title (feedback sections);
    descriptions: test name -> docstring (written for students); course_dir: nbgrader course root
    (None: no gradebook); directory: the folder of submissions.
    """
    assignment: str
    out: Path
    release_nb: object
    notebook_id: str
    cell_titles: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    test_names: list[str] = field(default_factory=list)
    course_dir: Path | None = None
    directory: Path | None = None


@dataclass
class Entry:
    """One student's stored result. folder: their submission folder (None for a flat file or none);
    submitted: their notebook (None when they handed in nothing usable); executed: the notebook as
    graded, if the grader wrote one."""
    student: str
    result: GradeResult
    folder: Path | None = None
    submitted: Path | None = None
    executed: Path | None = None


class Exporter:
    """One output format. Subclasses set `name` (the --export choice) and `help`."""
    name = ""
    help = ""

    def begin(self, ctx: ExportContext) -> None:
        pass

    def student(self, ctx: ExportContext, entry: Entry) -> None:
        pass

    def end(self, ctx: ExportContext, entries: list[Entry]) -> None:
        pass

    def outputs(self, ctx: ExportContext) -> str:
        """Where this format's files go, for the batch summary ("" if nowhere to point at)."""
        return ""


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers (and a rerun after a kill) see the old or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def with_descriptions(result: GradeResult, descriptions: dict[str, str]) -> GradeResult:
    """The student's view of the result, each test with its description (docstring) where known."""
    shown = result.student_view()
    for t in shown.tests:
        if not t.description and descriptions.get(t.name):
            t.description = descriptions[t.name]
    return shown


class FeedbackFile(Exporter):
    """One feedback file per student, feedback/<student><suffix>, made by `render` (a function of
    autograder/feedback.py: (result, student=, cell_titles=) -> text). Subclasses set the three."""
    suffix = ""
    render = None

    def student(self, ctx: ExportContext, entry: Entry) -> None:
        shown = with_descriptions(entry.result, ctx.descriptions)
        write_atomic(ctx.out / "feedback" / f"{entry.student}{self.suffix}",
                     type(self).render(shown, student=entry.student, cell_titles=ctx.cell_titles))

    def outputs(self, ctx: ExportContext) -> str:
        return f"feedback: {ctx.out / 'feedback'}/*{self.suffix}"
