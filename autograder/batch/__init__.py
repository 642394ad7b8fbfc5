"""Grade every submission of an assignment: `python -m autograder grade <assignment> <directory>`.

Layouts of <directory> (both may be mixed; the student id is the folder name or the file stem):

    submitted/<student>/<assignment>/<notebook>.ipynb     nbgrader's layout (the course root works too)
    <student>.ipynb                                        a flat folder

Each submission is graded in its own `python -m autograder grade <a> <nb> --json` subprocess, so a
submission that crashes or hangs the grader costs that student the points (with the reason) and
nothing else. Up to `workers` subprocesses run at once.

Outputs under `out` (default grades/<assignment>/), for every student found, graded or not:

    <student>.json                   the grade result (autograder/result.py) + the batch's stamp
    executed/<student>.ipynb         the notebook as the grader executed it
    logs/<time>.log                  this run's grader faults with tracebacks and subprocess stderr
and, from the stored results, each output format chosen (autograder/exporters; all by default):
    gradebook.csv                    one row per student: score, max, points per test, status, errors
    feedback/<student>.html, .md     what the student reads (never the instructor notes)
    gradescope/<student>/results.json
    nbgrader's gradebook             <course>/gradebook.db, autograded/ for formgrader

Faults that are not the student's (a hidden test that crashed, a grader that failed, anything a
grading subprocess wrote to stderr, tampering findings, a sandbox in which the kernel could read
the hidden suites) are kept in each result's instructor notes, written to the log and printed by
`summary`; a machine where the kernel could read the hidden suites is named in a warning at the start.

Restartable: a submission whose notebook (sha256) and suite/release (fingerprint) are unchanged
since its JSON was written is not graded again (unless force). The JSON is written last and
atomically (tmp file, then os.replace), and every other output is rebuilt from the JSONs on each
run, so a batch killed at any point and run again neither loses nor double-counts anything.

One job per file:

    submissions.py      finding the hand-ins in <directory>, refusing links, reading one safely
    suite.py            the hidden suite's fingerprint and its tests (for 0-point rows)
    grader_process.py   one notebook graded in a grading subprocess, killed whole on timeout
    grading.py          one student's grade: kept if unchanged, else graded, else 0 with the reason
    store.py            <out>/<student>.json and executed/<student>.ipynb, written by one thread
    exports.py          every output format, rebuilt from the stored results
    report.py           the report returned, the summary printed and the log of faults
    run.py              `Batch`: the run that puts them together (threads, pool, signals)
"""
from __future__ import annotations

from autograder.batch.exports import Exports
from autograder.batch.grader_process import (GRADER_ENV, MAX_STDERR, Children, GraderRun, grader_command,
                                             grader_env, pooled_command, run_grader)
from autograder.batch.grading import SubmissionGrader, zero_result
from autograder.batch.report import BatchReport, FaultLog, readable_suites_warning, summary
from autograder.batch.run import Batch, grade_directory
from autograder.batch.store import ResultStore
from autograder.batch.submissions import (MAX_ENTRIES, NO_SUBMISSION, LayoutError, Submission, find_submissions,
                                          read_submission, refusal, sha256_file)
from autograder.batch.suite import suite_fingerprint, suite_tests

__all__ = ["GRADER_ENV", "MAX_ENTRIES", "MAX_STDERR", "NO_SUBMISSION", "Batch", "BatchReport", "Children",
           "Exports", "FaultLog", "GraderRun", "LayoutError", "ResultStore", "Submission", "SubmissionGrader",
           "find_submissions", "grade_directory", "grader_command", "grader_env", "pooled_command",
           "read_submission", "readable_suites_warning", "refusal", "run_grader", "sha256_file", "summary",
           "suite_fingerprint", "suite_tests", "zero_result"]
