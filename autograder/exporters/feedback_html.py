"""Feedback as an HTML page per student: feedback/<student>.html (autograder/feedback.py renders it)."""
from __future__ import annotations

from autograder import feedback
from autograder.exporters.base import Entry, ExportContext, Exporter, with_descriptions, write_atomic


class FeedbackHTML(Exporter):
    name = "html"
    help = "feedback/<student>.html"

    def student(self, ctx: ExportContext, entry: Entry) -> None:
        shown = with_descriptions(entry.result, ctx.descriptions)
        write_atomic(ctx.out / "feedback" / f"{entry.student}.html",
                     feedback.render_html(shown, student=entry.student, cell_titles=ctx.cell_titles))

    def outputs(self, ctx: ExportContext) -> str:
        return f"feedback: {ctx.out / 'feedback'}"
