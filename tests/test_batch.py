"""The batch grader (autograder/batch/) on a fake assignment graded by a fake single grader.

The fake grader (tests/autograder_fakes.py) scores each notebook by a directive in it, so the
expected scores are known without running kernels; the real grader on real kernels is tested in
test_cli.py (slow).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

import autograder_fakes as fakes
from autograder import batch

VOLATILE = {"graded_at", "grader_seconds", "submission"}


write = fakes.write_submission


def run(assignment, subs, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("placeholder_tests", fakes.placeholder)
    return batch.grade_directory(assignment, subs, out=out, **kw)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in VOLATILE}


# ---------------------------------------------------------------------------------------------
def test_layouts_and_rows_for_everyone(fake, tmp_path):
    """nbgrader layout, flat files and a student without a notebook: one row each, nothing missing."""
    subs = tmp_path / "submitted"
    write(subs / "ann" / "toyfake" / "toyfake.ipynb", "pass=test_add_small,test_mul")
    write(subs / "ben" / "toyfake" / "renamed.ipynb", "pass=test_add_small")      # the only notebook
    (subs / "cat" / "toyfake").mkdir(parents=True)                                # nothing handed in
    write(subs / "dan" / "other_assignment" / "other.ipynb", "pass=test_mul")     # not this one
    write(subs / "eve.ipynb", "pass=test_add_small,test_add_large,test_mul")      # flat
    out = tmp_path / "grades"
    report = run(fake, subs, out)

    assert sorted(report.results) == ["ann", "ben", "cat", "dan", "eve"]
    assert sorted(report.missing) == ["cat", "dan"]
    rows = {r["student"]: r for r in read_csv(out / "gradebook.csv")}
    assert list(rows) == ["ann", "ben", "cat", "dan", "eve"]
    expect = {"ann": {"test_add_small", "test_mul"}, "ben": {"test_add_small"}, "cat": set(), "dan": set(),
              "eve": {"test_add_small", "test_add_large", "test_mul"}}
    for student, passing in expect.items():
        assert float(rows[student]["score"]) == fakes.expected_score(passing), student
        assert float(rows[student]["max_score"]) == fakes.MAX_SCORE
        for name, _, pts in fakes.TESTS:
            assert float(rows[student][name]) == (pts if name in passing else 0.0)
    for student in ("cat", "dan"):
        assert rows[student]["status"] == "missing"
        assert batch.NO_SUBMISSION in rows[student]["errors"]
        data = json.loads((out / f"{student}.json").read_text())
        assert data["score"] == 0 and data["max_score"] == fakes.MAX_SCORE
        assert [t["name"] for t in data["tests"]] == [n for n, _, _ in fakes.TESTS]
        assert all(t["message"] == batch.NO_SUBMISSION for t in data["tests"])


def test_outputs_per_student(fake, tmp_path):
    subs = tmp_path / "subs"
    nb = write(subs / "ann.ipynb", "pass=test_add_small")
    out = tmp_path / "grades"
    run(fake, subs, out)

    data = json.loads((out / "ann.json").read_text())
    assert data["student"] == "ann" and data["assignment"] == "toyfake"
    assert data["submission_sha256"] == batch.sha256_file(nb)
    assert data["score"] == 1.0 and data["status"] == "graded" and data["graded_at"]
    assert json.loads((out / "executed" / "ann.ipynb").read_text())["metadata"]["fake_executed"] is True

    gs = json.loads((out / "gradescope" / "ann" / "results.json").read_text())
    assert gs["score"] == 1.0
    assert [(t["score"], t["max_score"]) for t in gs["tests"]] == [(1.0, 1.0), (0.0, 1.0), (0.0, 2.0)]
    assert {t["visibility"] for t in gs["tests"]} == {"visible"}
    assert gs["tests"][1]["output"] == fakes.FAIL_MESSAGE

    html = (out / "feedback" / "ann.html").read_text()
    md = (out / "feedback" / "ann.md").read_text()
    assert "Score: 1 / 4" in html and "**Score: 1 / 4**" in md
    assert "Exercise 1: addition (2 points)" in md             # the notebook's heading for test_add
    assert "&lt;b&gt;11&lt;/b&gt;" in html and "<b>11</b>" not in html
    assert not list(out.glob(".tmp/*")), "temporary files left behind"


def test_broken_graders_cost_only_that_student(fake, tmp_path):
    subs = tmp_path / "subs"
    write(subs / "crash.ipynb", "crash")
    write(subs / "garbage.ipynb", "garbage")
    write(subs / "error.ipynb", "error pass=test_mul")
    (subs / "notjson.ipynb").write_bytes(b"\x00\x01 definitely not a notebook")
    write(subs / "good.ipynb", "pass=test_mul")
    out = tmp_path / "grades"
    report = run(fake, subs, out, workers=2)

    rows = {r["student"]: r for r in read_csv(out / "gradebook.csv")}
    assert set(rows) == {"crash", "garbage", "error", "notjson", "good"}
    assert float(rows["good"]["score"]) == 2.0
    for s in ("crash", "garbage", "error", "notjson"):
        assert float(rows[s]["score"]) == 0.0, s
        assert float(rows[s]["max_score"]) == fakes.MAX_SCORE, s
    assert "exit status 1" in rows["crash"]["errors"] and "fake grader crashed" in rows["crash"]["errors"]
    assert "no valid JSON" in rows["garbage"]["errors"]
    assert rows["error"]["status"] == "errors" and "NameError" in rows["error"]["errors"]
    assert sorted(report.failed) == ["crash", "garbage", "notjson"]


def test_unchanged_submissions_are_not_graded_again(fake, tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "grades"
    for s in ("ann", "ben", "cat"):
        write(subs / f"{s}.ipynb", "pass=test_mul")
    run(fake, subs, out)
    assert len(fakes.log_lines(tmp_path)) == 3

    report = run(fake, subs, out)                               # nothing changed
    assert len(fakes.log_lines(tmp_path)) == 3 and sorted(report.skipped) == ["ann", "ben", "cat"]

    write(subs / "ben.ipynb", "pass=test_add_small")            # one notebook changed
    report = run(fake, subs, out)
    assert [l[1] for l in fakes.log_lines(tmp_path)[3:]] == ["ben"] and report.graded == ["ben"]
    assert json.loads((out / "ben.json").read_text())["score"] == 1.0

    (fake.suite_dir / "test_fake.py").write_text(fakes.SUITE + "\n# a hidden test changed\n")
    report = run(fake, subs, out)                               # the suite changed: all again
    assert len(fakes.log_lines(tmp_path)) == 7 and sorted(report.graded) == ["ann", "ben", "cat"]

    report = run(fake, subs, out, force=True)
    assert len(fakes.log_lines(tmp_path)) == 10
    assert [r["student"] for r in read_csv(out / "gradebook.csv")] == ["ann", "ben", "cat"]


def test_workers_grade_in_parallel(fake, tmp_path):
    """With 2 workers two graders run at the same time (their start/end intervals overlap), and
    never more than 2. Each grading sleeps 2 s. How many pairs of intervals overlap depends on when
    each pooled grader's interpreter is ready: in one CI run, with 1 s sleeps, only one pair did where
    the test expected two, so the test asserts that two ran at once, not how often."""
    subs = tmp_path / "subs"
    for s in ("a1", "a2", "a3", "a4"):
        write(subs / f"{s}.ipynb", "sleep=2 pass=test_mul")
    run(fake, subs, tmp_path / "grades", workers=2)
    starts = {l[1]: float(l[2]) for l in fakes.log_lines(tmp_path, "start")}
    ends = {l[1]: float(l[2]) for l in fakes.log_lines(tmp_path, "end")}
    assert sorted(starts) == sorted(ends) == ["a1", "a2", "a3", "a4"]
    running = max(sum(1 for s in starts if starts[s] <= t < ends[s]) for t in starts.values())
    assert running == 2                                          # at once, and never more than --workers


def test_graders_are_started_ahead_and_each_grades_one_submission(fake, tmp_path):
    """The pool (autograder/pool.py): the grader of the next submission is started while the
    current one is graded; every submission gets a process of its own; none is started in vain."""
    subs = tmp_path / "subs"
    for s in ("b1", "b2", "b3", "b4"):
        write(subs / f"{s}.ipynb", "sleep=2 pass=test_mul")          # 2 s: a loaded machine's interpreter start
    run(fake, subs, tmp_path / "grades", workers=1)
    ready = {l[3]: float(l[2]) for l in fakes.log_lines(tmp_path, "ready")}
    starts = {l[1]: (float(l[2]), l[3]) for l in fakes.log_lines(tmp_path, "start")}
    ends = {l[1]: float(l[2]) for l in fakes.log_lines(tmp_path, "end")}
    assert len({pid for _, pid in starts.values()}) == 4 and set(ready) == {pid for _, pid in starts.values()}
    assert not fakes.log_lines(tmp_path, "unused")
    order = sorted(starts, key=lambda s: starts[s][0])
    for before, after in zip(order, order[1:]):
        assert ready[starts[after][1]] < ends[before]            # ready while the one before was graded


def test_timeout_kills_the_grader(fake, tmp_path):
    subs = tmp_path / "subs"
    write(subs / "slow.ipynb", "sleep=60 pass=test_mul")
    write(subs / "fast.ipynb", "pass=test_mul")
    start = time.monotonic()
    run(fake, subs, tmp_path / "grades", timeout=3, workers=2)
    assert time.monotonic() - start < 30
    rows = {r["student"]: r for r in read_csv(tmp_path / "grades" / "gradebook.csv")}
    assert float(rows["slow"]["score"]) == 0 and "did not finish within 3 s" in rows["slow"]["errors"]
    assert float(rows["fast"]["score"]) == 2
    pid = int(fakes.log_lines(tmp_path, "start")[[l[1] for l in fakes.log_lines(tmp_path)].index("slow")][3])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_killed_batch_resumes_without_loss_or_double_count(tmp_path):
    """Kill the batch's process group after the first result; a rerun equals a clean run."""
    env = fakes.env_with(fakes.install(tmp_path))
    fakes.make_assignment(tmp_path)
    subs = tmp_path / "subs"
    directives = {f"s{i}": ("sleep=0.5 pass=test_mul" if i % 2 else "sleep=0.5 pass=test_add_small,test_add_large")
                  for i in range(5)}
    for s, d in directives.items():
        write(subs / f"{s}.ipynb", d)
    out = tmp_path / "grades"
    proc = subprocess.Popen(fakes.driver_command(tmp_path, subs, out, workers=2, course=tmp_path / "course1"),
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300               # a generous wait on a busy machine; normally seconds
    while not list(out.glob("s*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.glob("s*.json")), "no result appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in out.glob("s*.json")}
    assert done_before and len(done_before) < len(directives), "kill came too late to test anything"
    time.sleep(0.5)
    graded_before = len(fakes.log_lines(tmp_path))

    subprocess.run(fakes.driver_command(tmp_path, subs, out, workers=2, course=tmp_path / "course1"),
                   env=env, check=True, capture_output=True)
    regraded = [l[1] for l in fakes.log_lines(tmp_path)[graded_before:]]
    assert not set(regraded) & done_before, "a stored result was graded again"
    assert sorted(set(regraded) | done_before) == sorted(directives)

    clean = tmp_path / "clean"
    subprocess.run(fakes.driver_command(tmp_path, subs, clean, workers=2, course=tmp_path / "course2"),
                   env=env, check=True, capture_output=True)
    assert read_csv(out / "gradebook.csv") == read_csv(clean / "gradebook.csv")
    for s in directives:
        assert stable(json.loads((out / f"{s}.json").read_text())) == \
            stable(json.loads((clean / f"{s}.json").read_text()))
        assert (out / "feedback" / f"{s}.md").read_text() == (clean / "feedback" / f"{s}.md").read_text()
    from nbgrader.api import Gradebook
    from autograder.gradebook import db_url
    scores = []
    for course in ("course1", "course2"):
        with Gradebook(db_url(tmp_path / course), course_id="dlcourse") as gb:
            scores.append(sorted((s.student.id, s.score) for s in gb.assignment_submissions("toyfake")))
    assert scores[0] == scores[1] and len(scores[0]) == len(directives)


def test_find_submissions_rejects_ambiguous_folders(tmp_path):
    write(tmp_path / "ann" / "a" / "x.ipynb", "")
    write(tmp_path / "ann" / "a" / "y.ipynb", "")
    (subs,) = batch.find_submissions(tmp_path, "a", "a.ipynb")
    assert subs.path is None and "several notebooks" in subs.reason
    write(tmp_path / "ann" / "a" / "a.ipynb", "")
    (subs,) = batch.find_submissions(tmp_path, "a", "a.ipynb")
    assert subs.path.name == "a.ipynb"
    with pytest.raises(FileNotFoundError):
        batch.find_submissions(tmp_path / "nope", "a", "a.ipynb")


def test_student_twice_is_a_clear_error(tmp_path):
    write(tmp_path / "ann.ipynb", "")
    write(tmp_path / "ann" / "a" / "a.ipynb", "")
    with pytest.raises(batch.LayoutError, match="ann"):
        batch.find_submissions(tmp_path, "a", "a.ipynb")


def test_symlinks_and_special_files_are_refused_and_the_batch_goes_on(fake, tmp_path):
    """A submission that is (or contains) a symlink, or anything that is not a regular file, is never
    read: the grader runs as root and would otherwise grade the solution, a hidden suite or another
    student's notebook. Each such student gets 0 with the reason; the others are graded as usual."""
    secret = write(tmp_path / "instructor" / "solution.ipynb", "pass=test_add_small,test_add_large,test_mul")
    subs = tmp_path / "submitted"
    write(subs / "ann" / "toyfake" / "toyfake.ipynb", "pass=test_mul")
    (subs / "bob" / "toyfake").mkdir(parents=True)
    (subs / "bob" / "toyfake" / "toyfake.ipynb").symlink_to(secret)               # the solution
    (subs / "cid").symlink_to(subs / "ann")                                        # another student's folder
    write(subs / "dee" / "other" / "x.ipynb", "")
    (subs / "dee" / "toyfake").symlink_to(secret.parent)                           # the assignment folder
    write(subs / "eli" / "toyfake" / "toyfake.ipynb", "pass=test_mul")
    os.mkfifo(subs / "eli" / "toyfake" / "data.fifo")                              # would hang a reader
    write(subs / "fay" / "toyfake" / "toyfake.ipynb", "pass=test_mul")
    (subs / "fay" / "toyfake" / "timestamp.txt").symlink_to("/etc/shadow")
    (subs / "gil.ipynb").symlink_to(secret)                                         # flat layout
    out = tmp_path / "grades"
    report = run(fake, subs, out)

    refused = {"bob": "bob/toyfake/toyfake.ipynb is a symbolic link", "cid": "cid is a symbolic link",
               "dee": "dee/toyfake is a symbolic link", "eli": "data.fifo is not a regular file",
               "fay": "timestamp.txt is a symbolic link", "gil": "gil.ipynb is a symbolic link"}
    assert sorted(report.results) == ["ann", *sorted(refused)]
    rows = {r["student"]: r for r in read_csv(out / "gradebook.csv")}
    assert float(rows["ann"]["score"]) == fakes.expected_score({"test_mul"}) and rows["ann"]["status"] == "graded"
    for student, why in refused.items():
        assert float(rows[student]["score"]) == 0.0, student
        assert rows[student]["status"] == "refused", student
        assert "submission refused" in rows[student]["errors"] and why in rows[student]["errors"], rows[student]
    started = [line[1] for line in fakes.log_lines(tmp_path, "start")]
    assert started == ["toyfake"], started                   # only ann's notebook reached a grader
    assert not (out / "executed" / "bob.ipynb").exists()


def test_a_notebook_swapped_for_a_symlink_after_discovery_is_not_read(tmp_path):
    nb = write(tmp_path / "ann.ipynb", "")
    (sub,) = batch.find_submissions(tmp_path, "a", "a.ipynb")
    nb.unlink()
    nb.symlink_to("/etc/passwd")
    with pytest.raises(OSError):
        batch.read_submission(sub.path)
