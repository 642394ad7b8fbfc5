"""What a batch tells the instructor: the `BatchReport` it returns, the `summary` printed at the end,
and the `FaultLog` written while it runs.

Instructors see every fault that is not the student's (a hidden test that crashed, a grader that
failed, anything a grading subprocess wrote to stderr, tampering findings, a sandbox in which the
kernel could read the hidden suites): the summary names each, the log keeps each with its full
detail, and a machine where the kernel could read the hidden suites is named in a warning at the
start (`readable_suites_warning`).
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from autograder.result import Fault, GradeResult
from autograder.settings import Settings


@dataclass
class BatchReport:
    """What a batch did. results: student -> stored result (every student found)."""
    results: dict[str, GradeResult]
    graded: list[str]
    skipped: list[str]
    failed: list[str]            # the grader produced no result (crash, timeout, bad output)
    missing: list[str]           # no notebook (or a refused one)
    export_errors: list[str]     # "<format>: <student>: <error>" for outputs not written
    out: Path
    seconds: float
    log: Path | None = None      # this run's log of grader faults and grading subprocesses' stderr
    outputs: list[str] = field(default_factory=list)   # where each format's files went
    warnings: list[str] = field(default_factory=list)  # printed at the start (e.g. readable suites)

    @property
    def gradebook_errors(self) -> list[str]:
        return self.export_errors

    def faults(self) -> list[tuple[str, Fault]]:
        """(student, fault) for every stored result's instructor notes, students in order."""
        return [(s, f) for s, r in sorted(self.results.items()) for f in r.faults]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def readable_suites_warning(settings: Settings) -> str | None:
    """The warning to print when this machine's kernels could read the hidden suites, else None."""
    from autograder.result import READABLE_SUITES
    from autograder.sandbox import isolation_mode
    if settings.limits.isolation == "none" or isolation_mode() == "none":
        return f"WARNING: {READABLE_SUITES}"
    return None


def summary(report: BatchReport) -> str:
    """A few lines for the terminal: counts, mean score, where the outputs are, and every fault that
    is not a student's (grader failures, suite errors, tampering findings, readable suites)."""
    res = list(report.results.values())
    mean = sum(r.score for r in res) / len(res) if res else 0.0
    max_score = max((r.max_score for r in res), default=0.0)
    lines = [f"{len(res)} student(s): {len(report.graded)} graded, {len(report.skipped)} unchanged "
             f"(kept), {len(report.missing)} without a submission, {len(report.failed)} grader failure(s); "
             f"mean {mean:.2f}/{max_score:g}; {report.seconds:.1f} s",
             "  ".join(report.outputs) or f"results: {report.out}"]
    lines += report.warnings
    for s in report.failed:
        lines.append(f"  grader failed for {s}: {report.results[s].errors[0]}")
    faults = [(s, f) for s, f in report.faults() if f.kind != "grader-failed"]
    readable = sorted({s for s, f in faults if f.kind == "isolation"})
    others = [(s, f) for s, f in faults if f.kind != "isolation"]
    if readable and not report.warnings:
        lines.append(f"WARNING: {len(readable)} submission(s) were graded where the kernel could read the hidden "
                     f"suites (isolation mode 'none'): {', '.join(readable[:10])}")
    if others:
        lines.append(f"grader faults (not the students'; tracebacks in {report.log or report.out}):")
        lines += [f"  {s}: {f.line()}" for s, f in others[:50]]
        if len(others) > 50:
            lines.append(f"  ... and {len(others) - 50} more")
    for e in report.export_errors:
        lines.append(f"  not written: {e}")
    return "\n".join(lines)


class FaultLog:
    """<out>/logs/<time>.log: this run's settings and warnings, then, per submission graded, every
    fault that is not the student's with its full detail (traceback, the grading subprocess's stderr)."""

    def __init__(self, out: Path, assignment: str, settings: Settings, warnings: list[str]):
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.path = out / "logs" / f"{stamp}-{uuid.uuid4().hex[:6]}.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w", encoding="utf-8")
        self.f.write(f"autograder batch for {assignment}, started {utc_now()}\nsettings: {settings.to_json()}\n")
        for w in warnings:
            self.f.write(w + "\n")
        self.count = 0
        self.f.flush()

    def record(self, student: str, result: GradeResult) -> None:
        notes = result.instructor
        for fault in notes.faults:
            self.count += 1
            self.f.write(f"\n== {student}: {fault.line()}\n")
            if fault.detail:
                self.f.write(fault.detail.rstrip() + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.write(f"\n{self.count} fault(s); finished {utc_now()}\n")
        self.f.close()
