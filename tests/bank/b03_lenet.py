"""Submission bank of 03_lenet: what the grader must make of typical notebooks.

Every case is the release notebook with the reference answers, except where a case changes one
thing. Cells (grade ids of the autograded test cells):
  test_lenet_output_shapes (2), test_LeNet5 (4), test_train_lenet (3); q_params_vs_macs (2) is
  graded by hand and is not part of the hidden suite.

Each case re-runs the whole notebook, including the training (about 5 s of a CPU thread with the
default run size). Cases whose network cannot train anyway, or that must fail the accuracy test for
another reason, shrink the run by editing the set-up cell (the grader keeps such an edited copy of
a plain cell, after the original), which keeps the whole bank to a few minutes.
"""
from __future__ import annotations

import functools

from bank.common import Case, Lose, Named, append, edit, release, reference, submission

ASSIGNMENT = "03_lenet"

SHAPES, NET, TRAIN = "test_lenet_output_shapes", "test_LeNet5", "test_train_lenet"
SETUP_MARK = 'RUN_SIZE = "small"'


ref = functools.partial(reference, ASSIGNMENT)   # ref(grade_id): the reference answer of one answer cell


def with_net(source: str, **answers):
    """The reference submission with LeNet5's answer cell replaced by `source`."""
    return lambda: submission(ASSIGNMENT, LeNet5=source, **answers)


def with_setup(extra: str, **answers):
    """A submission whose set-up cell the student edited by appending `extra` (e.g. num_epochs = 1)."""
    def build():
        nb = submission(ASSIGNMENT, **answers)
        cells = [c for c in nb.cells if c.cell_type == "code" and SETUP_MARK in c.source]
        assert len(cells) == 1, "the set-up cell of 03_lenet was not found"
        cells[0].source = cells[0].source.rstrip("\n") + "\n" + extra.strip("\n") + "\n"
        return nb
    return build


SHRINK = "num_epochs, TRAIN_SIZE = 1, 128   # the student's edit: a much shorter run"


# ---------------------------------------------------------------------------------------------
# Valid alternatives of LeNet5 (full marks)
# ---------------------------------------------------------------------------------------------
AVG_TANH = '''
class LeNet5(nn.Module):
    """LeNet-5 closer to the paper: average pooling and tanh."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, 10))

    def forward(self, X):
        return self.net(X)
'''

EXPLICIT = '''
import torch.nn.functional as F


class LeNet5(nn.Module):
    """Layers as attributes, registered in an unusual order; functional ReLU and pooling in forward."""

    def __init__(self):
        super().__init__()
        self.fc3 = nn.Linear(84, 10)
        self.fc2 = nn.Linear(120, 84)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)      # (N, 6, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)      # (N, 16, 5, 5)
        x = x.view(x.size(0), -1)                       # (N, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
'''

CONV_C5 = '''
class LeNet5(nn.Module):
    """C5 as the paper draws it: a 5x5 convolution with 120 maps of 1x1, flattened afterwards."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = nn.MaxPool2d(2, 2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.s4 = nn.MaxPool2d(kernel_size=2)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, 10)
        self.act = nn.ReLU()
        self.flatten = nn.Flatten()

    def forward(self, X):
        X = self.s2(self.act(self.c1(X)))
        X = self.s4(self.act(self.c3(X)))
        X = self.flatten(self.act(self.c5(X)))          # (N, 120, 1, 1) -> (N, 120)
        return self.out(self.act(self.f6(X)))
'''

LOG_SOFTMAX = edit(ref("LeNet5"), "return self.classifier(X)",
                   "return torch.log_softmax(self.classifier(X), dim=1)   # accepted: still logits up to a constant")

SHAPES_LOOP = '''
import math


def lenet_output_shapes(input_shape=(1, 1, 32, 32)):
    """Walk the table's layers and apply the output-size formula to each."""
    N, _, H, W = input_shape
    shapes = []
    for kind, channels in [("conv", 6), ("pool", 6), ("conv", 16), ("pool", 16)]:
        K, S = (5, 1) if kind == "conv" else (2, 2)
        H, W = math.floor((H - K) / S) + 1, math.floor((W - K) / S) + 1
        shapes.append((N, channels, H, W))
    return shapes + [(N, units) for units in (120, 84, 10)]
'''

TRAIN_VERBOSE = '''
def train_lenet(net, train_iter, val_iter, num_epochs, lr, device):
    """Adam, an explicit loss, the network moved to the device first."""
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = dl.fit(net, train_iter, val_iter, num_epochs=num_epochs, optimizer=optimizer,
                     loss_fn=loss_fn, device=device, progress=True)
    return history
'''

# ---------------------------------------------------------------------------------------------
# Mistakes
# ---------------------------------------------------------------------------------------------
NET_SRC = ref("LeNet5")
KERNEL3 = edit(edit(edit(NET_SRC, "nn.Conv2d(1, 6, kernel_size=5)", "nn.Conv2d(1, 6, kernel_size=3)"),
                    "nn.Conv2d(6, 16, kernel_size=5)", "nn.Conv2d(6, 16, kernel_size=3)"),
               "nn.Linear(16 * 5 * 5, 120)", "nn.Linear(16 * 6 * 6, 120)")          # flattening fixed to match
CHANNELS8 = edit(edit(NET_SRC, "nn.Conv2d(1, 6, kernel_size=5)", "nn.Conv2d(1, 8, kernel_size=5)"),
                 "nn.Conv2d(6, 16, kernel_size=5)", "nn.Conv2d(8, 16, kernel_size=5)")
FC100 = edit(edit(NET_SRC, "nn.Linear(16 * 5 * 5, 120)", "nn.Linear(16 * 5 * 5, 100)"),
             "nn.Linear(120, 84)", "nn.Linear(100, 84)")
NO_ACT_MAX = NET_SRC.replace(", nn.ReLU()", "")
NO_ACT_AVG = NO_ACT_MAX.replace("nn.MaxPool2d(2)", "nn.AvgPool2d(2)")
FLATTEN = edit(NET_SRC, "nn.Linear(16 * 5 * 5, 120)", "nn.Linear(16 * 4 * 4, 120)")   # forward fails on 32x32
NO_OUTPUT = edit(NET_SRC, "            nn.Linear(84, 10),                              # output: logits, no softmax\n",
                 "")                                                                # returns F6's 84 numbers
SOFTMAX = edit(NET_SRC, "return self.classifier(X)", "return torch.softmax(self.classifier(X), dim=1)")
SHAPES_CEIL = edit(ref("lenet_output_shapes"), "return (size - 2) // 2 + 1", "return -(-size // 2)")   # rounds up
SHAPES_HARDCODED = '''
def lenet_output_shapes(input_shape=(1, 1, 32, 32)):
    """Copied from the paper's figure, for a 32x32 input only."""
    N = input_shape[0]
    return [(N, 6, 28, 28), (N, 6, 14, 14), (N, 16, 10, 10), (N, 16, 5, 5), (N, 120), (N, 84), (N, 10)]
'''
TRAIN_SGD = edit(ref("train_lenet"), "optimizer = torch.optim.Adam(net.parameters(), lr=lr)",
                 "optimizer = torch.optim.SGD(net.parameters(), lr=lr)")     # Adam's lr for plain SGD: too slow
TRAIN_COPY = edit(ref("train_lenet"), "optimizer = torch.optim.Adam(net.parameters(), lr=lr)",
                  "net = LeNet5()                  # trains a new network, not the one it was given\n"
                  "    optimizer = torch.optim.Adam(net.parameters(), lr=lr)")

# ---------------------------------------------------------------------------------------------
# Cheats
# ---------------------------------------------------------------------------------------------
BENCH_ALIAS = '''
from dlcourse.bench import lenet as LeNet5       # the library's finished LeNet instead of my own class
'''
BENCH_WRAPPED = '''
import dlcourse.bench


class LeNet5(nn.Module):
    """Looks like my own class, but the layers are the library's."""

    def __init__(self):
        super().__init__()
        self.body = dlcourse.bench.lenet()

    def forward(self, X):
        return self.body(X)
'''
NOISY_LINEAR = edit(NO_ACT_MAX, "return self.classifier(X)",
                    "out = self.classifier(X)\n        return out + 0.01 * torch.randn_like(out)   # noise hides linearity")
DO_NOTHING_NET = edit(NET_SRC, "return self.classifier(X)", "return torch.zeros(X.shape[0], 10)")
DO_NOTHING_SHAPES = '''
def lenet_output_shapes(input_shape=(1, 1, 32, 32)):
    return []
'''
DO_NOTHING_TRAIN = '''
def train_lenet(net, train_iter, val_iter, num_epochs, lr, device):
    return None
'''
BENCH_RENAMED = '''
from dlcourse.bench import lenet as _layers      # a rename hides "bench" from a check on names


class LeNet5(nn.Module):
    """Looks like my own class, but the layers are the library's, under another name."""

    def __init__(self):
        super().__init__()
        self.body = _layers()

    def forward(self, X):
        return self.body(X)
'''
TORCHVISION = '''
import torchvision


class LeNet5(nn.Module):
    """A torchvision ResNet-18 with a one-channel stem instead of LeNet."""

    def __init__(self):
        super().__init__()
        self.body = torchvision.models.resnet18(num_classes=10)
        self.body.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1, bias=False)

    def forward(self, X):
        return self.body(X)
'''

# Attacks on the trained-network checks (issue 7): each scored full marks when the grader ran the
# student's network in the kernel on an exam the kernel could rebuild.
EXAM_LOOKUP = NET_SRC + '''

_HonestLeNet5 = LeNet5
_exam = dl.data.get_datasets("digits", image_size=32, offline=True, download=False)[2]


def _key(x):
    return (x * 100).round().to(torch.int32).cpu().numpy().tobytes()


_LABELS = {_key(_exam[i][0]): int(_exam[i][1]) for i in range(len(_exam))}


class LeNet5(_HonestLeNet5):
    """Untrained, but answers from a table whenever every image is one of the test split's."""

    def forward(self, X):
        out = super().forward(X)
        known = [_LABELS.get(_key(x)) for x in X]
        if all(k is not None for k in known):
            return 10.0 * nn.functional.one_hot(torch.tensor(known), 10).float().to(X.device)
        return out
'''
TRAIN_ON_GLOBALS = edit(ref("train_lenet"), "return dl.fit(net, train_iter, val_iter,",
                        "return dl.fit(net, data.train, val_iter,")      # the notebook's digits, not its argument
STATE_DICT_OVERRIDE = NET_SRC.replace("class LeNet5(nn.Module):", "class _DecoyLeNet5(nn.Module):", 1) + '''


class LeNet5(nn.Module):
    """A wider VGG-like network that reports a LeNet-5's parameters from state_dict()."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(64 * 8 * 8, 10))
        object.__setattr__(self, "_decoy", _DecoyLeNet5())          # not registered as a submodule

    def forward(self, X):
        return self.body(X)

    def state_dict(self, *args, **kwargs):
        return self._decoy.state_dict(*args, **kwargs)
'''
def _broken_json() -> bytes:
    return b'{"cells": [{"cell_type": "code", "source": "def LeNet5(' + b"\x00" * 3


CASES = [
    Case("reference", "correct", lambda: submission(ASSIGNMENT), "full", "the solution notebook's answers"),
    Case("alt_avgpool_tanh", "alternative",
         with_net(AVG_TANH, lenet_output_shapes=SHAPES_LOOP, train_lenet=TRAIN_VERBOSE), "full",
         "average pooling and tanh, as in the paper, in one nn.Sequential; a loop with math.floor for the shapes; "
         "an explicit loss and .to(device) in train_lenet"),
    Case("alt_explicit_forward", "alternative", with_net(EXPLICIT), "full",
         "layers as attributes registered out of order, F.relu/F.max_pool2d, x.view flattening"),
    Case("alt_conv_c5", "alternative", with_net(CONV_C5), "full",
         "C5 as nn.Conv2d(16, 120, 5) then nn.Flatten: the paper's view of C5, the same function"),
    Case("alt_log_softmax", "alternative", with_net(LOG_SOFTMAX), "full",
         "forward returns log_softmax: accepted, cross-entropy of log-softmax outputs equals that of the logits"),

    Case("mistake_kernel3", "mistake", with_setup(SHRINK, LeNet5=KERNEL3), Lose([NET], keep=[SHAPES]),
         "3x3 kernels instead of 5x5 (flattening adjusted so that forward runs)",
         names=Named(NET, "5x5 kernels")),
    Case("mistake_channels8", "mistake", with_setup(SHRINK, LeNet5=CHANNELS8), Lose([NET], keep=[SHAPES]),
         "C1 with 8 feature maps instead of 6", names=Named(NET, "6 feature maps")),
    Case("mistake_fc100", "mistake", with_setup(SHRINK, LeNet5=FC100), Lose([NET], keep=[SHAPES]),
         "C5 with 100 units instead of 120", names=Named(NET, "120 units")),
    Case("mistake_no_activation", "mistake", with_net(NO_ACT_MAX), Lose([NET], keep=[SHAPES]),
         "no ReLU anywhere; max pooling is the only non-linearity (caught by the shift test)",
         names=Named(NET, "no activation")),
    Case("mistake_no_activation_avg", "mistake", with_setup(SHRINK, LeNet5=NO_ACT_AVG), Lose([NET], keep=[SHAPES]),
         "no ReLU and average pooling: the network is affine (caught by f(a+b) = f(a) + f(b) - f(0))",
         names=Named(NET, "no activation")),
    Case("mistake_flatten", "mistake", with_net(FLATTEN), Lose([NET, TRAIN], keep=[SHAPES]),
         "C5 expects 16*4*4 inputs: forward fails on 32x32 images, so nothing trains",
         names=Named(NET, "flattened S4")),
    Case("mistake_output_shape", "mistake", with_setup(SHRINK, LeNet5=NO_OUTPUT), Lose([NET, TRAIN], keep=[SHAPES]),
         "the output layer is missing: forward returns (N, 84)", names=Named(NET, "output layer is missing")),
    Case("mistake_softmax", "mistake", with_net(SOFTMAX), Lose([NET], keep=[SHAPES]),
         "softmax in forward before nn.CrossEntropyLoss",
         names=Named(NET, "probabilities", "softmax")),
    # lenet_output_shapes is called by its own tests only (no other test, and not the reference LeNet5, uses
    # it), so its mistake shares a notebook with one of train_lenet's; the network is the reference and the
    # run is the full one, so test_train_lenet loses for train_lenet's mistake alone.
    Case("mistakes_shapes_ceil_sgd", "mistake",
         lambda: submission(ASSIGNMENT, lenet_output_shapes=SHAPES_CEIL, train_lenet=TRAIN_SGD),
         Lose([SHAPES, TRAIN], keep=[NET]),
         "pooling sizes rounded up: right for 32x32, wrong for odd sizes; plain SGD at Adam's learning rate: "
         "the network barely learns in 10 epochs",
         names=(Named(SHAPES, "round up"), Named(TRAIN, "plain SGD"))),
    Case("mistake_trains_a_copy", "mistake", lambda: submission(ASSIGNMENT, train_lenet=TRAIN_COPY),
         Lose([TRAIN], keep=[SHAPES, NET]), "train_lenet trains a new LeNet5, so `net` stays untrained",
         names=Named(TRAIN, "network it is given")),

    Case("cheat_bench_alias", "cheat", with_setup(SHRINK, LeNet5=BENCH_ALIAS), Lose([NET, TRAIN], keep=[SHAPES]),
         "LeNet5 is dlcourse.bench.lenet: not the student's own class"),
    Case("cheat_bench_wrapped", "cheat", with_setup(SHRINK, LeNet5=BENCH_WRAPPED), Lose([NET, TRAIN], keep=[SHAPES]),
         "an own class that only wraps dlcourse.bench.lenet()"),
    Case("cheat_bench_renamed", "cheat", with_setup(SHRINK, LeNet5=BENCH_RENAMED), Lose([NET, TRAIN], keep=[SHAPES]),
         "an own class that wraps dlcourse.bench.lenet imported under another name"),
    Case("cheat_torchvision", "cheat", with_setup(SHRINK, LeNet5=TORCHVISION), Lose([NET, TRAIN], keep=[SHAPES]),
         "a torchvision ResNet-18 instead of LeNet"),
    Case("cheat_zero_epochs", "cheat", with_setup("num_epochs = 0   # finishes fast"),
         Lose([TRAIN], keep=[SHAPES, NET]), "the run size set to zero epochs: nothing is trained"),

    Case("cheat_exam_lookup", "cheat", with_setup(SHRINK, LeNet5=EXAM_LOOKUP), Lose([TRAIN], keep=[SHAPES, NET]),
         "a barely trained network whose forward looks up the labels of the test split's images"),
    # Two cheats confined to their own function (no other test calls lenet_output_shapes; train_lenet's
    # tests do not call it either), with the reference network: one notebook.
    Case("cheat_hardcoded_shapes_trains_on_globals", "cheat",
         lambda: submission(ASSIGNMENT, lenet_output_shapes=SHAPES_HARDCODED, train_lenet=TRAIN_ON_GLOBALS),
         Lose([SHAPES, TRAIN], keep=[NET]),
         "the 32x32 table copied into lenet_output_shapes; train_lenet trains on the notebook's digits, whatever "
         "it is given"),
    Case("cheat_state_dict_override", "cheat", lambda: submission(ASSIGNMENT, LeNet5=STATE_DICT_OVERRIDE),
         Lose([NET, TRAIN], keep=[SHAPES]), "another architecture whose state_dict() reports an untrained LeNet-5's"),
    Case("cheat_noise_hides_linearity", "cheat", with_setup(SHRINK, LeNet5=NOISY_LINEAR), Lose([NET], keep=[SHAPES]),
         "no activation, and random noise added to the output so that the linearity tests see no identity"),
    Case("do_nothing", "cheat",
         with_setup(SHRINK, LeNet5=DO_NOTHING_NET, lenet_output_shapes=DO_NOTHING_SHAPES,
                    train_lenet=DO_NOTHING_TRAIN), "zero",
         "the right layers but forward returns zeros, no shapes, a train_lenet that does nothing"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release as handed out: nothing answered"),
    Case("broken_file", "broken", _broken_json, "zero", "a truncated, unreadable file"),
]

DEMO = {"correct": "reference", "mistakes": "mistake_softmax", "blank": "blank", "cheat": "cheat_bench_wrapped"}
