"""The batch's outputs in every format chosen (autograder/exporters; all by default):

    gradebook.csv                    one row per student: score, max, points per test, status, errors
    feedback/<student>.html, .md     what the student reads (never the instructor notes)
    gradescope/<student>/results.json
    nbgrader's gradebook             <course>/gradebook.db, autograded/ for formgrader

Every output is rebuilt from the stored results on each run (begin, one `student` call per stored
result, end), so it never depends on which submissions this run graded. One student's output that
fails is reported and stops nothing: the other students and formats are written.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

from autograder import exporters, feedback
from autograder.exporters import Entry, ExportContext


class Exports:
    """The chosen exporters of one batch and what they are told of the assignment.

    Inputs: name (the assignment's), release_path (the release notebook: exercise titles for the
    feedback), out, directory (the submissions), course_dir (nbgrader's, or None), chosen (names
    of formats; None: all).
    """

    def __init__(self, name: str, release_path: Path, out: Path, directory: Path, course_dir: Path | None,
                 chosen=None):
        self.exporters = exporters.select(chosen)
        self.name, self.out, self.directory, self.course_dir = name, out, directory, course_dir
        self.release_nb = nbformat.read(str(release_path), as_version=4)
        self.notebook_id = release_path.stem
        self.cell_titles = feedback.exercise_titles(self.release_nb)
        self.ctx: ExportContext | None = None

    def begin(self, template: list[dict]) -> ExportContext:
        """Start every format for the suite's tests `template` (see SubmissionGrader.template)."""
        self.ctx = ExportContext(
            assignment=self.name, out=self.out, release_nb=self.release_nb, notebook_id=self.notebook_id,
            cell_titles=self.cell_titles, course_dir=self.course_dir, directory=self.directory,
            descriptions={t["name"]: t["description"] for t in template if t.get("description")},
            test_names=[t["name"] for t in template])
        for exporter in self.exporters:
            exporter.begin(self.ctx)
        return self.ctx

    def student(self, entry: Entry) -> list[str]:
        """Every format's output for one stored result. -> errors ("<format>: <student>: <why>")."""
        errors = []
        for exporter in self.exporters:
            try:
                exporter.student(self.ctx, entry)
            except Exception as e:  # noqa: BLE001 - one student's output must not stop the batch
                errors.append(f"{exporter.name}: {entry.student}: {type(e).__name__}: {e}")
        return errors

    def end(self, entries: list[Entry]) -> list[str]:
        """Finish every format with all stored results, in student order. -> errors ("<format>: <why>")."""
        errors = []
        for exporter in self.exporters:
            try:
                exporter.end(self.ctx, entries)
            except Exception as e:  # noqa: BLE001 - reported; the other formats are written
                errors.append(f"{exporter.name}: {type(e).__name__}: {e}")
        return errors

    def outputs(self) -> list[str]:
        """Where each format's files went (for the summary)."""
        return [o for o in (e.outputs(self.ctx) for e in self.exporters) if o]
