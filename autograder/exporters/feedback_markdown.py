"""Feedback as Markdown per student: feedback/<student>.md (for an LMS comment box or a Git repository)."""
from __future__ import annotations

from autograder import feedback
from autograder.exporters.base import FeedbackFile


class FeedbackMarkdown(FeedbackFile):
    name = "markdown"
    help = "feedback/<student>.md"
    suffix = ".md"
    render = staticmethod(feedback.render_markdown)
