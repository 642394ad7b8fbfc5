"""The run registry in a real git repository: commit and dirty flag as git reports them, the
configuration and final metrics read back, a crashed run listed as unfinished."""
import json
import subprocess

import torch
from torch import nn

import dlcourse as dl


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_runs_record_git_state_config_and_metrics(tmp_path):
    repo = tmp_path / "code"
    repo.mkdir()
    (repo / "train.py").write_text("print('hi')\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-qm", "first")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    root = tmp_path / "runs"

    run = dl.start_run("baseline", {"lr": 0.1, "num_epochs": 2}, root=root, code_dir=repo)
    history = dl.History({"train_loss": [1.0, 0.5], "val_acc": [0.6, 0.8], "epoch_time": [1.0, 1.0]})
    history.optimizer = "SGD(lr=0.1, momentum=0.9, weight_decay=0)"       # as fit records it
    net = nn.Linear(2, 2)
    run.finish(history, metrics={"test_acc": 0.75}, net=net)
    (repo / "train.py").write_text("print('changed')\n")                  # uncommitted edit
    crashed = dl.start_run("wd=5e-4 / try", {"lr": 0.1, "weight_decay": 5e-4}, root=root, code_dir=repo)

    rows = dl.list_runs(root)
    assert [r["name"] for r in rows] == ["baseline", "wd=5e-4 / try"]
    first, second = rows
    assert first["commit"] == head[:12] and first["dirty"] is False and first["finished"] is True
    assert first["final_train_loss"] == 0.5 and first["final_val_acc"] == 0.8 and first["test_acc"] == 0.75
    assert "final_epoch_time" not in first
    assert second["dirty"] is True and second["finished"] is False and second["weight_decay"] == 5e-4
    assert crashed.dir.name.endswith("wd=5e-4_try")
    record = json.loads((run.dir / "metrics.json").read_text())
    assert record["history"]["val_acc"] == [0.6, 0.8] and record["optimizer"] == history.optimizer
    assert torch.equal(torch.load(run.dir / "model.pt")["weight"], net.weight)
    assert run.log_dir == run.dir / "tensorboard"
    table = dl.format_runs(rows, ["name", "lr", "dirty", "test_acc"]).splitlines()
    assert table[0].split() == ["name", "lr", "dirty", "test_acc"]
    assert table[1].split() == ["baseline", "0.1", "False", "0.75"]


def test_outside_git_the_state_is_none(tmp_path):
    assert dl.runs.git_state(tmp_path) is None
    run = dl.start_run("x", root=tmp_path / "runs", code_dir=tmp_path)
    assert run.config["git"] is None and dl.list_runs(tmp_path / "runs")[0]["commit"] == ""
    assert dl.format_runs([]) == "(no runs)"
