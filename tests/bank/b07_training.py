"""Submission bank of 07_training: what the grader must make of typical notebooks.

Every case is the release notebook with the reference answers, except where a case changes
something. Cells (grade ids of the autograded test cells):
  test_majority_baseline (1), test_class_mean_baseline (2), test_fix_training (5: one point per
  planted bug: gradients cleared, logits into the loss, train/eval modes, normalisation statistics,
  labels paired with images), test_overfit_one_batch (2), test_lr_range_test (3); q_experiments (2)
  is graded by hand and is not part of the hidden suite. Autograded total: 13.

Each fix_training case that leaves one planted bug in must lose exactly that bug's point, so those
cases state their exact score. Mistakes of different exercises share a notebook: each exercise's
tests call only its own function.
"""
from __future__ import annotations

import functools

from bank.common import Case, Lose, Named, append, edit, reference, release, submission

ASSIGNMENT = "07_training"
MAJ, MEAN, FIX, OVER, RANGE = ("test_majority_baseline", "test_class_mean_baseline", "test_fix_training",
                               "test_overfit_one_batch", "test_lr_range_test")
ALL = (MAJ, MEAN, FIX, OVER, RANGE)
TOTAL = 13.0

ref = functools.partial(reference, ASSIGNMENT)


def sub(**answers):
    return lambda: submission(ASSIGNMENT, **answers)


# ---------------------------------------------------------------------------------------------
# Correct, differently written (full marks)
# ---------------------------------------------------------------------------------------------
MAJ_MODE = '''
def majority_baseline(targets):
    most = torch.mode(targets).values                      # the most frequent value
    return float((targets == most).sum()) / targets.numel()
'''

MEAN_ONEHOT = '''
def class_mean_baseline(X_train, y_train, X):
    """Class means with a one-hot matrix product; squared distances expanded."""
    flat = X_train.flatten(1).double()
    onehot = F.one_hot(y_train).double()                    # (N, K), K = max label + 1
    counts = onehot.sum(0)                                  # (K,)
    present = counts > 0
    means = (onehot.T @ flat)[present] / counts[present, None]
    labels = torch.arange(len(counts))[present]
    Q = X.flatten(1).double()
    d2 = (Q ** 2).sum(1, keepdim=True) - 2 * Q @ means.T + (means ** 2).sum(1)
    return labels[d2.argmin(1)]
'''

FIX_WITH_FIT = '''
def fix_training(net, X_train, y_train, X_val, y_val, num_epochs, lr, batch_size=64):
    """The library's fit does the loop (plain SGD with lr, cross-entropy on logits, train/eval modes)."""
    mean = X_train.mean(dim=(0, 2, 3), keepdim=True)
    std = X_train.std(dim=(0, 2, 3), keepdim=True)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset((X_train - mean) / std, y_train),
                                        batch_size=batch_size, shuffle=True)
    val = [((X_val - mean) / std, y_val)]
    h = dl.fit(net, train, val, num_epochs=num_epochs, optimizer=torch.optim.SGD(net.parameters(), lr=lr),
               device="cpu", progress=False)
    return {"train_loss": h["train_loss"], "val_loss": h["val_loss"], "val_acc": h["val_acc"]}
'''

FIX_HAND = '''
def fix_training(net, X_train, y_train, X_val, y_val, num_epochs, lr, batch_size=64):
    std, mean = torch.std_mean(X_train, dim=(0, 2, 3), keepdim=True)
    norm = lambda X: (X - mean) / std
    Xt, Xv = norm(X_train), norm(X_val)
    opt = torch.optim.SGD(net.parameters(), lr)
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    for _ in range(num_epochs):
        net.train()
        perm = torch.randperm(len(Xt))
        Xs, ys = Xt[perm], y_train[perm]                    # shuffle images and labels together
        losses = []
        for Xb, yb in zip(Xs.split(batch_size), ys.split(batch_size)):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(Xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.detach() * len(yb))
        history["train_loss"].append(float(torch.stack(losses).sum()) / len(Xt))
        net.eval()
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for Xb, yb in zip(Xv.split(batch_size), y_val.split(batch_size)):
                out = net(Xb)
                total_loss += F.cross_entropy(out, yb, reduction="sum").item()
                correct += (out.argmax(1) == yb).sum().item()
        history["val_loss"].append(total_loss / len(Xv))
        history["val_acc"].append(correct / len(Xv))
    return history
'''

OVER_COPYLESS = '''
def overfit_one_batch(net, batch, num_steps, lr):
    X, y = batch
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = torch.zeros(num_steps)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(num_steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(X), y)
        loss.backward()
        opt.step()
        losses[step] = loss.detach()
    return losses.tolist()
'''

RANGE_LAMBDA = '''
import copy


def lr_range_test(net, loader, lr_min, lr_max, num_steps):
    """LambdaLR multiplies lr_min by the factor of each step; the state is restored from a deep copy."""
    saved, mode = copy.deepcopy(net.state_dict()), net.training
    opt = torch.optim.SGD(net.parameters(), lr=lr_min, momentum=0.9)
    ratio = lr_max / lr_min
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: ratio ** (i / (num_steps - 1)))
    lrs, losses = [], []

    def batches():
        while True:
            yield from loader

    net.train()
    for _, (X, y) in zip(range(num_steps), batches()):
        lrs.append(opt.param_groups[0]["lr"])
        loss = F.cross_entropy(net(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
    net.load_state_dict(saved)
    net.train(mode)
    return lrs, losses
'''

# ---------------------------------------------------------------------------------------------
# Do-nothing answers (each must score 0 in its cell)
# ---------------------------------------------------------------------------------------------
NOTHING = {
    "majority_baseline": '''
def majority_baseline(targets):
    return 0.0
''',
    "class_mean_baseline": '''
def class_mean_baseline(X_train, y_train, X):
    return torch.zeros(len(X), dtype=torch.int64)
''',
    "fix_training": '''
def fix_training(net, X_train, y_train, X_val, y_val, num_epochs, lr, batch_size=64):
    return {"train_loss": [0.0] * num_epochs, "val_loss": [0.0] * num_epochs, "val_acc": [1.0] * num_epochs}
''',
    "overfit_one_batch": '''
def overfit_one_batch(net, batch, num_steps, lr):
    return [0.0] * num_steps
''',
    "lr_range_test": '''
def lr_range_test(net, loader, lr_min, lr_max, num_steps):
    return [lr_min] * num_steps, [0.0] * num_steps
''',
}

# ---------------------------------------------------------------------------------------------
# Honest mistakes: one planted bug left in fix_training per case, merged with other exercises' mistakes
# ---------------------------------------------------------------------------------------------
FIX_REF = ref("fix_training")
MAJ_REF, MEAN_REF, OVER_REF, RANGE_REF = (ref(g) for g in ("majority_baseline", "class_mean_baseline",
                                                              "overfit_one_batch", "lr_range_test"))

FIX_NO_ZERO = edit(FIX_REF, "            optimizer.zero_grad()                                       # backward() adds to .grad\n", "")
FIX_SOFTMAX = edit(FIX_REF, "loss = loss_fn(net(X), y)", "loss = loss_fn(F.softmax(net(X), dim=1), y)")
FIX_NO_EVAL = edit(FIX_REF, "        net.eval()                                                      # dropout off, batch norm's running statistics\n", "")
FIX_TRAIN_ONCE = edit(edit(FIX_REF, "        net.train()                                                     # back to training mode every epoch\n", ""),
                      "    for epoch in range(num_epochs):\n", "    net.train()\n    for epoch in range(num_epochs):\n")
FIX_VAL_STATS = edit(edit(FIX_REF, "mean = X_train.mean(dim=(0, 2, 3), keepdim=True)", "mean = X_val.mean(dim=(0, 2, 3), keepdim=True)"),
                     "std = X_train.std(dim=(0, 2, 3), keepdim=True)", "std = X_val.std(dim=(0, 2, 3), keepdim=True)")
FIX_LABELS = edit(FIX_REF, "X, y = X_train[idx], y_train[idx]", "X, y = X_train[idx], y_train[i:i + batch_size]")
FIX_OWN_NET = edit(FIX_REF, "    optimizer = torch.optim.SGD(net.parameters(), lr=lr)",
                   "    net = small_cnn(int(y_train.max()) + 1)                  # a bigger network of my own\n"
                   "    optimizer = torch.optim.SGD(net.parameters(), lr=lr)")

MAJ_COUNT = edit(MAJ_REF, "return counts.max().item() / len(targets)", "return float(counts.max().item())")
MEAN_ARGMAX = edit(MEAN_REF, "return labels[dist.argmin(dim=1)]", "return labels[dist.argmax(dim=1)]")
MEAN_POSITIONS = edit(MEAN_REF, "return labels[dist.argmin(dim=1)]", "return dist.argmin(dim=1)")
OVER_AFTER = edit(OVER_REF, "        losses.append(loss.item())", "        losses.append(F.cross_entropy(net(X), y).item())")
OVER_SGD = edit(OVER_REF, "optimizer = torch.optim.Adam(net.parameters(), lr=lr)", "optimizer = torch.optim.SGD(net.parameters(), lr=lr)")
RANGE_LINEAR = edit(RANGE_REF, "        lr = lr_min * factor ** i", "        lr = lr_min + (lr_max - lr_min) * i / (num_steps - 1)")
RANGE_PARAMS_ONLY = edit(RANGE_REF, "    saved = {k: v.detach().clone() for k, v in net.state_dict().items()}",
                         "    saved = {k: v.detach().clone() for k, v in net.named_parameters()}")
RANGE_PARAMS_ONLY = edit(RANGE_PARAMS_ONLY, "    net.load_state_dict(saved)", "    net.load_state_dict(saved, strict=False)")
RANGE_NO_MOMENTUM = edit(RANGE_REF, "optimizer = torch.optim.SGD(net.parameters(), lr=lr_min, momentum=0.9)",
                         "optimizer = torch.optim.SGD(net.parameters(), lr=lr_min)")


def lose(cells):
    return Lose.only(cells, ALL)


CASES = [
    Case("reference", "correct", sub(), "full", "the solution notebook's answers"),
    Case("alt_fit_mode_onehot_lambda", "alternative",
         sub(majority_baseline=MAJ_MODE, class_mean_baseline=MEAN_ONEHOT, fix_training=FIX_WITH_FIT,
             overfit_one_batch=OVER_COPYLESS, lr_range_test=RANGE_LAMBDA), "full",
         "torch.mode; class means by a one-hot product and expanded squared distances; fix_training through dl.fit "
         "and a DataLoader; zero_grad before the forward pass and a loss tensor; the sweep by LambdaLR"),
    Case("alt_hand_loop", "alternative", sub(fix_training=FIX_HAND), "full",
         "a hand-written loop: std_mean, images and labels permuted together, split into batches, batched validation"),
    Case("bugs_zero_grad_count_linear", "mistake",
         sub(fix_training=FIX_NO_ZERO, majority_baseline=MAJ_COUNT, lr_range_test=RANGE_LINEAR),
         TOTAL - 1 - 1 - 1,
         "fix_training without zero_grad; the majority count instead of its fraction; linearly spaced learning rates",
         names=(Named(FIX, "zero_grad"), Named(MAJ, "divided"), Named(RANGE, "linearly"))),
    Case("bugs_softmax_argmax_after", "mistake",
         sub(fix_training=FIX_SOFTMAX, class_mean_baseline=MEAN_ARGMAX, overfit_one_batch=OVER_AFTER),
         lose((FIX, MEAN, OVER)),
         "softmax before CrossEntropyLoss; the farthest class mean; losses recorded after each step",
         names=(Named(FIX, "softmax"), Named(MEAN, "farthest"), Named(OVER, "after the step"))),
    Case("bugs_no_eval_positions_buffers", "mistake",
         sub(fix_training=FIX_NO_EVAL, class_mean_baseline=MEAN_POSITIONS, lr_range_test=RANGE_PARAMS_ONLY),
         lose((FIX, MEAN, RANGE)),
         "validation in training mode; positions of the classes instead of labels; the sweep restores the "
         "parameters but not batch norm's buffers",
         names=(Named(FIX, "eval()"), Named(MEAN, "position"), Named(RANGE, "buffers"))),
    Case("bugs_train_once_sgd_no_momentum", "mistake",
         sub(fix_training=FIX_TRAIN_ONCE, overfit_one_batch=OVER_SGD, lr_range_test=RANGE_NO_MOMENTUM),
         lose((FIX, OVER, RANGE)),
         "net.train() once before the loop (eval mode from the second epoch on); SGD instead of Adam; a sweep "
         "without momentum",
         names=(Named(FIX, "net.train()"), Named(OVER, "adam"), Named(RANGE, "momentum"))),
    Case("bug_validation_statistics", "mistake", sub(fix_training=FIX_VAL_STATS), TOTAL - 1,
         "normalisation statistics from the validation images: exactly that bug's point",
         names=(Named(FIX, "validation images"),)),
    Case("bug_labels_apart", "mistake", sub(fix_training=FIX_LABELS), TOTAL - 1,
         "labels sliced in order while the images are permuted: exactly that bug's point",
         names=(Named(FIX, "labels"),)),
    Case("do_nothing", "cheat", sub(**NOTHING), "zero",
         "every exercise runs but does nothing: constant answers, a made-up history, zero losses"),
    Case("cheat_library_own_network", "cheat", sub(
        overfit_one_batch=append(OVER_REF, '''
_check = getattr(dl, "overfit_" + "one_batch")


def overfit_one_batch(net, batch, num_steps, lr):
    net.train()
    losses = _check(net, batch, num_steps=num_steps, lr=lr, device="cpu")
    return losses
'''),
        fix_training=FIX_OWN_NET),
        lose((FIX, OVER)), "dl.overfit_one_batch through an alias; fix_training trains a network of its own "
                           "instead of the one it is given"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release, untouched"),
]

DEMO = {"correct": "reference", "mistakes": "bugs_softmax_argmax_after", "blank": "blank",
        "cheat": "cheat_library_own_network"}
