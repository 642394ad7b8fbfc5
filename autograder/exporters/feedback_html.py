"""Feedback as an HTML page per student: feedback/<student>.html (autograder/feedback.py renders it)."""
from __future__ import annotations

from autograder import feedback
from autograder.exporters.base import FeedbackFile


class FeedbackHTML(FeedbackFile):
    name = "html"
    help = "feedback/<student>.html"
    suffix = ".html"
    render = staticmethod(feedback.render_html)
