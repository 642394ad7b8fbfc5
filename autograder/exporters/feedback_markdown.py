"""Feedback as Markdown per student: feedback/<student>.md (for an LMS comment box or a Git repository)."""
from __future__ import annotations

from autograder import feedback
from autograder.exporters.base import Entry, ExportContext, Exporter, with_descriptions, write_atomic


class FeedbackMarkdown(Exporter):
    name = "markdown"
    help = "feedback/<student>.md"

    def student(self, ctx: ExportContext, entry: Entry) -> None:
        shown = with_descriptions(entry.result, ctx.descriptions)
        write_atomic(ctx.out / "feedback" / f"{entry.student}.md",
                     feedback.render_markdown(shown, student=entry.student, cell_titles=ctx.cell_titles))
