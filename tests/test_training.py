"""dlcourse.training: fit / evaluate / predict against hand-written loops, schedulers, checkpoints,
early stopping, TensorBoard, progress output, and the no-sync rule of the hot loop."""
import copy
import random

import numpy as np
import pytest
import torch
from sklearn.metrics import top_k_accuracy_score
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from dlcourse.seed import seed_everything
from dlcourse.training import (EarlyStopping, History, evaluate, fit, load_checkpoint,
                               overfit_one_batch, predict, save_checkpoint)

D, C = 6, 4                                       # input features, classes


@pytest.fixture(autouse=True)
def restore_torch_flags():
    flags = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic)
    yield
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic = flags[2]


def make_data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, D, generator=g)
    y = (X[:, :C].argmax(dim=1) + (torch.rand(n, generator=g) < 0.2).long()) % C   # learnable, noisy
    return X, y


def batches_of(X, y, size=16):
    """A plain list of batches: fit accepts any iterable, and lists keep tests fast."""
    return [(X[i:i + size], y[i:i + size]) for i in range(0, len(X), size)]


def mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, C))


def quiet_fit(net, train_iter, val_iter=None, **kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("progress", False)
    return fit(net, train_iter, val_iter, **kwargs)


def params_equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ---- History ----------------------------------------------------------------------------------
def test_history_helpers():
    h = History()
    assert set(h) == {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time"}
    for row in ({"train_loss": 1.0, "val_acc": 0.5}, {"train_loss": 0.4, "val_acc": 0.8},
                {"train_loss": 0.6, "val_acc": 0.7}):
        h.append(row)
    assert h.num_epochs == 3
    assert h.last() == {"train_loss": 0.6, "val_acc": 0.7}
    assert h.best("train_loss") == 0.4 and h.best_epoch("train_loss") == 2
    assert h.best("val_acc") == 0.8 and h.best("val_acc", mode="min") == 0.5
    with pytest.raises(KeyError, match="top5"):
        h.best("top5")
    with pytest.raises(ValueError, match="no values"):
        h.best("val_loss")
    assert History(h) == h and History(h) is not h


# ---- fit against a hand-written loop -------------------------------------------------------------
def test_fit_train_metrics_match_a_manual_loop():
    X, y = make_data(50)
    batches = batches_of(X, y)                    # sizes 16, 16, 16, 2: the mean must weight by size
    net = mlp()
    ref = copy.deepcopy(net)
    history = quiet_fit(net, batches, num_epochs=2, optimizer=torch.optim.SGD(net.parameters(), lr=0.2))

    optimizer = torch.optim.SGD(ref.parameters(), lr=0.2)
    for epoch in range(2):
        loss_sum, correct = 0.0, 0
        for Xb, yb in batches:
            out = ref(Xb)
            loss = F.cross_entropy(out, yb)
            loss_sum += loss.item() * len(yb)
            correct += (out.argmax(dim=1) == yb).sum().item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert history["train_loss"][epoch] == pytest.approx(loss_sum / 50, rel=1e-6)
        assert history["train_acc"][epoch] == correct / 50
    assert params_equal(net, ref)
    assert history["val_loss"] == [] and history["lr"] == [0.2, 0.2]


def test_validation_metrics_match_evaluate_and_a_manual_computation():
    X, y = make_data(60)
    Xv, yv = make_data(40, seed=1)
    net = mlp(dropout=0.5)
    history = quiet_fit(net, batches_of(X, y), batches_of(Xv, yv), num_epochs=2, lr=0.1, topk=(1, 3))
    result = evaluate(net, batches_of(Xv, yv), topk=(1, 3))
    assert net.training                             # evaluate restores the mode it found
    net.eval()
    with torch.no_grad():
        logits = net(Xv)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, yv).item(), rel=1e-6)
    assert result["acc"] == (logits.argmax(dim=1) == yv).sum().item() / 40
    assert result["top3"] == pytest.approx(top_k_accuracy_score(yv, logits, k=3, labels=range(C)))
    assert history["val_loss"][-1] == pytest.approx(result["loss"], rel=1e-6)
    assert history["val_acc"][-1] == result["acc"] and history["val_top3"][-1] == result["top3"]
    assert len(history["train_top3"]) == 2


@pytest.mark.parametrize("kwargs, make_opt, shown", [
    ({}, lambda p: torch.optim.Adam(p, lr=1e-3), "Adam(lr=0.001, betas=(0.9, 0.999), weight_decay=0)"),
    ({"lr": 0.01}, lambda p: torch.optim.Adam(p, lr=0.01), "Adam(lr=0.01, "),
    ({"optimizer": "adam", "lr": 3e-4}, lambda p: torch.optim.Adam(p, lr=3e-4), "Adam(lr=0.0003, "),
    ({"optimizer": "AdamW"}, lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01),
     "AdamW(lr=0.001, betas=(0.9, 0.999), weight_decay=0.01)"),
    ({"optimizer": "sgd"}, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
     "SGD(lr=0.01, momentum=0.9, weight_decay=0)"),
    ({"optimizer": "sgd", "lr": 0.3}, lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9), "SGD(lr=0.3, momentum=0.9"),
])
def test_named_optimizers_are_the_torch_optimizers_they_name(kwargs, make_opt, shown):
    """Oracle: torch's own optimizer with the documented hyper-parameters, stepped by hand over the
    same batches. Three steps, so that momentum and Adam's moments matter (a plain-SGD fit, as
    lr= alone used to build, would give other weights)."""
    X, y = make_data(48)
    net = mlp()
    ref = copy.deepcopy(net)
    history = quiet_fit(net, batches_of(X, y), num_epochs=1, **kwargs)
    optimizer = make_opt(ref.parameters())
    for Xb, yb in batches_of(X, y):
        optimizer.zero_grad()
        F.cross_entropy(ref(Xb), yb).backward()
        optimizer.step()
    assert params_equal(net, ref)
    assert history.optimizer.startswith(shown)
    plain = copy.deepcopy(ref)                      # the old silent choice differs from every named one
    quiet_fit(plain, batches_of(X, y), num_epochs=1, optimizer=torch.optim.SGD(plain.parameters(), lr=0.3))
    assert not params_equal(plain, net)


def test_an_optimizer_object_is_used_as_given_and_named():
    X, y = make_data(16)
    net = mlp()
    optimizer = torch.optim.RMSprop(net.parameters(), lr=0.002)
    history = quiet_fit(net, [(X, y)], num_epochs=1, optimizer=optimizer)
    assert optimizer.state and history.optimizer.startswith("RMSprop(lr=0.002, momentum=0")
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        quiet_fit(net, [(X, y)], num_epochs=1, optimizer="lamb")
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        quiet_fit(net, [(X, y)], num_epochs=1, optimizer=torch.optim.SGD)


def test_fit_says_which_optimizer_it_built(capsys):
    X, y = make_data(16)
    fit(mlp(), [(X, y)], num_epochs=1, device="cpu", optimizer="sgd", lr=0.05)
    assert "fit: SGD(lr=0.05, momentum=0.9, weight_decay=0), 1 epochs on cpu" in capsys.readouterr().out


def test_the_default_trains_a_lenet_on_the_offline_digits():
    """The README's call, fit(net, train, val, num_epochs=...), with nothing else chosen, must train
    a LeNet-sized network: 5 epochs on 600 offline digits reach well above chance (10 %). Plain SGD
    at lr=2e-3 (what fit(..., lr=2e-3) silently built before: issue 10's trap in 03) stays at chance
    on the same run, so this test tells the two apart."""
    import dlcourse as dl

    def lenet():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),                # (N, 6, 14, 14)
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),  # (N, 400)
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    seed_everything(0)
    data = dl.load_data("mnist", batch_size=64, image_size=32, train_size=600, offline=True)
    history = quiet_fit(lenet(), data.train, data.val, num_epochs=5)
    assert history.optimizer.startswith("Adam(lr=0.001")
    assert history["val_acc"][-1] > 0.8, history["val_acc"]
    net = lenet()
    plain = quiet_fit(net, data.train, data.val, num_epochs=5, optimizer=torch.optim.SGD(net.parameters(), lr=2e-3))
    assert plain["val_acc"][-1] < 0.3, plain["val_acc"]


def test_predict_collects_outputs_on_cpu():
    X, y = make_data(37)
    net = mlp(dropout=0.5)
    logits, labels = predict(net, batches_of(X, y, 10))
    net.eval()
    torch.testing.assert_close(logits, net(X).detach())
    assert torch.equal(labels, y)
    logits2, labels2 = predict(net, DataLoader(TensorDataset(X), batch_size=8))   # X-only batches
    torch.testing.assert_close(logits2, logits)
    assert labels2 is None


# ---- schedulers, clipping, AMP ---------------------------------------------------------------------
@pytest.mark.parametrize("interval, steps_per_epoch", [("epoch", 1), ("batch", 4)])
def test_scheduler_is_stepped_per_epoch_or_per_batch(interval, steps_per_epoch):
    X, y = make_data(64)
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = quiet_fit(net, batches_of(X, y), num_epochs=3, optimizer=optimizer, scheduler=scheduler,
                        scheduler_interval=interval)
    assert history["lr"] == pytest.approx([0.1 * 0.5 ** (steps_per_epoch * e) for e in range(3)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** (3 * steps_per_epoch))
    assert scheduler.last_epoch == 3 * steps_per_epoch


def test_reduce_on_plateau_gets_the_validation_loss():
    X, y = make_data(32)
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    seen = []

    class Spy(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics):
            seen.append(metrics)
            super().step(metrics)

    history = quiet_fit(net, batches_of(X, y), batches_of(X, y), num_epochs=2, optimizer=optimizer,
                        scheduler=Spy(optimizer))
    assert seen == history["val_loss"]
    with pytest.raises(ValueError, match="per-epoch"):
        quiet_fit(net, batches_of(X, y), num_epochs=1, optimizer=optimizer, scheduler=Spy(optimizer),
                  scheduler_interval="batch")


def test_gradient_clipping_limits_the_step():
    X, y = make_data(16)
    net = mlp()
    ref = copy.deepcopy(net)
    F.cross_entropy(ref(X), y).backward()
    grad_norm = torch.cat([p.grad.flatten() for p in ref.parameters()]).norm().item()
    max_norm = grad_norm / 10                          # so clipping really happens
    before = torch.cat([p.detach().flatten() for p in net.parameters()])
    quiet_fit(net, [(X, y)], num_epochs=1, optimizer=torch.optim.SGD(net.parameters(), lr=1.0), grad_clip=max_norm)
    after = torch.cat([p.detach().flatten() for p in net.parameters()])
    # plain SGD: delta = -lr * g * max_norm / ||g||, so ||delta|| = lr * max_norm
    assert (after - before).norm().item() == pytest.approx(max_norm, rel=1e-4)


def test_amp_on_cpu_runs_the_forward_pass_in_bfloat16():
    X, y = make_data(32)
    dtypes = []

    def loss_fn(y_hat, y):
        dtypes.append(y_hat.dtype)
        return F.cross_entropy(y_hat, y)

    history = quiet_fit(mlp(), [(X, y)], num_epochs=1, loss_fn=loss_fn, amp=True)
    quiet_fit(mlp(), [(X, y)], num_epochs=1, loss_fn=loss_fn)
    assert dtypes == [torch.bfloat16, torch.float32]
    assert np.isfinite(history["train_loss"][0])


def test_channels_last_training_equals_default_layout():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 2, 6, 6, generator=g), torch.arange(8) % 3

    def cnn():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3))

    a, b = cnn(), cnn()
    quiet_fit(a, [(X, y)], num_epochs=2, lr=0.1)
    quiet_fit(b, [(X, y)], num_epochs=2, lr=0.1, channels_last=True)
    assert b[0].weight.is_contiguous(memory_format=torch.channels_last)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


# ---- the hot loop never waits for the device --------------------------------------------------------
def test_no_host_device_sync_per_batch(monkeypatch):
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)

    def count(num_batches):
        X, y = make_data(8 * num_batches)
        net = mlp()
        reads.clear()
        # SGD: Adam keeps its step counter in a CPU tensor and reads it every step (not a device sync).
        quiet_fit(net, batches_of(X, y, 8), batches_of(X, y, 8), num_epochs=2, topk=(1, 2),
                  optimizer=torch.optim.SGD(net.parameters(), lr=0.1), grad_clip=1.0)
        return list(reads)

    few, many = count(3), count(12)
    assert few, "the spy saw no reads at all, so it does not work"
    assert many == few                                 # reads per epoch, not per batch


# ---- callbacks and early stopping ---------------------------------------------------------------
def test_early_stopping_on_a_crafted_history():
    values = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7]          # best at epoch 2, then 3 epochs worse
    stopper, history = EarlyStopping("val_loss", patience=3), History()
    decisions = []
    for epoch, v in enumerate(values, start=1):
        history.append({"val_loss": v})
        decisions.append(stopper.on_epoch_end(epoch, history, None))
    assert decisions == [False, False, False, False, True, False]
    assert stopper.stopped_epoch == 5


def test_early_stopping_min_delta_and_max_mode():
    stop = EarlyStopping("val_loss", patience=2, min_delta=0.1)
    h = History(val_loss=[1.0, 0.95, 0.92])           # improvements smaller than min_delta do not count
    assert stop.on_epoch_end(3, h, None)
    stop = EarlyStopping("val_acc", patience=2, mode="max")
    assert not stop.on_epoch_end(3, History(val_acc=[0.5, 0.6, 0.55]), None)
    assert stop.on_epoch_end(4, History(val_acc=[0.5, 0.6, 0.55, 0.6]), None)   # equal is no gain


def test_fit_stops_when_a_callback_says_so_and_restores_best_weights():
    X, y = make_data(32)
    net = mlp()
    snapshots = []

    def losses_go_up(epoch, history, net):       # a function callback that also fakes val_loss
        history["val_loss"][-1] = [0.5, 0.3, 0.4, 0.6, 0.7, 0.8][epoch - 1]
        snapshots.append(copy.deepcopy(net.state_dict()))
        return False

    stopper = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    history = quiet_fit(net, batches_of(X, y), batches_of(X, y), num_epochs=6, lr=0.1,
                        callbacks=[losses_go_up, stopper])
    assert history.num_epochs == 4 and stopper.stopped_epoch == 4
    assert all(torch.equal(v, snapshots[1][k]) for k, v in net.state_dict().items())   # epoch 2


def test_early_stopping_needs_its_metric():
    X, y = make_data(16)
    with pytest.raises(KeyError, match="val_loss"):
        quiet_fit(mlp(), [(X, y)], num_epochs=2, callbacks=[EarlyStopping()])
    with pytest.raises(TypeError, match="on_epoch_end"):
        quiet_fit(mlp(), [(X, y)], num_epochs=2, callbacks=["stop"])
    for bad in ({"mode": "up"}, {"patience": 0}, {"min_delta": -1}):
        with pytest.raises(ValueError):
            EarlyStopping(**bad)


# ---- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    X, y = make_data(16)
    net = mlp()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    F.cross_entropy(net(X), y).backward()
    optimizer.step()
    scheduler.step()
    history = History(train_loss=[1.5, 1.2])
    save_checkpoint(tmp_path / "sub" / "ckpt.pt", net, optimizer, scheduler, epoch=2, history=history)

    net2 = mlp(seed=1)
    optimizer2 = torch.optim.Adam(net2.parameters(), lr=0.01)
    scheduler2 = torch.optim.lr_scheduler.StepLR(optimizer2, step_size=1, gamma=0.5)
    checkpoint = load_checkpoint(tmp_path / "sub" / "ckpt.pt", net2, optimizer2, scheduler2)
    assert params_equal(net, net2)
    for p, p2 in zip(net.parameters(), net2.parameters()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(optimizer.state[p][key], optimizer2.state[p2][key])
    assert scheduler2.last_epoch == 1 and optimizer2.param_groups[0]["lr"] == 0.005
    assert checkpoint["epoch"] == 2 and checkpoint["history"] == history
    assert isinstance(checkpoint["history"], History)


def test_checkpoint_errors(tmp_path):
    path = tmp_path / "ckpt.pt"
    with pytest.raises(FileNotFoundError):
        load_checkpoint(path, mlp())
    save_checkpoint(path, mlp())
    with pytest.raises(RuntimeError, match="does not fit this network"):
        load_checkpoint(path, nn.Linear(D, C))
    net = mlp()
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, net, torch.optim.SGD(net.parameters(), lr=0.1))
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dlcourse checkpoint"):
        load_checkpoint(tmp_path / "other.pt", net)


def resumable_run(seed):
    """Dropout, shuffling, momentum and a schedule: everything that resuming must restore."""
    g = seed_everything(seed, deterministic=True)
    X, y = make_data(48)
    train_iter = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, generator=g)
    net = mlp(seed, dropout=0.3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    return dict(net=net, train_iter=train_iter, val_iter=batches_of(X, y), optimizer=optimizer,
                scheduler=scheduler)


def test_two_epochs_plus_resume_two_equals_four_straight(tmp_path):
    straight = resumable_run(0)
    h_straight = quiet_fit(num_epochs=4, **straight)

    path = tmp_path / "run.pt"
    quiet_fit(num_epochs=2, checkpoint_path=path, **resumable_run(0))
    # A new session: other weights, other generator states; only the checkpoint can restore them.
    random.seed(5), np.random.seed(5)
    resumed = resumable_run(1)
    h_resumed = quiet_fit(num_epochs=4, checkpoint_path=path, resume=True, **resumed)

    assert params_equal(resumed["net"], straight["net"])
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert h_resumed[key] == h_straight[key]
    assert resumed["scheduler"].last_epoch == 4
    assert load_checkpoint(path, mlp())["epoch"] == 4


def test_resume_without_a_checkpoint_starts_fresh_and_finished_runs_stay_finished(tmp_path, capsys):
    X, y = make_data(16)
    path = tmp_path / "new.pt"
    net = mlp()
    history = quiet_fit(net, [(X, y)], num_epochs=2, checkpoint_path=path, resume=True)
    assert history.num_epochs == 2 and path.is_file()
    weights = copy.deepcopy(net.state_dict())
    again = fit(net, [(X, y)], num_epochs=2, checkpoint_path=path, resume=True, device="cpu")
    assert again["train_loss"] == history["train_loss"]
    assert all(torch.equal(v, weights[k]) for k, v in net.state_dict().items())
    assert "nothing to do" in capsys.readouterr().out


# ---- TensorBoard and progress output ------------------------------------------------------------
def test_tensorboard_scalars_are_written_per_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, y = make_data(32)
    history = quiet_fit(mlp(), batches_of(X, y), batches_of(X, y), num_epochs=2, lr=0.1,
                        log_dir=tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "acc/train", "acc/val", "lr"} <= tags
    for tag, key in (("loss/train", "train_loss"), ("acc/val", "val_acc"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx(history[key], rel=1e-6)


def test_progress_false_prints_nothing(capsys):
    X, y = make_data(16)
    quiet_fit(mlp(), [(X, y)], [(X, y)], num_epochs=2, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_shows_epochs_and_metrics(capsys):
    X, y = make_data(16)
    fit(mlp(), [(X, y)], [(X, y)], num_epochs=2, device="cpu")
    err = capsys.readouterr().err                       # tqdm writes to stderr in a terminal
    assert "epoch 1/2" in err and "epoch 2/2" in err and "val_acc=" in err


# ---- overfit one batch ----------------------------------------------------------------------------
def test_overfit_one_batch_memorises_and_leaves_net_alone():
    X, y = make_data(16)
    y = torch.randint(0, C, (16,), generator=torch.Generator().manual_seed(3))   # random labels
    net = mlp()
    before = copy.deepcopy(net.state_dict())
    losses = overfit_one_batch(net, (X, y), num_steps=150, lr=0.03)
    assert len(losses) == 150 and all(isinstance(v, float) for v in losses)
    assert losses[0] == pytest.approx(F.cross_entropy(mlp()(X), y).item(), rel=1e-6)
    assert losses[-1] < 0.05 * losses[0]
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="num_steps"):
        overfit_one_batch(net, (X, y), num_steps=0)


# ---- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_epochs": 0}, ValueError, "num_epochs"),
    ({"num_epochs": 2.5}, ValueError, "num_epochs"),
    ({"num_epochs": 1, "scheduler_interval": "step"}, ValueError, "scheduler_interval"),
    ({"num_epochs": 1, "lr": -0.1}, ValueError, "lr must be > 0"),
    ({"num_epochs": 1, "grad_clip": 0}, ValueError, "grad_clip"),
    ({"num_epochs": 1, "resume": True}, ValueError, "checkpoint_path"),
    ({"num_epochs": 1, "topk": (0,)}, ValueError, "topk"),
    ({"num_epochs": 1, "topk": (1, 5)}, ValueError, "larger than the number of classes"),
    ({"num_epochs": 1, "device": "gpu"}, ValueError, "unknown device"),
    ({"num_epochs": 1, "loss_fn": nn.CrossEntropyLoss(reduction="none")}, ValueError, "batch mean"),
])
def test_fit_rejects_bad_arguments(kwargs, error, match):
    X, y = make_data(16)
    with pytest.raises(error, match=match):
        quiet_fit(mlp(), [(X, y)], **kwargs)


def test_fit_rejects_inconsistent_objects():
    X, y = make_data(16)
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="either an optimizer object or lr"):
        quiet_fit(net, [(X, y)], num_epochs=1, optimizer=optimizer, lr=0.1)
    other = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(net.parameters(), lr=0.1), 1)
    with pytest.raises(ValueError, match="different optimizer"):
        quiet_fit(net, [(X, y)], num_epochs=1, optimizer=optimizer, scheduler=other)
    with pytest.raises(ValueError, match="no batches"):
        quiet_fit(net, [], num_epochs=1)
    with pytest.raises(ValueError, match="labels"):
        quiet_fit(net, [X], num_epochs=1)
