"""The training loop: fit, evaluate, predict, checkpoints, early stopping, the one-batch sanity check.

Every notebook trains with the same few lines:

    history = fit(net, train_iter, val_iter, num_epochs=10)                   # Adam, lr=1e-3
    history = fit(net, train_iter, val_iter, num_epochs=10, optimizer="sgd", lr=0.05)  # SGD, momentum 0.9
    plot_history(history)

The optimiser is always a visible choice: a name ("adam", the default, "adamw", "sgd") whose
learning rate `lr` sets, or an optimizer object you built yourself. fit prints which one it built.

`fit` is the loop you would write by hand (and write once yourself in the first notebook):

    for epoch in range(num_epochs):
        net.train()
        for X, y in train_iter:
            X, y = X.to(device), y.to(device)
            loss = loss_fn(net(X), y)        # mean loss over the batch
            optimizer.zero_grad()
            loss.backward()                  # gradients of the loss w.r.t. every parameter
            optimizer.step()                 # e.g. SGD: w <- w - lr * dL/dw
        evaluate(net, val_iter)

plus the things every real run needs: metrics, a progress bar, learning-rate schedules, mixed
precision, gradient clipping, TensorBoard logs, checkpoints that resume exactly, callbacks.

Speed rule: the loop never reads a number back to Python inside the batch loop. `loss.item()`
makes the CPU wait until the GPU has finished all queued work (a host-device synchronisation),
so the GPU idles while Python prepares the next batch. We add the loss and the number of correct
predictions into tensors on the device, and read them once per epoch (and, when the progress
bar is on, once every REFRESH_EVERY batches).

Callbacks: any object with a method ``on_epoch_end(epoch, history, net) -> bool`` or a plain
function with the same signature. It is called after each epoch (epoch counts from 1; history
already holds that epoch's row); returning True stops training. EarlyStopping is one.
"""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import torch
from torch import nn

from dlcourse import devices, distributed
from dlcourse.devices import autocast, get_device, to_device
from dlcourse.metrics import num_correct
from dlcourse.seed import rng_state, set_rng_state

REFRESH_EVERY = 50      # batches between progress-bar updates (each update reads the running loss)
CHECKPOINT_FORMAT = "dlcourse-checkpoint-1"


# ----------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------
class History(dict):
    """Per-epoch records of a training run: a dict of lists, one entry per epoch.

    Keys: "train_loss", "train_acc", "val_loss", "val_acc", "lr" (learning rate at the start of
    the epoch), "epoch_time" (seconds, training + validation), plus "train_top5", "val_top5", ...
    when fit(topk=...) asks for them. Keys that were not measured (no val_iter, no accuracy) stay
    empty lists.

    history["val_acc"][-1] is the last validation accuracy; plot_history(history) draws it all.
    history.optimizer names the optimizer fit trained with ("Adam(lr=0.001, ...)"; None when the
    History did not come from fit).
    """

    KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time")

    def __init__(self, *args, **kwargs):
        super().__init__({key: [] for key in self.KEYS})
        for key, values in dict(*args, **kwargs).items():
            self[key] = list(values)
        self.optimizer = getattr(args[0], "optimizer", None) if args else None

    @property
    def num_epochs(self) -> int:
        """Number of recorded epochs."""
        return max((len(v) for v in self.values()), default=0)

    def append(self, row: dict) -> None:
        """Add one epoch: {"train_loss": 0.31, "val_acc": 0.9, ...}."""
        for key, value in row.items():
            self.setdefault(key, []).append(value)

    def last(self) -> dict:
        """The latest value of every recorded key, e.g. {"train_loss": 0.31, "val_acc": 0.90, ...}."""
        return {key: values[-1] for key, values in self.items() if values}

    def best(self, key: str, mode: str | None = None) -> float:
        """Best value of `key` over the epochs: the minimum for losses, else the maximum.

        mode: "min" or "max" to override the guess made from the name.
        """
        return self[key][self.best_epoch(key, mode) - 1]

    def best_epoch(self, key: str, mode: str | None = None) -> int:
        """Epoch (counting from 1) at which `key` was best; the first one on ties."""
        values = self._values(key)
        mode = mode or ("min" if "loss" in key or "time" in key else "max")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        pick = min if mode == "min" else max
        return 1 + pick(range(len(values)), key=lambda i: _nan_last(values[i], mode))

    def _values(self, key):
        if key not in self:
            raise KeyError(f"{key!r} is not in the history; keys: {sorted(self)}")
        if not self[key]:
            raise ValueError(f"no values recorded for {key!r} (was it measured? e.g. val_* needs val_iter)")
        return self[key]


def _nan_last(value, mode):
    if isinstance(value, float) and math.isnan(value):
        return math.inf if mode == "min" else -math.inf
    return value


# ----------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------
class EarlyStopping:
    """Stop training when a monitored metric has not improved for `patience` epochs.

    Why: validation loss typically falls, flattens, then rises as the network starts to overfit.
    Training further only wastes time, so we stop `patience` epochs after the best one.

    Inputs:
    - monitor: a History key, e.g. "val_loss" or "val_acc".
    - patience: number of epochs without improvement that we tolerate.
    - mode: "min" (lower is better, losses) or "max" (accuracies).
    - min_delta: an improvement must beat the best value by more than this.
    - restore_best_weights: when stopping, load the weights of the best epoch back into net.

    The decision is computed from the history itself, so it also works after resuming from a
    checkpoint. Usage: fit(..., callbacks=[EarlyStopping("val_acc", patience=5, mode="max")]).
    """

    def __init__(self, monitor="val_loss", patience=3, mode="min", min_delta=0.0,
                 restore_best_weights=False):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.restore_best_weights = restore_best_weights
        self.best_state = None
        self.stopped_epoch = None

    def best_index(self, values) -> int:
        """Index of the best value, counting only improvements larger than min_delta."""
        best_i = 0
        for i in range(1, len(values)):
            if self._improved(values[i], values[best_i]):
                best_i = i
        return best_i

    def _improved(self, value, best) -> bool:
        if isinstance(best, float) and math.isnan(best):
            return not math.isnan(value)
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_epoch_end(self, epoch, history, net) -> bool:
        values = history.get(self.monitor)
        if not values:
            measured = sorted(k for k, v in history.items() if v)
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which fit did not record "
                           f"(recorded: {measured}); val_* keys need a val_iter")
        best_i = self.best_index(values)
        if self.restore_best_weights and best_i == len(values) - 1:
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        stop = len(values) - 1 - best_i >= self.patience
        if stop:
            self.stopped_epoch = epoch
            if self.restore_best_weights and self.best_state is not None:
                net.load_state_dict(self.best_state)
        return stop


def _callback_fns(callbacks):
    fns = []
    for cb in callbacks:
        if hasattr(cb, "on_epoch_end"):
            fns.append(cb.on_epoch_end)
        elif callable(cb):
            fns.append(cb)
        else:
            raise TypeError(f"a callback must have on_epoch_end(epoch, history, net) or be a function "
                            f"with that signature, got {type(cb).__name__}")
    return fns


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def save_checkpoint(path, net, optimizer=None, scheduler=None, epoch=0, history=None, *,
                    generators=(), scaler=None) -> None:
    """Save everything needed to continue training later, exactly where it stopped.

    Inputs:
    - path: file to write (parent folders are created; the file is replaced atomically, so an
      interrupted save never leaves a half-written checkpoint).
    - net, optimizer, scheduler, scaler: their state_dicts are saved (optimizer state holds
      e.g. Adam's running moments and SGD's momentum, without which resuming is not the same).
    - epoch: number of completed epochs. history: the History so far.
    - generators: torch.Generators of your DataLoaders. Their states and the global random
      states (Python, NumPy, torch) are saved, so shuffling and dropout continue the same way.
    """
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "net": net.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "epoch": int(epoch),
        "history": dict(History() if history is None else history),
        "rng": rng_state(generators),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, net, optimizer=None, scheduler=None, map_location="cpu", *,
                    generators=(), scaler=None, restore_rng=False) -> dict:
    """Load a checkpoint written by save_checkpoint into `net` (and optimizer, scheduler, scaler).

    Inputs:
    - path: the file. map_location: where tensors are loaded ("cpu" works everywhere; the
      states are then copied to the devices of net's parameters).
    - restore_rng: also restore the random generators (global ones and `generators`), as fit
      does when it resumes.

    Returns:
    - the checkpoint dict: "epoch" (completed epochs), "history" (a History), and the states.

    The file is read with torch.load(weights_only=True): it can only contain tensors and plain
    data, never code, so loading a checkpoint from someone else cannot run anything.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a dlcourse checkpoint (written by save_checkpoint)")
    try:
        net.load_state_dict(checkpoint["net"])
    except RuntimeError as err:
        raise RuntimeError(f"the checkpoint {path} does not fit this network (different "
                           f"architecture?):\n{err}") from err
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            if checkpoint[name] is None:
                raise ValueError(f"the checkpoint {path} holds no {name} state, but a {name} was given")
            obj.load_state_dict(checkpoint[name])
    if restore_rng:
        set_rng_state(checkpoint["rng"], generators)
    checkpoint["history"] = History(checkpoint["history"])
    return checkpoint


def _generators_of(data_iter) -> list:
    """The torch.Generators that decide a DataLoader's shuffling (loader's and sampler's), and a
    DeviceLoader's order and augmentation."""
    found = []
    batch_sampler = getattr(data_iter, "batch_sampler", None)
    for owner in (data_iter, getattr(data_iter, "sampler", None), getattr(batch_sampler, "sampler", None)):
        for gen in (getattr(owner, "generator", None), getattr(owner, "augment_generator", None)):
            if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
                found.append(gen)
    return found


# ----------------------------------------------------------------------------------------------
# One pass over the data (shared by training and evaluation)
# ----------------------------------------------------------------------------------------------
def _unpack(batch, need_y=True):
    """(X, y) from a batch: a pair/list (extra items ignored), (X,) or a bare tensor X."""
    if isinstance(batch, torch.Tensor):
        X, y = batch, None
    elif isinstance(batch, (tuple, list)) and len(batch) >= 1:
        X, y = batch[0], (batch[1] if len(batch) >= 2 else None)
    else:
        raise TypeError(f"a batch must be (X, y) or X, got {type(batch).__name__}")
    if need_y and y is None:
        raise ValueError("training and evaluation need batches (X, y) with labels; got X only")
    return X, y


def _topk_tuple(topk) -> tuple:
    """(1, ...) sorted: top-1 accuracy ("acc") is always measured when any accuracy is asked for."""
    if topk is None:
        return ()
    topk = (topk,) if isinstance(topk, int) else tuple(topk)
    for k in topk:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"topk must hold positive integers, got {topk!r}")
    return tuple(sorted({1, *topk})) if topk else ()


def _metric_names(ks) -> list:
    return ["acc" if k == 1 else f"top{k}" for k in ks]


def _averages(loss_sum, correct, n, ks, *, all_processes=False) -> dict:
    """Read the device-side sums to Python in one synchronisation, then divide by n.

    The division happens in Python (float64) so that e.g. 59 correct out of 200 gives exactly 0.295.
    all_processes: first add up the sums (and n) of every process of a data-parallel run, so that
    each process records the metrics of the whole data set, not of its shard.
    """
    sums = torch.cat([loss_sum.reshape(1).double(), correct.double(),
                      torch.tensor([n], dtype=torch.float64, device=loss_sum.device)])
    if all_processes:
        distributed.all_reduce_sum(sums)
    *sums, n = sums.tolist()
    return {name: value / n for name, value in zip(["loss", *_metric_names(ks)], sums)}


def _run_epoch(net, data_iter, loss_fn, *, device, ks, amp=False, channels_last=False,
               update=None, bar=None) -> dict:
    """One pass over data_iter: forward, loss, optionally update(loss); returns mean loss/accuracies.

    Sums live on the device: loss_sum = sum_b mean_loss_b * N_b (so the result is the mean over
    examples even if the last batch is smaller) and correct = (number of hits for each k).
    """
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros(len(ks), dtype=torch.int64, device=device)
    n = 0
    for batch in data_iter:
        X, y = _unpack(to_device(batch, device))
        if channels_last and X.dim() == 4:
            X = X.contiguous(memory_format=torch.channels_last)     # (N, C, H, W), stored NHWC
        with autocast(device, enabled=amp):
            y_hat = net(X)                                          # (N, C)
            loss = loss_fn(y_hat, y)                                # 0-d: mean over the batch
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return the batch mean (a 0-d tensor), got shape "
                             f"{tuple(loss.shape)}; use reduction='mean'")
        if update is not None:
            update(loss)
        loss_sum += loss.detach() * y.shape[0]
        if ks:
            correct += num_correct(y_hat.detach(), y, ks)           # (len(ks),)
        n += y.shape[0]
        if bar is not None:
            bar.step(loss_sum, correct, n)
    if n == 0:
        raise ValueError("the data iterator yielded no batches")
    return _averages(loss_sum, correct, n, ks, all_processes=distributed.is_distributed())


def _make_update(net, optimizer, *, scaler=None, grad_clip=None, batch_scheduler=None):
    """The parameter update that follows each forward pass during training."""
    params = [p for p in net.parameters() if p.requires_grad]

    def update(loss):
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
        else:                                   # float16 AMP: scale up so small gradients survive
            scaler.scale(loss).backward()
        if grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)      # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(params, grad_clip)   # g <- g * min(1, grad_clip / ||g||_2)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if batch_scheduler is not None:
            batch_scheduler.step()

    return update


def _default_device(net, device):
    """The device given, else the device of net's parameters (CPU for a net without any)."""
    if device is not None:
        return get_device(device)
    for tensor in net.parameters():
        return tensor.device
    return torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# evaluate, predict
# ----------------------------------------------------------------------------------------------
def evaluate(net, data_iter, *, loss_fn=None, device=None, amp=False, topk=(1,)) -> dict:
    """Mean loss and accuracy of `net` over a whole dataset, without changing the network.

    Inputs:
    - net: the model; evaluated in eval mode (dropout off, BatchNorm uses running statistics),
      then put back into the mode it was in.
    - data_iter: iterable of (X, y) batches, e.g. a DataLoader.
    - loss_fn: default nn.CrossEntropyLoss(); must return the batch mean.
    - device: default the device of net's parameters. amp: evaluate under autocast.
    - topk: accuracies to compute; () or None for none (e.g. regression).

    Returns:
    - {"loss": float, "acc": float, "top5": float, ...}: loss = (1/N) sum_i L(f(x_i), y_i) over
      all N examples, acc = fraction of correct argmax predictions, topk as in metrics.accuracy.
    """
    device = _default_device(net, device)
    net.to(device)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():            # no graph: less memory, faster
            return _run_epoch(net, data_iter, loss_fn, device=device, ks=_topk_tuple(topk), amp=amp)
    finally:
        net.train(was_training)


def predict(net, data_iter, *, device=None):
    """Run `net` over data_iter in eval mode and collect its outputs on the CPU.

    Inputs:
    - data_iter: iterable of (X, y) or X-only batches.

    Returns:
    - logits: (N, C) tensor of outputs for all N examples (apply softmax for probabilities,
      argmax(dim=1) for predicted classes).
    - y: (N,) labels, or None when the batches have none.
    """
    device = _default_device(net, device)
    net.to(device)
    was_training = net.training
    net.eval()
    outputs, labels = [], []
    try:
        with torch.no_grad():
            for batch in data_iter:
                X, y = _unpack(to_device(batch, device), need_y=False)
                outputs.append(net(X))                                  # (N_b, C)
                if y is not None:
                    labels.append(y)
    finally:
        net.train(was_training)
    if not outputs:
        raise ValueError("the data iterator yielded no batches")
    logits = torch.cat(outputs).cpu()                                   # (N, C): one copy at the end
    return logits, (torch.cat(labels).cpu() if labels else None)


# ----------------------------------------------------------------------------------------------
# Progress bar and TensorBoard
# ----------------------------------------------------------------------------------------------
class _ProgressBar:
    """One tqdm bar per epoch: a widget in Jupyter, a text line in a terminal (tqdm.auto decides)."""

    def __init__(self, epoch, num_epochs, total, ks):
        from tqdm.auto import tqdm

        self.ks = ks
        self.bar = tqdm(total=total, desc=f"epoch {epoch}/{num_epochs}", unit="batch",
                        leave=True, dynamic_ncols=True)
        self.i = 0

    def step(self, loss_sum, correct, n):
        self.i += 1
        self.bar.update(1)
        if self.i % REFRESH_EVERY == 0:     # the only host-device sync inside the epoch
            running = _averages(loss_sum, correct, n, self.ks)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()}, refresh=False)

    def close(self, row):
        shown = {k.removeprefix("train_"): f"{v:.4f}" for k, v in row.items()
                 if k not in ("lr", "epoch_time")}
        shown["time"] = f"{row['epoch_time']:.1f}s"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.close()


def _tensorboard_tag(key):
    """"train_loss" -> "loss/train": TensorBoard then draws train and val curves side by side."""
    for split in ("train", "val"):
        if key.startswith(split + "_"):
            return f"{key[len(split) + 1:]}/{split}"
    return key


class _TensorBoardLog:
    def __init__(self, log_dir):
        from torch.utils.tensorboard import SummaryWriter     # imported only when asked for

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, epoch, row):
        for key, value in row.items():
            if key != "epoch_time":
                self.writer.add_scalar(_tensorboard_tag(key), value, global_step=epoch)
        self.writer.flush()                 # visible in TensorBoard while training goes on

    def close(self):
        self.writer.close()


# ----------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------
def _check_fit_args(num_epochs, optimizer, lr, scheduler_interval, grad_clip, resume, checkpoint_path):
    if not isinstance(num_epochs, int) or isinstance(num_epochs, bool) or num_epochs < 1:
        raise ValueError(f"num_epochs must be an integer >= 1, got {num_epochs!r}")
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
    if not isinstance(optimizer, str) and lr is not None:
        raise ValueError("pass either an optimizer object or lr, not both (lr would be ignored): "
                         "set the learning rate when you build the optimizer, or name one "
                         "(optimizer='adam', 'adamw' or 'sgd') and let lr set its learning rate")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 (the maximal gradient norm), got {grad_clip!r}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path (the file to resume from)")


# The optimisers fit builds by name, each with the learning rate it uses when lr is not given.
# Adam at 1e-3 is the default because it trains every network of the course well without tuning;
# SGD needs a learning rate chosen for the network (and momentum: plain SGD at a rate that suits
# one network leaves another one at chance after a few epochs).
OPTIMIZERS = {
    "adam": (torch.optim.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 1e-2}),
    "sgd": (torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9}),
}


def make_optimizer(net, optimizer="adam", lr=None):
    """The optimizer fit trains with: `optimizer` itself if it is one, else the one it names.

    Inputs:
    - net: the nn.Module whose parameters (those with requires_grad) are optimised.
    - optimizer: a torch.optim.Optimizer (returned unchanged), or a name:
        "adam"   torch.optim.Adam(lr=1e-3)
        "adamw"  torch.optim.AdamW(lr=1e-3, weight_decay=0.01)  (decoupled weight decay)
        "sgd"    torch.optim.SGD(lr=0.01, momentum=0.9)
    - lr: the learning rate of a named optimizer (its default above when None).

    Returns:
    - a torch.optim.Optimizer. describe_optimizer(it) says what it is in one line.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        if lr is not None:
            raise ValueError("pass either an optimizer object or lr, not both")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or one of {sorted(OPTIMIZERS)}, "
                        f"got {type(optimizer).__name__}")
    if optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; fit builds {sorted(OPTIMIZERS)} by name, "
                         f"or pass a torch.optim optimizer you built yourself")
    cls, defaults = OPTIMIZERS[optimizer.lower()]
    kwargs = dict(defaults) if lr is None else {**defaults, "lr": lr}
    return cls([p for p in net.parameters() if p.requires_grad], **kwargs)


def describe_optimizer(optimizer) -> str:
    """One line that says which optimizer trains and with which hyper-parameters (of its first
    parameter group), e.g. "SGD(lr=0.01, momentum=0.9, weight_decay=0)"."""
    group = optimizer.param_groups[0]
    shown = [f"{key}={group[key]!r}" if not isinstance(group[key], float) else f"{key}={group[key]:g}"
             for key in ("lr", "momentum", "betas", "weight_decay", "nesterov")
             if key in group and not (key == "nesterov" and not group[key])]
    return f"{type(optimizer).__name__}({', '.join(shown)})"


def _check_scheduler(scheduler, optimizer, interval):
    if scheduler is None:
        return
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError("the scheduler was built for a different optimizer than the one fit uses; "
                         "build the optimizer yourself, pass it as optimizer=, and build the scheduler on it")
    if interval == "batch" and isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ValueError("ReduceLROnPlateau reacts to a per-epoch metric: use scheduler_interval='epoch'")


def _step_epoch_scheduler(scheduler, row):
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(row.get("val_loss", row["train_loss"]))    # it needs the monitored value
    else:
        scheduler.step()


def _grad_scaler(device, amp):
    """A GradScaler only for float16 autocast (older CUDA GPUs); bfloat16 needs none."""
    if amp and device.type == "cuda" and devices.amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def _batches(data_iter):
    try:
        return len(data_iter)
    except TypeError:
        return None


def _fit_epoch(net, train_iter, val_iter, *, epoch, num_epochs, optimizer, loss_fn, update, device,
               ks, amp, channels_last, progress, model=None):
    """Train for one epoch, then validate; returns the epoch's History row.

    model: what the training forward pass calls (net inside DistributedDataParallel when several
    processes train together); validation calls net itself.
    """
    lr = float(optimizer.param_groups[0]["lr"])
    start = time.perf_counter()
    bar = _ProgressBar(epoch, num_epochs, _batches(train_iter), ks) if progress else None
    net.train()
    distributed.set_epoch(train_iter, epoch)           # a sharded loader reshuffles per epoch
    train = _run_epoch(net if model is None else model, train_iter, loss_fn, device=device, ks=ks, amp=amp,
                       channels_last=channels_last, update=update, bar=bar)
    row = {f"train_{k}": v for k, v in train.items()}
    if val_iter is not None:
        net.eval()
        with torch.no_grad():
            val = _run_epoch(net, val_iter, loss_fn, device=device, ks=ks, amp=amp,
                             channels_last=channels_last)
        row.update({f"val_{k}": v for k, v in val.items()})
    row.update(lr=lr, epoch_time=time.perf_counter() - start)
    if bar is not None:
        bar.close(row)
    return row


def fit(net, train_iter, val_iter=None, *, num_epochs, optimizer="adam", lr=None, loss_fn=None,
        scheduler=None, scheduler_interval="epoch", device=None, amp=False, channels_last=False,
        grad_clip=None, topk=(1,), callbacks=(), log_dir=None, progress=True,
        checkpoint_path=None, resume=False) -> History:
    """Train `net` on train_iter for num_epochs epochs, validating on val_iter after each epoch.

    Inputs:
    - net: nn.Module mapping X (N, ...) to scores (N, C). It is moved to `device` (in place).
    - train_iter, val_iter: iterables of (X, y) batches, e.g. DataLoaders; val_iter optional.
    - num_epochs: total number of epochs (with resume=True: including those already done).
    - optimizer: what updates the weights, always your choice:
      a name, "adam" (the default), "adamw" or "sgd" (with momentum 0.9), and then lr sets its
      learning rate (default 1e-3 for Adam and AdamW, 0.01 for SGD; see OPTIMIZERS); or a
      torch.optim optimizer you built over net's parameters (then lr must not be given). fit
      prints the optimizer it trains with before the first epoch (when progress is on) and
      records it in history.optimizer, e.g. "Adam(lr=0.001, betas=(0.9, 0.999), weight_decay=0)".
    - lr: the learning rate of a named optimizer.
    - loss_fn: default nn.CrossEntropyLoss() (softmax + negative log-likelihood); must return
      the mean over the batch.
    - scheduler: a torch.optim.lr_scheduler built on `optimizer`, stepped after every epoch
      (scheduler_interval="epoch") or after every batch ("batch", e.g. OneCycleLR).
      ReduceLROnPlateau is stepped with val_loss (train_loss without val_iter).
    - device: default get_device() (cuda > mps > cpu).
    - amp: mixed precision (see devices.autocast): True, False, or None = on where bfloat16 is
      native (recent CUDA GPUs). channels_last: NHWC memory layout for images and weights
      (faster convolutions on GPUs).
    - grad_clip: clip the global gradient norm: g <- g * min(1, grad_clip / ||g||_2).
    - topk: accuracies to record; (1, 5) adds "train_top5"/"val_top5". () or None: no accuracy.
    - callbacks: objects with on_epoch_end(epoch, history, net) -> bool (True stops training),
      or functions with that signature; e.g. EarlyStopping.
    - log_dir: if given, write TensorBoard scalars per epoch ("loss/train", "loss/val",
      "acc/train", "acc/val", "lr"); view with `tensorboard --logdir <log_dir>`.
    - progress: show a tqdm progress bar per epoch; False prints nothing at all.
    - checkpoint_path: save a checkpoint (net, optimizer, scheduler, epoch, history, random
      states) after every epoch. resume=True: if that file exists, load it and continue from
      the epoch after the saved one; with deterministic seeding the result is bit-identical
      to an uninterrupted run.

    Several processes (launched by torchrun, after dl.distributed.setup(); see distributed.py):
    net is trained inside DistributedDataParallel, the metrics are summed over all processes
    (every process returns the same History), and only process 0 shows progress, writes
    TensorBoard logs and saves checkpoints. Shard train_iter with dl.distributed.shard.

    The net ends in the mode (train/eval) it was in before; call net.eval() before using it for
    predictions by hand (or use predict / evaluate, which do).

    Returns:
    - History: per-epoch "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time",
      and history.optimizer (describe_optimizer of the optimizer that trained). train_loss is the mean of the per-batch losses, weighted by batch size, measured while the
      weights were changing; val_loss is measured with the weights at the end of the epoch.
    """
    _check_fit_args(num_epochs, optimizer, lr, scheduler_interval, grad_clip, resume, checkpoint_path)
    device = get_device(device)
    net.to(device)
    if channels_last:
        devices.channels_last(net)
    model = distributed.wrap(net, device)                 # net itself in a single process
    main_process = distributed.is_main_process()
    progress = progress and main_process
    optimizer = make_optimizer(net, optimizer, lr)
    if progress:
        print(f"fit: {describe_optimizer(optimizer)}, {num_epochs} epochs on {device}")
    _check_scheduler(scheduler, optimizer, scheduler_interval)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    ks = _topk_tuple(topk)
    callback_fns = _callback_fns(callbacks)
    scaler = _grad_scaler(device, amp)
    generators = _generators_of(train_iter)
    update = _make_update(net, optimizer, scaler=scaler, grad_clip=grad_clip,
                          batch_scheduler=scheduler if scheduler_interval == "batch" else None)

    history, done = History(), 0
    if resume and Path(checkpoint_path).is_file():
        checkpoint = load_checkpoint(checkpoint_path, net, optimizer, scheduler, generators=generators,
                                     scaler=scaler, restore_rng=True)
        history, done = checkpoint["history"], checkpoint["epoch"]
        if done >= num_epochs and progress:
            print(f"{checkpoint_path} already holds {done} epochs (num_epochs={num_epochs}): nothing to do")

    history.optimizer = describe_optimizer(optimizer)
    tensorboard = _TensorBoardLog(log_dir) if log_dir is not None and main_process else None
    was_training = net.training
    try:
        for epoch in range(done + 1, num_epochs + 1):
            row = _fit_epoch(net, train_iter, val_iter, epoch=epoch, num_epochs=num_epochs,
                             optimizer=optimizer, loss_fn=loss_fn, update=update, device=device,
                             ks=ks, amp=amp, channels_last=channels_last, progress=progress, model=model)
            history.append(row)
            if tensorboard is not None:
                tensorboard.log(epoch, row)
            if scheduler is not None and scheduler_interval == "epoch":
                _step_epoch_scheduler(scheduler, row)
            stop = any([bool(fn(epoch, history, net)) for fn in callback_fns])   # all of them run
            if checkpoint_path is not None and main_process:
                save_checkpoint(checkpoint_path, net, optimizer, scheduler, epoch, history,
                                generators=generators, scaler=scaler)
            if stop:
                break
    finally:
        net.train(was_training)          # leave the net in the mode we found it in
        if tensorboard is not None:
            tensorboard.close()
    return history


# ----------------------------------------------------------------------------------------------
# Sanity check
# ----------------------------------------------------------------------------------------------
def overfit_one_batch(net, batch, *, num_steps=200, lr=1e-2, loss_fn=None, device=None) -> list:
    """Train a copy of `net` on a single batch until it memorises it; return the loss per step.

    Why: a network with enough parameters can fit a handful of examples perfectly, so the loss
    must fall to almost 0. If it does not, something is broken (wrong labels, a missing
    activation, zero_grad forgotten, a too-small lr, a loss that does not match the outputs)
    and it is cheaper to learn that in seconds than after an hour of training. Turn off
    regularisation (dropout, weight decay) for this test; the lecture recommends it as step one.

    Inputs:
    - net: the model (left unchanged: a deep copy is trained, so you can train net normally next).
    - batch: (X, y), e.g. next(iter(train_iter)); keep it small (8-32 examples).
    - num_steps: Adam steps with learning rate lr.
    - loss_fn: default nn.CrossEntropyLoss(). device: default net's device.

    Returns:
    - list of num_steps floats: the loss before each step (read once at the end, no per-step sync).
    """
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    device = _default_device(net, device)
    net = copy.deepcopy(net).to(device).train()
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    X, y = _unpack(to_device(batch, device))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = torch.empty(num_steps, device=device)
    for step in range(num_steps):
        loss = loss_fn(net(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
    return losses.tolist()
