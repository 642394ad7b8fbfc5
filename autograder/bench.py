"""`python -m autograder bench [assignment]`: where grading time goes (a benchmark, not a test).

1. Per sample submission (the package's samples, autograder/samples.py: correct, mistakes, blank,
   cheat), one
   `python -m autograder grade <a> <nb> --json` process, timed from outside, beside the runner's own
   figures (its "timing" key): executing the notebook's cells, starting the kernel, the suite.
   overhead = wall time of the whole process - notebook execution time; target < 5 s.
2. A batch of `n` (>= 8) submissions graded with --workers 1 and then --workers 2 (same files,
   --force, no gradebook), wall times side by side and their ratio; target: clearly below 1 on a
   2-core machine. Both batches must give the same scores (checked, printed).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent


def _grade_one(assignment: str, notebook: Path, settings: list[str]) -> tuple[dict | None, float, str]:
    cmd = [sys.executable, "-m", "autograder", "grade", assignment, str(notebook), "--json", *settings]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    try:
        return json.loads(proc.stdout), wall, ""
    except ValueError:
        return None, wall, (proc.stderr.strip().splitlines() or ["no output"])[-1]


def _batch(assignment: str, folder: Path, out: Path, workers: int,
           settings: list[str]) -> tuple[float, dict[str, str]]:
    cmd = [sys.executable, "-m", "autograder", "grade", assignment, str(folder), *settings, "--workers", str(workers),
           "--force", "--no-gradebook", "--no-progress", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"batch failed:\n{proc.stdout}\n{proc.stderr}")
    with open(out / "gradebook.csv", newline="") as f:
        scores = {row["student"]: row["score"] for row in csv.DictReader(f)}
    return wall, scores


def _pick(assignment: str | None):
    """The assignment to bench: the one named, else the first with shipped samples. -> Assignment or None."""
    from autograder.assignments import find_assignment, list_assignments
    from autograder.samples import shipped
    if assignment is not None:
        try:
            return find_assignment(assignment)
        except (LookupError, FileNotFoundError):
            return None
    with_samples = [a for a in list_assignments() if shipped(a.name) and a.release_notebook.is_file()]
    return with_samples[0] if with_samples else None


def main(assignment: str | None = None, n: int = 8, out: Path | None = None, settings=None) -> int:
    """settings: autograder.settings.Settings for every grading (default: the course's)."""
    from autograder.samples import samples_for
    flags = ["--settings", settings.to_json()] if settings is not None else []
    found = _pick(assignment)
    if found is None:
        print("bench: no assignment with sample submissions" + (f" named {assignment}" if assignment else ""),
              file=sys.stderr)
        return 2
    name = found.name
    samples, why = samples_for(found)
    if not samples:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    n = max(8, n)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="autograder-bench-")
        out = Path(tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    try:
        single = out / "single"
        single.mkdir(exist_ok=True)
        built = {}
        for kind, sample in samples.items():
            data = nbformat.writes(sample.build()).encode()
            (single / f"{kind}.ipynb").write_bytes(data)
            built[kind] = data

        print(f"bench {name} on {os.cpu_count()} CPU core(s)")
        print(f"{'submission':<10} {'score':>9} {'wall s':>7} {'kernel s':>8} {'notebook s':>10} "
              f"{'suite s':>7} {'overhead s':>10}")
        overheads = []
        for kind in built:
            result, wall, err = _grade_one(name, single / f"{kind}.ipynb", flags)
            if result is None:
                print(f"{kind:<10} grader failed: {err}")
                continue
            timing = result.get("timing", {})
            notebook = float(timing.get("notebook", 0.0))
            kernel = sum(timing.get("kernel_start", []) or [0.0])
            overheads.append(wall - notebook)
            print(f"{kind:<10} {result['score']:>4g}/{result['max_score']:<4g} {wall:7.2f} {kernel:8.2f} "
                  f"{notebook:10.2f} {float(timing.get('suite', 0.0)):7.2f} {wall - notebook:10.2f}")
        if overheads:
            print(f"grader overhead beyond executing the notebook: mean {sum(overheads) / len(overheads):.2f} s, "
                  f"max {max(overheads):.2f} s (target < 5 s)")

        many = out / "batch"
        many.mkdir(exist_ok=True)
        kinds = list(built)
        for i in range(n):
            (many / f"student{i + 1:02d}.ipynb").write_bytes(built[kinds[i % len(kinds)]])
        w1, s1 = _batch(name, many, out / "w1", 1, flags)
        w2, s2 = _batch(name, many, out / "w2", 2, flags)
        print(f"batch of {n}: --workers 1 {w1:.1f} s, --workers 2 {w2:.1f} s, ratio {w2 / w1:.2f} "
              f"({'same' if s1 == s2 else 'DIFFERENT'} scores)")
        return 0 if s1 == s2 else 1
    finally:
        if tmp is not None:
            tmp.cleanup()
