"""gradebook.csv: one row per student (score, max_score, points per hidden test, status, errors)."""
from __future__ import annotations

import csv
import io

from autograder.exporters.base import Entry, ExportContext, Exporter, write_atomic
from autograder.result import GradeResult

_CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")


def cell_text(value: str) -> str:
    """A text value a spreadsheet will not run as a formula."""
    return "'" + value if value.startswith(_CSV_RISKY) else value


def status_of(result: GradeResult) -> str:
    if result.status:
        return result.status
    return "errors" if result.errors else "graded"


def gradebook_csv(results: list[tuple[str, GradeResult]], test_names: list[str]) -> str:
    """The CSV text: student, score, max_score, one column per test (points), status, errors."""
    names = list(test_names)
    for _, r in results:
        names += [t.name for t in r.tests if t.name not in names]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", "score", "max_score", *names, "status", "errors"])
    for student, r in results:
        points = {t.name: t.points for t in r.tests}
        w.writerow([cell_text(student), f"{r.score:g}", f"{r.max_score:g}",
                    *[f"{float(points[n]):g}" if n in points else "" for n in names],
                    status_of(r), cell_text(" | ".join(" ".join(e.split()) for e in r.errors))])
    return buf.getvalue()


class CSVGradebook(Exporter):
    name = "csv"
    help = "gradebook.csv (one row per student)"

    def end(self, ctx: ExportContext, entries: list[Entry]) -> None:
        write_atomic(ctx.out / "gradebook.csv",
                     gradebook_csv([(e.student, e.result) for e in entries], ctx.test_names))

    def outputs(self, ctx: ExportContext) -> str:
        return f"results: {ctx.out / 'gradebook.csv'}"
