"""nbgrader's gradebook: scores into <course>/gradebook.db and the graded notebook into autograded/,
so formgrader and `nbgrader export` show them (autograder/gradebook.py does the writing).

Active only when the batch has a course folder (nbgrader's submitted/ layout, or --course-dir).
"""
from __future__ import annotations

import nbformat

from autograder.exporters.base import Entry, ExportContext, Exporter


class NbgraderGradebook(Exporter):
    name = "nbgrader"
    help = "<course>/gradebook.db and autograded/ (nbgrader's layout or --course-dir only)"

    def __init__(self):
        self.gb = None

    def begin(self, ctx: ExportContext) -> None:
        if ctx.course_dir is None:
            return
        from autograder import gradebook as nbg
        self.gb = nbg.open_gradebook(ctx.course_dir)
        nbg.ensure_assignment(self.gb, ctx.assignment, ctx.notebook_id, ctx.release_nb)

    def student(self, ctx: ExportContext, entry: Entry) -> None:
        if self.gb is None:
            return
        from autograder import gradebook as nbg
        from autograder.batch import read_submission
        graded_nb = entry.executed if entry.executed is not None and entry.executed.is_file() else entry.submitted
        answered = None
        if graded_nb is not None:
            try:
                answered = nbformat.read(str(graded_nb), as_version=4)
            except Exception:  # noqa: BLE001 - an unreadable notebook: every answer counts as given
                answered = None
        stamp_file = entry.folder / "timestamp.txt" if entry.folder else None
        try:
            timestamp = read_submission(stamp_file, 4096).decode().strip() if stamp_file else None
        except (OSError, ValueError):       # none, a symlink, or not text: no timestamp
            timestamp = None
        try:
            nbg.record(self.gb, ctx.assignment, entry.student, entry.result, release_nb=ctx.release_nb,
                       notebook_id=ctx.notebook_id, answered_nb=answered, timestamp=timestamp, ensure=False)
        except Exception:
            self.gb.db.rollback()
            raise
        if graded_nb is not None:
            nbg.copy_autograded(graded_nb, ctx.course_dir, entry.student, ctx.assignment, ctx.notebook_id,
                                entry.folder if entry.folder != ctx.directory else None)

    def end(self, ctx: ExportContext, entries: list[Entry]) -> None:
        if self.gb is not None:
            self.gb.close()
            self.gb = None

    def outputs(self, ctx: ExportContext) -> str:
        return f"nbgrader gradebook: {ctx.course_dir / 'gradebook.db'}" if ctx.course_dir else ""
