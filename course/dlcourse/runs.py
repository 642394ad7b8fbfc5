"""A run registry: every training run leaves a folder that says what it was and what it got.

The lecture's rule "use git and save the code, the model, the configuration and the results"
is easy to agree with and easy to forget at 2 a.m. after the twentieth run. Here each run
writes, as it starts and as it ends:

    runs/<started>_<name>/
        config.json       name, the configuration you pass (lr, num_epochs, augment, ...), the
                          start time, the git commit of the code and whether the tree had
                          uncommitted changes ("dirty": the commit alone does not reproduce it)
        metrics.json      the final metrics, the whole History and the optimizer that trained
                          (history.optimizer), written when the run ends
        model.pt          the trained weights (state_dict), if you pass the network
        tensorboard/      fit(..., log_dir=run.log_dir) writes its curves here

and `list_runs()` reads them all back into one table, so that comparing runs is reading rows,
not remembering.

    run = dl.start_run("baseline", {"optimizer": "sgd", "lr": 0.05, "num_epochs": 10})
    history = dl.fit(net, train_iter, val_iter, num_epochs=10, optimizer="sgd", lr=0.05, log_dir=run.log_dir)
    run.finish(history, net=net)      # metrics.json also records history.optimizer, "SGD(lr=0.05, momentum=0.9, ...)"
    print(dl.format_runs(dl.list_runs()))
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
from pathlib import Path

import torch

CONFIG, METRICS, MODEL = "config.json", "metrics.json", "model.pt"


def git_state(path=".") -> dict | None:
    """{"commit": full hash, "dirty": bool} of the git work tree holding `path`; None outside one
    (or without git). dirty is True when tracked files have uncommitted changes or untracked,
    unignored files exist: then the commit does not describe the code that ran."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, path)                        # a crash never leaves half a file


class Run:
    """One run's folder. Made by start_run; `finish` records the outcome."""

    def __init__(self, folder: Path):
        self.dir = Path(folder)

    @property
    def log_dir(self) -> Path:
        """Where fit(log_dir=...) should write TensorBoard curves for this run."""
        return self.dir / "tensorboard"

    @property
    def config(self) -> dict:
        return json.loads((self.dir / CONFIG).read_text())

    def finish(self, history=None, *, metrics: dict | None = None, net: torch.nn.Module | None = None) -> None:
        """Write metrics.json: `metrics` (e.g. {"test_acc": 0.91}) plus the last value of every
        History key (final_train_loss, final_val_acc, ...) and the History itself; and model.pt
        when `net` is given."""
        final = {f"final_{k}": v[-1] for k, v in (history or {}).items() if v and k != "epoch_time"}
        record = {"metrics": {**final, **(metrics or {})}, "history": dict(history or {}),
                  "optimizer": getattr(history, "optimizer", None), "finished": _now()}
        if net is not None:
            torch.save(net.state_dict(), self.dir / MODEL)
        _write_json(self.dir / METRICS, record)


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def start_run(name: str, config: dict | None = None, *, root="runs", code_dir=".") -> Run:
    """Make runs/<time>_<name>/ and write config.json (config, start time, git state of code_dir).

    Inputs:
    - name: a short label ("baseline", "augment", "wd=5e-4"); characters other than letters,
      digits, '.', '-', '=' and '_' become '_' in the folder name
    - config: JSON-serialisable settings of the run (numbers, strings, lists, dicts)
    - root: the registry folder; code_dir: the folder whose git state is recorded
    """
    started = _now()
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "run"
    folder = Path(root) / f"{started.replace(':', '-')}_{safe}"
    suffix = 1
    while folder.exists():                      # two runs in the same second
        suffix += 1
        folder = Path(root) / f"{started.replace(':', '-')}_{safe}-{suffix}"
    folder.mkdir(parents=True)
    _write_json(folder / CONFIG, {"name": name, "config": config or {}, "started": started,
                                  "git": git_state(code_dir)})
    return Run(folder)


def list_runs(root="runs") -> list[dict]:
    """One row per run folder under `root`, oldest first: name, started, commit (12 characters),
    dirty, finished (False for a run that crashed or is still going), then its config and final
    metrics as columns."""
    rows = []
    for folder in sorted(Path(root).glob("*/")) if Path(root).is_dir() else []:
        if not (folder / CONFIG).is_file():
            continue
        info = json.loads((folder / CONFIG).read_text())
        git = info.get("git") or {}
        row = {"name": info["name"], "started": info["started"], "commit": (git.get("commit") or "")[:12],
               "dirty": git.get("dirty"), "finished": (folder / METRICS).is_file(), "dir": str(folder)}
        row.update(info.get("config", {}))
        if row["finished"]:
            row.update(json.loads((folder / METRICS).read_text())["metrics"])
        rows.append(row)
    return rows


def format_runs(rows: list[dict], columns: list[str] | None = None) -> str:
    """The rows as a plain-text table (numbers to 4 significant digits); `columns` picks and orders."""
    if not rows:
        return "(no runs)"
    columns = columns or [c for c in dict.fromkeys(k for r in rows for k in r) if c != "dir"]

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    table = [columns] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)
