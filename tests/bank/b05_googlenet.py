"""Submission bank of 05_googlenet (contract: tests/bank/common.py).

Every case is the release notebook with some answer cells replaced. Each exercise's hidden tests
call only that exercise's function or class, so honest mistakes of different exercises share a
notebook and each must lose points in its own cell and nowhere else; `says` pins that the suite's
message names the mistake (its Mistake explanation), not only that it costs points.
Test cells (grade ids) and points: test_Inception 4, test_inception_macs 3.
"""
from __future__ import annotations

import functools

from .common import REPO, Case, Lose, edit, release, reference, submission

ASSIGNMENT = "05_googlenet"

INCEPTION, MACS = "test_Inception", "test_inception_macs"
CELLS = (INCEPTION, MACS)

ref = functools.partial(reference, ASSIGNMENT)   # ref(grade_id): the reference answer of one answer cell


def lose(cells, says=()) -> Lose:
    """Lose points in `cells` (grade ids), keep full points in every other autograded cell."""
    return Lose.only(cells, CELLS, says=says)


def sub(**answers):
    """A build function: the release with these answer cells replaced (callables are called at build time)."""
    return lambda: submission(ASSIGNMENT, **{k: (v() if callable(v) else v) for k, v in answers.items()})


# =============================================================================================
# Correct, differently written solutions
# =============================================================================================
INCEPTION_MODULELIST = '''
class Inception(nn.Module):
    """Branches in an nn.ModuleList of plain layer lists; the activations and the pooling in forward."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.ModuleList([nn.Conv2d(in_channels, ch1x1, 1)]),
            nn.ModuleList([nn.Conv2d(in_channels, ch3x3red, 1), nn.Conv2d(ch3x3red, ch3x3, 3, padding=1)]),
            nn.ModuleList([nn.Conv2d(in_channels, ch5x5red, 1), nn.Conv2d(ch5x5red, ch5x5, 5, padding=2)]),
            nn.ModuleList([nn.Conv2d(in_channels, pool_proj, 1)]),
        ])

    def forward(self, X):
        outputs = []
        for k, convs in enumerate(self.branches):
            Y = F.max_pool2d(X, kernel_size=3, stride=1, padding=1) if k == 3 else X
            for conv in convs:
                Y = F.relu(conv(Y))
            outputs.append(Y)
        return torch.cat(outputs, dim=1)
'''

INCEPTION_ATTRIBUTES = '''
class Inception(nn.Module):
    """Every layer an attribute, registered in an unusual order; in-place ReLU; 'same' padding by name."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, pool_proj, kernel_size=1)
        self.conv5 = nn.Conv2d(ch5x5red, ch5x5, kernel_size=5, padding="same")
        self.reduce5 = nn.Conv2d(in_channels, ch5x5red, kernel_size=1)
        self.conv3 = nn.Conv2d(ch3x3red, ch3x3, kernel_size=(3, 3), padding="same")
        self.reduce3 = nn.Conv2d(in_channels, ch3x3red, kernel_size=1)
        self.conv1 = nn.Conv2d(in_channels, ch1x1, kernel_size=1)
        self.pool = nn.MaxPool2d(3, 1, 1, ceil_mode=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        a = self.relu(self.conv1(x))
        b = self.relu(self.conv3(self.relu(self.reduce3(x))))
        c = self.relu(self.conv5(self.relu(self.reduce5(x))))
        d = self.relu(self.proj(self.pool(x)))
        return torch.cat((a, b, c, d), 1)
'''

MACS_TERMS = '''
def inception_macs(in_channels, height, width, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    """One (C_in, C_out, k) triple per convolution, summed."""
    convs = [(in_channels, ch1x1, 1), (in_channels, ch3x3red, 1), (ch3x3red, ch3x3, 3),
             (in_channels, ch5x5red, 1), (ch5x5red, ch5x5, 5), (in_channels, pool_proj, 1)]
    return sum(height * width * c_out * k * k * c_in for c_in, c_out, k in convs)
'''

MACS_NUMPY = '''
def inception_macs(in_channels, height, width, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    """A dot product of the columns with what each output channel costs per pixel, through numpy."""
    out_channels = np.array([ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj], dtype=np.int64)
    per_channel = np.array([in_channels, in_channels, 9 * ch3x3red, in_channels, 25 * ch5x5red, in_channels],
                           dtype=np.int64)
    return int(height * width * (out_channels @ per_channel))
'''

# =============================================================================================
# Honest mistakes (small edits of the reference)
# =============================================================================================
INC = ref("Inception")
ORDER_POOL_FIRST = edit(INC, "branches = [self.branch1(X), self.branch2(X), self.branch3(X), self.branch4(X)]",
                        "branches = [self.branch4(X), self.branch1(X), self.branch2(X), self.branch3(X)]")
NO_RELU_REDUCTION = edit(INC, "nn.Conv2d(in_channels, ch3x3red, kernel_size=1), nn.ReLU(),",
                         "nn.Conv2d(in_channels, ch3x3red, kernel_size=1),")
POOL_NO_PADDING = edit(INC, "nn.MaxPool2d(kernel_size=3, stride=1, padding=1)", "nn.MaxPool2d(kernel_size=3, stride=1)")
THREE_FOR_FIVE = edit(INC, "nn.Conv2d(ch5x5red, ch5x5, kernel_size=5, padding=2)",
                      "nn.Conv2d(ch5x5red, ch5x5, kernel_size=3, padding=1)")

MAC = ref("inception_macs")
MACS_AS_FLOPS = edit(MAC, "return positions * (one_by_one + three + five)",
                     "return 2 * positions * (one_by_one + three + five)")
MACS_THREE_FOR_FIVE = edit(MAC, "five = 5 * 5 * ch5x5red * ch5x5", "five = 3 * 3 * ch5x5red * ch5x5")
MACS_REDUCTIONS_AT_OUTPUT = edit(MAC, "one_by_one = in_channels * (ch1x1 + ch3x3red + ch5x5red + pool_proj)",
                                 "one_by_one = in_channels * (ch1x1 + ch3x3 + ch5x5 + pool_proj)")
MACS_NAIVE = '''
def inception_macs(in_channels, height, width, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    """The lecture's naive sum: each convolution on the module's input."""
    return height * width * in_channels * (ch1x1 + 9 * ch3x3 + 25 * ch5x5)
'''

# =============================================================================================
# Cheats and do-nothing answers
# =============================================================================================
INCEPTION_TORCHVISION = '''
from torchvision.models.googlenet import Inception as _TorchvisionInception


class Inception(_TorchvisionInception):
    """torchvision's module under my class's name."""
'''

MACS_BY_COUNTING = '''
def inception_macs(in_channels, height, width, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    """Let the library count my module instead of deriving the formula."""
    module = Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
    return dl.count_macs(module, (1, in_channels, height, width))
'''

INCEPTION_DOES_NOTHING = '''
class Inception(nn.Module):
    """Right shape, no layers, no computation."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, X):
        return torch.zeros(X.shape[0], self.out_channels, X.shape[2], X.shape[3])
'''

MACS_DOES_NOTHING = '''
def inception_macs(in_channels, height, width, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
    return 0
'''


def steal_reference():
    """The last answer cell looks for the grader's suite or the instructor's notebook and runs what it finds."""
    return '''
import json, os
from pathlib import Path

_places = [Path(os.getcwd()), *Path(os.getcwd()).parents, Path.home(), Path(%r)]
for _place in _places:
    for _rel in ("autograder/suites/05_googlenet/test_inception.py", "solutions/05_googlenet/05_googlenet.ipynb"):
        try:
            _text = (_place / _rel).read_text()
        except Exception:
            continue
        if _rel.endswith(".py"):
            _ns = {}
            exec(_text, _ns)
            Inception = _ns["RefInception"]
        else:
            for _cell in json.loads(_text)["cells"]:
                if _cell.get("metadata", {}).get("nbgrader", {}).get("solution") and _cell["cell_type"] == "code":
                    exec("".join(_cell["source"]), globals())
''' % str(REPO)


# =============================================================================================
CASES = [
    Case("reference", "correct", sub(), "full", "the solution notebook's own answers"),
    Case("alt_modulelist_functional", "alternative", sub(Inception=INCEPTION_MODULELIST, inception_macs=MACS_TERMS),
         "full", "branches as an nn.ModuleList with F.relu/F.max_pool2d in forward; MACs summed over a list of "
                 "convolutions"),
    Case("alt_attributes", "alternative", sub(Inception=INCEPTION_ATTRIBUTES, inception_macs=MACS_NUMPY),
         "full", "layers as attributes registered out of order, in-place ReLU, padding='same', ceil_mode pooling; "
                 "MACs as a numpy dot product"),
    # --- honest mistakes
    Case("mistakes_order_flops", "mistake", sub(Inception=ORDER_POOL_FIRST, inception_macs=MACS_AS_FLOPS),
         lose([INCEPTION, MACS], says=["concatenated in the order pool, 1x1, 3x3, 5x5", "it counts FLOPs"]),
         "branches concatenated pool first; MACs counted as FLOPs (twice the multiply-adds)"),
    Case("mistakes_relu_three", "mistake",
         sub(Inception=NO_RELU_REDUCTION, inception_macs=MACS_THREE_FOR_FIVE),
         lose([INCEPTION, MACS], says=["no ReLU after the 1x1 reduction in front of the 3x3",
                                       "3x3 kernel (9 weights) in the 5x5 branch"]),
         "no ReLU after the 3x3 branch's reduction; a 3x3 kernel counted in the 5x5 branch"),
    Case("mistakes_padding_output", "mistake",
         sub(Inception=POOL_NO_PADDING, inception_macs=MACS_REDUCTIONS_AT_OUTPUT),
         lose([INCEPTION, MACS], says=["could not be concatenated", "output width of its branch"]),
         "max pooling without padding (the branches' sizes differ, torch.cat fails); reductions counted with "
         "their branch's output width"),
    Case("mistakes_three_naive", "mistake", sub(Inception=THREE_FOR_FIVE, inception_macs=MACS_NAIVE),
         lose([INCEPTION, MACS], says=["3x3 convolution where the paper has a 5x5", "naive module"]),
         "a 3x3 convolution in the 5x5 branch (torchvision's slip); the naive module's cost"),
    # --- cheats
    Case("cheat_torchvision_counting", "cheat",
         sub(Inception=INCEPTION_TORCHVISION, inception_macs=MACS_BY_COUNTING),
         lose([INCEPTION, MACS]),
         "torchvision's Inception under the notebook's class name; inception_macs counts a module with "
         "dl.count_macs (a convolution runs, which is forbidden there)"),
    Case("cheat_steal_reference", "cheat", sub(Inception=None, inception_macs=steal_reference), "zero",
         "looks for the hidden suite or the instructor's notebook on disk and runs it"),
    # --- submissions that do nothing
    Case("do_nothing", "broken", sub(Inception=INCEPTION_DOES_NOTHING, inception_macs=MACS_DOES_NOTHING), "zero",
         "each exercise answered with a placeholder of the right type and shape that computes nothing"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release, untouched"),
]

DEMO = {"correct": "reference", "mistakes": "mistakes_order_flops", "blank": "blank",
        "cheat": "cheat_torchvision_counting"}
