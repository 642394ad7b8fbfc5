"""dl.fit under torchrun: two gloo processes on the CPU train exactly like one process.

The oracle is the single-process run of the same script: with P processes at batch B, DDP
averages the P per-process mean-loss gradients, which is the gradient of the mean loss over the
P*B examples, so the weights after training must equal those of one process at batch P*B
(the DistributedSampler without shuffling gives process r positions r, r+P, ...: the union of
the processes' k-th batches is the single process's k-th batch). Float sums in another order
differ in the last bits, hence allclose rather than equal.
"""
import os
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    import dlcourse as dl

    device = dl.distributed.setup()
    P, rank = dl.distributed.world_size(), dl.distributed.rank()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 5, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()                  # 3 classes
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    train_iter = dl.distributed.shard(DataLoader(TensorDataset(X, y), batch_size=16 // P, shuffle=False))
    val_iter = DataLoader(TensorDataset(X[:40], y[:40]), batch_size=10)
    history = dl.fit(net, train_iter, val_iter, num_epochs=3, optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
                     device=device, progress=True, checkpoint_path=sys.argv[1] + f"/ckpt.pt")
    torch.save({"state": net.state_dict(), "history": dict(history), "world": P},
               sys.argv[1] + f"/result-{P}-{rank}.pt")
    dl.distributed.cleanup()
''')


def _run(cmd, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_gloo_processes_train_like_one(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    _run([sys.executable, str(script), str(tmp_path / "one")], tmp_path)
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(script), str(tmp_path / "two")], tmp_path)
    one = torch.load(tmp_path / "one" / "result-1-0.pt")
    r0, r1 = (torch.load(tmp_path / "two" / f"result-2-{r}.pt") for r in (0, 1))
    for key, value in one["state"].items():
        assert torch.allclose(r0["state"][key], value, atol=1e-6), key
        assert torch.equal(r0["state"][key], r1["state"][key]), key           # the copies stay identical
    same = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
    assert [r0["history"][k] for k in same] == [r1["history"][k] for k in same]     # summed over both
    for key in same:
        assert len(one["history"][key]) == 3
        assert all(abs(a - b) < 1e-6 for a, b in zip(one["history"][key], r0["history"][key])), key
    assert one["history"]["train_loss"][-1] < one["history"]["train_loss"][0]
    # only process 0 prints progress bars and writes the checkpoint
    assert two.stderr.count("epoch 1/3: 100%") == 1, two.stderr[-2000:]
    assert (tmp_path / "two" / "ckpt.pt").is_file()


def test_without_torchrun_nothing_changes():
    import dlcourse as dl
    assert not dl.distributed.is_distributed()
    assert (dl.distributed.rank(), dl.distributed.world_size(), dl.distributed.is_main_process()) == (0, 1, True)
    loader = torch.utils.data.DataLoader(torch.arange(10), batch_size=3)
    assert dl.distributed.shard(loader) is loader
    t = torch.ones(3)
    assert dl.distributed.all_reduce_sum(t) is t and torch.equal(t, torch.ones(3))
