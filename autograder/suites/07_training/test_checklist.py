"""Hidden tests of 07_training: the baselines, the fixed training loop, overfitting one batch, and the
learning-rate range test.

Oracles (all computed here, in the grader's process, on data made here)
-----------------------------------------------------------------------
- majority_baseline, class_mean_baseline: the definition, computed with torch (bincount; cdist).
- fix_training: each planted bug of the notebook's `train_buggy` has its own test, run on a small
  network built in the kernel from the student's torch.nn with weights sent from here, and on data
  drawn here for this grading. What the grader reads back is the network's state (weights and batch
  norm buffers), never a number the student's code reports, except where the report itself is the
  contract (the last validation accuracy, checked against the grader's own evaluation of the weights).
  Tests are independent: each is built so that the other bugs cannot change its outcome.
    * zero_grad and softmax: every training image is the same image with the same label, so the
      order of the batches and their pairing with labels do not matter, and the validation images
      are the same image too, so its statistics are the training statistics. The result of plain
      SGD is then fully determined; the grader computes it for the four combinations (gradients
      cleared or accumulated) x (logits or softmax into the loss) and asks which one the weights
      match. A linear network has no train/eval behaviour, so eval() cannot matter either.
    * train()/eval(): a network whose first layer is a batch norm with momentum=None counts the
      batches it saw in training mode (num_batches_tracked): exactly num_epochs x batches per epoch.
      The reported last validation accuracy must equal the grader's accuracy of the returned
      weights in eval mode (with either normalisation, so that bug is not charged here).
    * normalisation: the same batch-norm probe's running mean is the average of the batch means
      it saw in training mode; with training statistics it is 0 for the training batches (the
      data are drawn so that every batch is full), and the validation batches it may also have seen
      (the eval() bug) are accounted for from the counter, so that bug is not charged here.
    * labels paired with images: a linear network trained on a task whose class is a fixed colour
      pattern must classify fresh images of the task, which the kernel never receives. Labels
      shuffled apart from their images leave it at chance (25%); the other bugs do not (measured:
      each single-bug version passes).
- overfit_one_batch: Adam on a copy of the same network here; the losses and the weights after.
- lr_range_test: the sweep repeated here (the geometric learning rates, SGD with momentum 0.9, the
  loss before each update, the loader cycled); the network's state and mode compared with before.

Known mistakes are named (autograder.testing.Mistake or fail(..., mistake=...)).
"""
import math
import os
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.testing import Mistake, RemoteRef, assert_close, check, fail, points, student_nn

LIBRARY_VERSION = ("dlcourse.overfit_one_batch",)    # the library's own answer: a forbidden use inside the exercise


_RUNS = weakref.WeakKeyDictionary()      # kernel session -> {key: result}: never shared between two gradings


def once(student, key, run):
    """run() once per grading (per kernel session): tests that read different properties of the same call share
    it, which halves the calls into the kernel. A failure of the call is raised again for every test using it."""
    runs = _RUNS.setdefault(student._session, {})
    if key not in runs:
        try:
            runs[key] = ("ok", run())
        except Exception as e:  # noqa: BLE001 - re-raised below, for each test that needs the run
            runs[key] = ("error", e)
    status, value = runs[key]
    if status == "error":
        raise value
    return value


def kind_of(value):
    return value.type_name if isinstance(value, RemoteRef) else type(value).__name__


def gen(seed=None):
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    return torch.Generator().manual_seed(seed)


def build(student, layers):
    """The same nn.Sequential in the kernel (from the student's torch.nn) and here.

    layers: [(name, args, kwargs)]; returns (kernel RemoteRef, local module)."""
    torch_nn = student_nn(student)
    remote = torch_nn.method("Sequential")(*[torch_nn.method(n)(*a, **k) for n, a, k in layers])
    local = nn.Sequential(*[getattr(nn, n)(*a, **k) for n, a, k in layers])
    return remote, local


def load(remote, state, what):
    remote.method("load_state_dict", timeout=60)(state)
    return remote


def state_of(remote, what):
    state = remote.state_dict()
    if not isinstance(state, dict):
        fail(f"{what}: the network's state_dict could not be read back ({kind_of(state)})")
    return state


# ==============================================================================================
# majority_baseline (1 point)
# ==============================================================================================
@points(1, cell="test_majority_baseline")
def test_majority_baseline(student):
    """majority_baseline returns the accuracy of always predicting the most frequent class, as a float"""
    g = gen()
    cases = [torch.tensor([3, 3, 3, 1, 0, 3, 1]), torch.tensor([5]), torch.tensor([0, 1, 2, 3, 4, 4]),
             torch.multinomial(torch.tensor([0.1, 0.6, 0.05, 0.25]), 97, replacement=True, generator=g)]
    for targets in cases:
        counts = torch.bincount(targets)
        expected = counts.max().item() / len(targets)
        got = student.function("majority_baseline", timeout=30)(targets.clone())
        what = f"majority_baseline on {len(targets)} labels"
        mistakes = [Mistake(float(counts.max().item()), "you return how many labels are in the largest class; the "
                                                        "accuracy is that count divided by the number of labels"),
                    Mistake(float(counts.argmax().item()), "you return the most frequent class itself; the baseline "
                                                           "is the accuracy of predicting it for every example"),
                    Mistake(1.0 / len(counts), "you return 1 / (number of classes), the accuracy of uniform random "
                                               "guessing; the majority baseline predicts the most frequent class")]
        if isinstance(got, torch.Tensor):
            fail(f"{what}: returned a tensor; return a Python float (e.g. tensor.item())")
        assert_close(got, expected, what, rtol=1e-9, atol=1e-9, mistakes=mistakes)
        check(isinstance(got, float), f"{what}: returned a {kind_of(got)}; return a Python float")


# ==============================================================================================
# class_mean_baseline (2 points)
# ==============================================================================================
def nearest_mean(X_train, y_train, X):
    labels = torch.unique(y_train)
    flat = X_train.reshape(len(X_train), -1).double()
    means = torch.stack([flat[y_train == c].mean(0) for c in labels])
    dist = torch.cdist(X.reshape(len(X), -1).double(), means)
    return labels, means, dist


def call_class_mean(student, X_train, y_train, X, what):
    got = student.function("class_mean_baseline", timeout=60)(X_train, y_train, X)
    if not isinstance(got, torch.Tensor):
        fail(f"{what}: returned a {kind_of(got)}; expected an int64 tensor of labels")
    check(tuple(got.shape) == (len(X),), f"{what}: wrong shape: got {tuple(got.shape)}, one label per input")
    return got


@points(1, cell="test_class_mean_baseline")
def test_class_mean_predictions(student):
    """class_mean_baseline predicts the label of the nearest class mean on images, with labels that skip classes"""
    g = gen()
    centres = torch.randn(6, 3, 4, 4, generator=g)
    centres[4] *= 3.0                                       # one class mean with a much larger norm
    y_train = torch.tensor([0, 1, 3, 4, 5] * 8)            # class 2 absent: labels are not positions
    X_train = centres[y_train] + 0.8 * torch.randn(len(y_train), 3, 4, 4, generator=g)
    X = centres[torch.randint(0, 6, (50,), generator=g)] + 0.8 * torch.randn(50, 3, 4, 4, generator=g)
    what = "class_mean_baseline on (40, 3, 4, 4) training images of classes {0, 1, 3, 4, 5}"
    got = call_class_mean(student, X_train, y_train, X, what)
    labels, means, dist = nearest_mean(X_train, y_train, X)
    expected = labels[dist.argmin(1)]
    flat = X.reshape(len(X), -1).double()
    mistakes = [Mistake(labels[dist.argmax(1)], "you pick the class mean that is farthest (argmax of the distance); "
                                                "the nearest one is the argmin"),
                Mistake(dist.argmin(1), "you return the position of the nearest mean among the classes present, not "
                                        "its label: with a class missing from y_train they differ"),
                Mistake(labels[(flat @ means.T).argmax(1)], "you pick the class mean with the largest dot product; the "
                                                            "nearest mean in Euclidean distance differs when the "
                                                            "means have different lengths")]
    assert_close(got, expected, what, mistakes=mistakes)


@points(1, cell="test_class_mean_baseline")
def test_class_mean_dtypes_and_ties(student):
    """class_mean_baseline returns int64 labels, works on (N, D) float64 input, and breaks ties towards the smallest label"""
    g = gen()
    X_train = torch.randn(30, 7, dtype=torch.float64, generator=g)
    y_train = torch.randint(0, 3, (30,), generator=g)
    y_train[:3] = torch.tensor([0, 1, 2])
    X = torch.randn(20, 7, dtype=torch.float64, generator=g)
    what = "class_mean_baseline on (30, 7) float64 inputs"
    got = call_class_mean(student, X_train, y_train, X, what)
    check(got.dtype == torch.int64, f"{what}: returned {got.dtype}; labels are int64")
    labels, _, dist = nearest_mean(X_train, y_train, X)
    assert_close(got, labels[dist.argmin(1)], what)
    # a tie: the input is exactly halfway between the means of labels 1 and 6
    X_tie_train = torch.tensor([[0.0, 0.0], [2.0, 0.0], [20.0, 20.0]])
    got = call_class_mean(student, X_tie_train, torch.tensor([6, 1, 9]), torch.tensor([[1.0, 0.0]]),
                          "class_mean_baseline with an input equally far from two class means")
    check(got.tolist() == [1], "class_mean_baseline with an input equally far from the means of labels 1 and 6: "
                               "a tie goes to the smallest label")


# ==============================================================================================
# fix_training (5 points): each planted bug on its own
# ==============================================================================================
def call_fix(student, net, X_train, y_train, X_val, y_val, num_epochs, lr, batch_size):
    history = student.function("fix_training", timeout=120)(net, X_train, y_train, X_val, y_val, num_epochs, lr,
                                                            batch_size)
    if not isinstance(history, dict):
        fail(f"fix_training returned a {kind_of(history)}; expected the history dict of the contract")
    for key in ("train_loss", "val_loss", "val_acc"):
        values = history.get(key)
        check(isinstance(values, (list, tuple)) and len(values) == num_epochs,
              f"fix_training(..., num_epochs={num_epochs}): history[{key!r}] should hold one value per epoch")
    return history


def channel_stats(X):
    return X.mean(dim=(0, 2, 3), keepdim=True), X.std(dim=(0, 2, 3), keepdim=True)


def sgd_linear(state, x, label, num_classes, steps, lr, *, zero_grad, softmax):
    """Plain SGD on a Linear network when every example is the normalised image x with label `label`: the mean
    loss of any batch is the loss of one example, so the run is determined."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(x.numel(), num_classes))
    net.load_state_dict(state)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    X, y = x[None], torch.tensor([label])
    for _ in range(steps):
        out = net(X)
        loss = F.cross_entropy(F.softmax(out, dim=1) if softmax else out, y)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in net.state_dict().items()}


def one_image_run(student, seed):
    """Train the student's fix_training on copies of one image; returns the weights and the four hypotheses."""
    g = gen(seed)
    C, H, num_classes, N, bs, E, lr = 3, 6, 4, 48, 16, 2, 0.2
    x = 0.2 + 0.6 * torch.rand(C, H, H, generator=g)
    label = int(torch.randint(0, num_classes, (1,), generator=g))
    X_train, y_train = x.expand(N, -1, -1, -1).clone(), torch.full((N,), label)
    X_val, y_val = X_train.clone(), y_train.clone()              # the same statistics as the training images
    layers = [("Flatten", (), {}), ("Linear", (C * H * H, num_classes), {})]
    remote, local = build(student, layers)
    state = {"1.weight": 0.05 * torch.randn(num_classes, C * H * H, generator=g),
             "1.bias": 0.05 * torch.randn(num_classes, generator=g)}
    load(remote, state, "fix_training's network")
    call_fix(student, remote, X_train, y_train, X_val, y_val, E, lr, bs)
    got = state_of(remote, "after fix_training")
    mean, std = channel_stats(X_train)
    xn = ((x[None] - mean) / std)[0]
    steps = E * (N // bs)
    hyp = {(z, s): sgd_linear(state, xn, label, num_classes, steps, lr, zero_grad=z, softmax=s)
           for z in (True, False) for s in (True, False)}
    return got, hyp


def matches(got, expected):
    try:
        return all(torch.allclose(got[k].double(), expected[k].double(), rtol=1e-3, atol=1e-5) for k in expected)
    except (KeyError, RuntimeError, TypeError, AttributeError):
        return False


ACCUMULATE = ("the gradients are never cleared: loss.backward() ADDS to each parameter's .grad, so every step "
              "also repeats all earlier steps; call optimizer.zero_grad() before each backward()")
SOFTMAX = ("softmax is applied before nn.CrossEntropyLoss, which applies log-softmax itself: the loss then sees "
           "probabilities as scores, its gradients shrink and the network barely learns; pass the logits")


def matched_hypotheses(student):
    """Which of the four runs the grader computes, (zero_grad, softmax) pairs, the student's weights match
    after fix_training on copies of one image (computed once per student, shared by the two tests below)."""
    got, hyp = once(student, "one image", lambda: one_image_run(student, None))
    return {key for key, expected in hyp.items() if matches(got, expected)}


@points(1, cell="test_fix_training")
def test_gradients_cleared(student):
    """fix_training clears the gradients every step: plain SGD on copies of one image ends at the weights the grader computes"""
    matched = matched_hypotheses(student)
    if any(zero_grad for zero_grad, _ in matched):
        return
    if matched:                     # only runs that never clear the gradients
        fail(f"fix_training on 48 copies of one image: {ACCUMULATE}", mistake=ACCUMULATE)
    fail("fix_training on 48 copies of one image (2 epochs, batches of 16, lr 0.2): the weights after training are "
         "not those of plain SGD, torch.optim.SGD(net.parameters(), lr=lr), one step per batch of the training "
         "images normalised with the training statistics (did you add momentum, change the optimiser, or skip steps?)")


@points(1, cell="test_fix_training")
def test_loss_on_logits(student):
    """fix_training gives the network's logits to the cross-entropy loss (no softmax before it)"""
    matched = matched_hypotheses(student)
    if any(not softmax for _, softmax in matched):
        return
    if matched:                     # only runs with a softmax before the loss
        fail(f"fix_training on 48 copies of one image: {SOFTMAX}", mistake=SOFTMAX)
    fail("fix_training on 48 copies of one image (2 epochs, batches of 16, lr 0.2): the weights after training are "
         "not those of plain SGD on the cross-entropy of the network's outputs (did you change the loss, the "
         "optimiser or the number of steps?)")


def probe_layers(C, H, num_classes):
    return [("BatchNorm2d", (C,), {"affine": False, "momentum": None}), ("Flatten", (), {}),
            ("Linear", (C * H * H, num_classes), {})]


def probe_data(g, N, Nv, C=3, H=6, num_classes=3):
    """Training images darker than the validation images, with per-channel offsets; class = brightest channel."""
    offset = torch.tensor([0.0, 0.1, 0.2]).view(1, C, 1, 1)
    y_train = torch.randint(0, num_classes, (N,), generator=g)
    y_val = torch.randint(0, num_classes, (Nv,), generator=g)
    X_train = 0.1 + offset + 0.3 * torch.rand(N, C, H, H, generator=g)
    X_val = 0.5 + offset + 0.3 * torch.rand(Nv, C, H, H, generator=g)
    X_train[torch.arange(N), y_train] += 0.15
    X_val[torch.arange(Nv), y_val] += 0.15
    return X_train, y_train, X_val, y_val


def probe_run(student, N=96, Nv=32, bs=16, E=2, lr=0.05):
    g = gen()
    C, H, num_classes = 3, 6, 3
    X_train, y_train, X_val, y_val = probe_data(g, N, Nv)
    remote, local = build(student, probe_layers(C, H, num_classes))
    state = {k: v for k, v in local.state_dict().items()}
    state["2.weight"] = 0.05 * torch.randn(num_classes, C * H * H, generator=g)
    state["2.bias"] = torch.zeros(num_classes)
    load(remote, state, "fix_training's network")
    history = call_fix(student, remote, X_train, y_train, X_val, y_val, E, lr, bs)
    got = state_of(remote, "after fix_training")
    return got, history, (X_train, y_train, X_val, y_val), local, (N, Nv, bs, E)


def tracked(got):
    n = got.get("0.num_batches_tracked")
    check(isinstance(n, torch.Tensor), "the grader could not read the batch-norm layer's counter back")
    return int(n)


EVAL = ("validation runs in training mode: batch norm then normalises with the validation batch's statistics and "
        "updates its running statistics with validation data, and dropout stays on; call net.eval() before "
        "validating and net.train() before training again (every epoch)")
NO_TRAIN_AGAIN = ("after the first validation the network stays in eval mode: call net.train() at the start of "
                  "every epoch, not once before the loop")


@points(1, cell="test_fix_training")
def test_train_and_eval_modes(student):
    """fix_training trains in training mode and validates in eval mode: batch norm counts only the training batches, and the reported validation accuracy is that of the weights in eval mode"""
    got, history, (X_train, y_train, X_val, y_val), local, (N, Nv, bs, E) = once(student, "probe", lambda: probe_run(student))
    count, expected = tracked(got), E * (N // bs)
    what = f"fix_training with a batch-norm network, {E} epochs of {N // bs} batches"
    if count > expected:
        fail(f"{what}: batch norm saw {count - expected} more batches in training mode than there are training "
             f"batches: {EVAL}", mistake=EVAL)
    if count < expected:
        if count == N // bs:
            fail(f"{what}: {NO_TRAIN_AGAIN}", mistake=NO_TRAIN_AGAIN)
        fail(f"{what}: batch norm saw {count} batches in training mode, fewer than the {expected} training batches")
    local.load_state_dict(got)
    local.eval()
    accs = []
    for stats_from in (X_train, X_val):
        mean, std = channel_stats(stats_from)
        with torch.no_grad():
            accs.append(float((local((X_val - mean) / std).argmax(1) == y_val).double().mean()))
    reported = history["val_acc"][-1]
    if isinstance(reported, torch.Tensor) and reported.numel() == 1:
        reported = reported.item()
    check(isinstance(reported, (int, float)) and min(abs(reported - a) for a in accs) <= 1.5 / Nv,
          f"{what}: the last reported validation accuracy is not the accuracy of the trained network (in eval mode) "
          f"on the validation images")


NORM_VAL = ("the training images are normalised with the statistics of the validation images: statistics must come "
            "from the training data only (anything else leaks the validation set into training, and the network "
            "sees inputs that are not centred)")
NORM_NONE = "the training images reach the network without normalisation: subtract the per-channel mean and divide by the standard deviation"
NORM_GLOBAL = ("one mean for all channels: normalise every colour channel with its own mean and standard deviation "
               "(over the images and pixels, X.mean(dim=(0, 2, 3)))")


@points(1, cell="test_fix_training")
def test_normalisation_statistics(student):
    """fix_training normalises each channel with the mean and standard deviation of the training images (measured by a batch-norm layer that records what the network receives)"""
    got, _, (X_train, _, X_val, _), _, (N, Nv, bs, E) = once(student, "probe", lambda: probe_run(student))
    count = tracked(got)
    train_batches = E * (N // bs)
    extra = count - train_batches                     # validation batches seen in training mode (another bug)
    check(count > 0, "fix_training: the network saw no batch in training mode")
    running = got.get("0.running_mean")
    running_var = got.get("0.running_var")
    check(isinstance(running, torch.Tensor) and running.shape == (3,), "the batch-norm layer's statistics could not be read back")
    what = "fix_training, the per-channel mean of the images the network received in training mode"
    m_t, s_t = channel_stats(X_train)
    m_v, s_v = channel_stats(X_val)
    val_mean = ((X_val - m_t) / s_t).mean(dim=(0, 2, 3))
    expected = extra * val_mean / count if extra > 0 else torch.zeros(3)
    pooled = torch.cat([X_train, X_val])
    m_g, s_g = X_train.mean(), X_train.std()
    mistakes = [Mistake((train_batches * ((X_train - m_v) / s_v).mean(dim=(0, 2, 3))
                         + max(extra, 0) * torch.zeros(3)) / count, NORM_VAL),
                Mistake((train_batches * ((X_train - pooled.mean(dim=(0, 2, 3), keepdim=True))
                                          / pooled.std(dim=(0, 2, 3), keepdim=True)).mean(dim=(0, 2, 3))) / count,
                        "the statistics are taken over the training AND validation images: use the training images only"),
                Mistake(train_batches * X_train.mean(dim=(0, 2, 3)) / count, NORM_NONE),
                Mistake(train_batches * ((X_train - m_g) / s_g).mean(dim=(0, 2, 3)) / count, NORM_GLOBAL)]
    assert_close(running, expected, what, rtol=1e-3, atol=2e-3, mistakes=mistakes)
    if extra <= 0:
        check(0.7 < float(running_var.mean()) < 1.3,
              "fix_training: the training images the network received do not have standard deviation 1 per channel: "
              "divide by the per-channel standard deviation of the training images",
              mistake="the images are centred but not divided by the training images' standard deviation")


def pattern_task(g, n, patterns):
    num_classes = len(patterns)
    y = torch.randint(0, num_classes, (n,), generator=g)
    X = (patterns[y] + 0.25 * torch.randn(n, *patterns.shape[1:], generator=g)).clamp(0, 1)
    return X, y


@points(1, cell="test_fix_training")
def test_learns_the_task(student):
    """the network trained by fix_training classifies fresh images of the grader's task (labels stay with their images): at least 80% (chance 25%)"""
    g = gen()
    C, H, num_classes = 3, 6, 4
    patterns = torch.rand(num_classes, C, H, H, generator=g)
    X_train, y_train = pattern_task(g, 192, patterns)
    X_val, y_val = pattern_task(g, 64, patterns)
    X_exam, y_exam = pattern_task(g, 400, patterns)                 # never sent to the kernel
    layers = [("Flatten", (), {}), ("Linear", (C * H * H, num_classes), {})]
    remote, local = build(student, layers)
    load(remote, {"1.weight": torch.zeros(num_classes, C * H * H), "1.bias": torch.zeros(num_classes)}, "net")
    call_fix(student, remote, X_train, y_train, X_val, y_val, 3, 0.05, 32)
    after = state_of(remote, "after fix_training")
    check(isinstance(after.get("1.weight"), torch.Tensor) and bool(after["1.weight"].abs().sum() > 0),
          "fix_training left the (zero-initialised) network it was given unchanged: train `net` itself")
    local.load_state_dict(after)
    mean, std = channel_stats(X_train)
    with torch.no_grad():
        acc = float((local((X_exam - mean) / std).argmax(1) == y_exam).double().mean())
    check(acc >= 0.8,
          f"after fix_training (3 epochs, lr 0.05) a linear network classifies {acc:.0%} of fresh images of the "
          f"grader's task correctly (chance: 25%; training that pairs every image with its own label reaches far "
          f"more): check that each batch's labels are those of its images",
          mistake=("the labels are shuffled apart from their images: index the labels with the same permutation "
                   "as the images"))


# ==============================================================================================
# overfit_one_batch (2 points)
# ==============================================================================================
OVERFIT_LAYERS = [("Conv2d", (3, 4, 3), {"padding": 1, "bias": False}), ("BatchNorm2d", (4,), {}), ("ReLU", (), {}),
                  ("Flatten", (), {}), ("Linear", (4 * 5 * 5, 3), {})]


def overfit_reference(state, X, y, num_steps, lr, *, optimizer="adam", train=True, zero_grad=True, after=False):
    net = nn.Sequential(*[getattr(nn, n)(*a, **k) for n, a, k in OVERFIT_LAYERS])
    net.load_state_dict(state)
    net.train(train)
    opt = torch.optim.Adam(net.parameters(), lr=lr) if optimizer == "adam" else torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    for _ in range(num_steps):
        loss = F.cross_entropy(net(X), y)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        if after:
            with torch.no_grad():
                losses.append(F.cross_entropy(net(X), y).item())
        else:
            losses.append(loss.item())
    return losses, {k: v.detach() for k, v in net.state_dict().items()}


def overfit_call(student):
    g = gen()
    remote, local = build(student, OVERFIT_LAYERS)
    state = {k: (torch.randn(v.shape, generator=g) * 0.3 if v.is_floating_point() and "running" not in k else v)
             for k, v in local.state_dict().items()}
    load(remote, state, "overfit_one_batch's network")
    remote.method("eval")()                         # the contract: the function puts the network in training mode
    X, y = torch.randn(8, 3, 5, 5, generator=g), torch.randint(0, 3, (8,), generator=g)
    num_steps, lr = 6, 0.02
    losses = student.function("overfit_one_batch", timeout=60, forbid_calls=LIBRARY_VERSION)(remote, (X, y),
                                                                                            num_steps, lr)
    return losses, state_of(remote, "after overfit_one_batch"), state, X, y, num_steps, lr


@points(1, cell="test_overfit_one_batch")
def test_overfit_losses(student):
    """overfit_one_batch returns the loss before each of num_steps Adam steps in training mode"""
    losses, _, state, X, y, num_steps, lr = once(student, "overfit", lambda: overfit_call(student))
    what = f"overfit_one_batch(net, batch of 8, num_steps={num_steps}, lr={lr})"
    if not isinstance(losses, (list, tuple)):
        fail(f"{what}: returned a {kind_of(losses)}; expected a list of floats")
    check(all(isinstance(v, float) for v in losses), f"{what}: return Python floats (loss.item()), not tensors")
    expected, _ = overfit_reference(state, X, y, num_steps, lr)
    mistakes = [Mistake(overfit_reference(state, X, y, num_steps, lr, after=True)[0],
                        "each recorded loss is measured after the step; record the loss that the step was computed from"),
                Mistake(overfit_reference(state, X, y, num_steps, lr, zero_grad=False)[0],
                        "the gradients are never cleared, so they accumulate over the steps; call optimizer.zero_grad()"),
                Mistake(overfit_reference(state, X, y, num_steps, lr, optimizer="sgd")[0],
                        "the contract's optimiser is torch.optim.Adam(net.parameters(), lr=lr), not SGD"),
                Mistake(overfit_reference(state, X, y, num_steps, lr, train=False)[0],
                        "the network stays in eval mode: call net.train() (batch norm must use the batch's statistics)")]
    assert_close(list(losses), expected, what, rtol=1e-3, atol=1e-5, mistakes=mistakes)


@points(1, cell="test_overfit_one_batch")
def test_overfit_trains_in_place(student):
    """overfit_one_batch trains the network it is given (its weights and batch-norm statistics afterwards are those of the Adam run)"""
    _, after, state, X, y, num_steps, lr = once(student, "overfit", lambda: overfit_call(student))
    _, expected = overfit_reference(state, X, y, num_steps, lr)
    what = "the network's state after overfit_one_batch"
    if all(torch.equal(after[k], state[k]) for k in state if k in after):
        explain = "the network given is unchanged: train `net` itself, not a copy of it"
        fail(f"{what}: {explain}", mistake=explain)
    keys = sorted(expected)
    check(sorted(after) == keys, f"{what}: its parameters are not those of the network it was given")
    assert_close([after[k] for k in keys], [expected[k] for k in keys], what, rtol=1e-3, atol=1e-5)


# ==============================================================================================
# lr_range_test (3 points)
# ==============================================================================================
RANGE_LAYERS = [("Conv2d", (3, 4, 3), {"padding": 1, "bias": False}), ("BatchNorm2d", (4,), {}), ("ReLU", (), {}),
                ("AdaptiveAvgPool2d", (1,), {}), ("Flatten", (), {}), ("Linear", (4, 3), {})]


def range_reference(state, batches, lr_min, lr_max, num_steps, *, lrs=None, momentum=0.9, after=False):
    net = nn.Sequential(*[getattr(nn, n)(*a, **k) for n, a, k in RANGE_LAYERS])
    net.load_state_dict(state)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr_min, momentum=momentum)
    if lrs is None:
        lrs = [lr_min * (lr_max / lr_min) ** (i / (num_steps - 1)) for i in range(num_steps)]
    losses = []
    for i, lr in enumerate(lrs):
        X, y = batches[i % len(batches)]
        for group in opt.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(net(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if after:
            with torch.no_grad():
                losses.append(F.cross_entropy(net(X), y).item())
        else:
            losses.append(loss.item())
    return lrs, losses


def range_call(student, num_steps=7, lr_min=1e-3, lr_max=0.5):
    g = gen()
    remote, local = build(student, RANGE_LAYERS)
    state = {k: (torch.randn(v.shape, generator=g) * 0.3 if v.is_floating_point() and "running" not in k else v)
             for k, v in local.state_dict().items()}
    state["1.running_mean"] = 0.1 * torch.randn(4, generator=g)
    state["1.running_var"] = torch.rand(4, generator=g) + 0.5
    load(remote, state, "lr_range_test's network")
    remote.method("eval")()
    before = state_of(remote, "before lr_range_test")
    batches = [(torch.randn(6, 3, 5, 5, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(3)]
    result = student.function("lr_range_test", timeout=60)(remote, batches, lr_min, lr_max, num_steps)
    what = f"lr_range_test(net, 3 batches, lr_min={lr_min}, lr_max={lr_max}, num_steps={num_steps})"
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        fail(f"{what}: returned a {kind_of(result)}; expected the pair (lrs, losses)")
    lrs, losses = result
    for name, values in (("lrs", lrs), ("losses", losses)):
        check(isinstance(values, (list, tuple)) and len(values) == num_steps,
              f"{what}: {name} should be a list of num_steps={num_steps} numbers")
    return remote, before, state, batches, (lr_min, lr_max, num_steps), list(lrs), list(losses), what


@points(1, cell="test_lr_range_test")
def test_range_learning_rates(student):
    """lr_range_test sweeps the learning rate geometrically from exactly lr_min to exactly lr_max"""
    _, _, _, _, (lr_min, lr_max, n), lrs, _, what = once(student, "range", lambda: range_call(student))
    expected = [lr_min * (lr_max / lr_min) ** (i / (n - 1)) for i in range(n)]
    mistakes = [Mistake([lr_min + (lr_max - lr_min) * i / (n - 1) for i in range(n)],
                        "the learning rates are spaced linearly; a range test multiplies the rate by the same factor "
                        "every step (geometric spacing), so that every order of magnitude gets the same number of steps"),
                Mistake([lr_min * (lr_max / lr_min) ** (i / n) for i in range(n)],
                        "the sweep stops one factor short of lr_max: with num_steps points the factor is "
                        "(lr_max / lr_min) ** (1 / (num_steps - 1))")]
    assert_close(lrs, expected, f"{what}: lrs", rtol=1e-6, atol=1e-12, mistakes=mistakes)


@points(1, cell="test_lr_range_test")
def test_range_losses(student):
    """lr_range_test records the loss of each step before its update, with SGD (momentum 0.9) at the step's learning rate, cycling through the loader"""
    _, _, state, batches, (lr_min, lr_max, n), lrs, losses, what = once(student, "range", lambda: range_call(student))
    # The losses are checked for the learning rates the function reports (bounded, finite), so a wrong sweep
    # costs only test_range_learning_rates; if they are unusable, the contract's own sweep is used.
    usable = all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 10 for v in lrs)
    sweep = [float(v) for v in lrs] if usable else None
    _, expected = range_reference(state, batches, lr_min, lr_max, n, lrs=sweep)
    mistakes = [Mistake(range_reference(state, batches, lr_min, lr_max, n, lrs=sweep, after=True)[1],
                        "each loss is measured after the update; record the loss the step was computed from"),
                Mistake(range_reference(state, batches, lr_min, lr_max, n, lrs=sweep, momentum=0.0)[1],
                        "the optimiser has no momentum (or is rebuilt every step, which throws its momentum away): "
                        "build torch.optim.SGD(net.parameters(), lr=lr_min, momentum=0.9) once and set each "
                        "param_group's 'lr' before every step")]
    assert_close(losses, expected, f"{what}: losses", rtol=1e-3, atol=1e-5, mistakes=mistakes)


@points(1, cell="test_lr_range_test")
def test_range_restores_network(student):
    """after lr_range_test the network's parameters, batch-norm statistics and train/eval mode are those it had before"""
    remote, before, state, batches, _, _, losses, what = once(student, "range", lambda: range_call(student))
    # The sweep must have run: its first loss is the network's loss on the first batch in training mode (within 5%,
    # so that recording it just after the first, tiny update is not charged here).
    net = nn.Sequential(*[getattr(nn, n)(*a, **k) for n, a, k in RANGE_LAYERS])
    net.load_state_dict(state)
    with torch.no_grad():
        first = F.cross_entropy(net.train()(batches[0][0]), batches[0][1]).item()
    check(isinstance(losses[0], (int, float)) and abs(losses[0] - first) <= 0.05 * first,
          f"{what}: the first loss is not the network's loss on the first batch: the sweep did not run as the contract says")
    after = state_of(remote, "after lr_range_test")
    params = [k for k in before if "running" not in k and "num_batches" not in k]
    buffers = [k for k in before if k not in params]
    if any(not torch.equal(after.get(k, torch.empty(0)), before[k]) for k in params):
        explain = "the network's weights are left as the sweep changed them: save net.state_dict() first and load it back"
        fail(f"{what}: {explain}", mistake=explain)
    if any(not torch.equal(after.get(k, torch.empty(0)), before[k]) for k in buffers):
        explain = ("the parameters are restored but not batch norm's running statistics (buffers): restore the whole "
                   "state_dict, e.g. a deep copy of net.state_dict() loaded back with load_state_dict")
        fail(f"{what}: {explain}", mistake=explain)
    check(remote.attr("training") is False,
          f"{what}: the network was in eval mode before and is in training mode after: restore its mode",
          mistake="the network's train/eval mode is not restored")
