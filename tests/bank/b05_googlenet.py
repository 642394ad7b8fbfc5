"""Submission bank of 05_googlenet (contract: tests/bank/common.py).

Every case is the release notebook with some answer cells replaced. Each exercise's hidden tests
call only that exercise's function or class, so honest mistakes of different exercises share a
notebook and each must lose points in its own cell and nowhere else; `names` pins the words with
which the suite must name each honest mistake (its Mistake explanation), not only that it costs.
Test cells (grade ids) and points: test_Inception 4, test_inception_macs 3, test_GoogLeNet 5,
test_googlenet_loss 3 (15 autograded points; q_auxiliary, 2 points, is graded by hand). A mistake in
Inception that breaks its shapes also costs GoogLeNet's points (GoogLeNet is built from it); the
cases say so.
"""
from __future__ import annotations

import functools

from .common import REPO, Case, Lose, Named, edit, release, reference, submission

ASSIGNMENT = "05_googlenet"

INCEPTION, MACS, NET, LOSS = "test_Inception", "test_inception_macs", "test_GoogLeNet", "test_googlenet_loss"
CELLS = (INCEPTION, MACS, NET, LOSS)

ref = functools.partial(reference, ASSIGNMENT)   # ref(grade_id): the reference answer of one answer cell


def lose(*cells) -> Lose:
    """Lose points in `cells` (grade ids), keep full points in every other autograded cell."""
    return Lose.only(cells, CELLS)


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

GOOGLENET_LOOP = '''
import torch.nn.functional as F

# Table 1, one row per module: (name, in_channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
ROWS = [("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64),
        ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
        ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
        ("4e", 528, 256, 160, 320, 32, 128, 128), ("5a", 832, 256, 160, 320, 32, 128, 128),
        ("5b", 832, 384, 192, 384, 48, 128, 128)]


class AuxHead(nn.Module):
    # The paper's wording: 5x5 average pooling with stride 3, 1x1 conv 128, fc 1024, dropout 70%, linear.
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 128, 1)
        self.fc1, self.fc2 = nn.Linear(2048, 1024), nn.Linear(1024, num_classes)

    def forward(self, x):
        x = F.relu(self.conv(F.avg_pool2d(x, 5, stride=3)))
        x = F.dropout(F.relu(self.fc1(torch.flatten(x, 1))), 0.7, self.training)
        return self.fc2(x)


class GoogLeNet(nn.Module):
    # Modules built in a loop over the table's rows; pooling (padding 1), dropout and GAP in forward.
    def __init__(self, num_classes=1000, aux_logits=True):
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.conv2 = nn.Conv2d(64, 64, 1)
        self.conv3 = nn.Conv2d(64, 192, 3, padding=1)
        self.blocks = nn.ModuleDict({name: Inception(*cols) for name, *cols in ROWS})
        self.fc = nn.Linear(1024, num_classes)
        self.aux = nn.ModuleList([AuxHead(512, num_classes), AuxHead(528, num_classes)]) if aux_logits else None

    def forward(self, x):
        pool = lambda t: F.max_pool2d(t, 3, stride=2, padding=1)
        x = pool(F.relu(self.conv1(x)))
        x = pool(F.relu(self.conv3(F.relu(self.conv2(x)))))
        aux = []
        for name, block in self.blocks.items():
            if name in ("4a", "5a"):
                x = pool(x)
            x = block(x)
            if name in ("4a", "4d") and self.aux is not None and self.training:
                aux.append(self.aux[len(aux)](x))
        x = F.dropout(x.mean(dim=(2, 3)), 0.4, self.training)
        logits = self.fc(x)
        return (logits, *aux) if aux else logits
'''

LOSS_LIST = '''
def googlenet_loss(outputs, targets, aux_weight=0.3):
    # Weights in a list, one cross-entropy per output.
    if torch.is_tensor(outputs):
        outputs = [outputs]
    weights = [1.0] + [aux_weight] * (len(outputs) - 1)
    return sum(w * F.cross_entropy(o, targets) for w, o in zip(weights, outputs))
'''

GOOGLENET_ATTRIBUTES = '''
class InceptionAux(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = nn.Conv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=0.7)

    def forward(self, x):
        x = torch.relu(self.conv(self.pool(x)))
        x = self.dropout(torch.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    # torchvision's layout with the paper's layers: one attribute per row.
    def __init__(self, num_classes=1000, aux_logits=True):
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=1)
        self.conv3 = nn.Conv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.4)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool1(torch.relu(self.conv1(x)))
        x = self.maxpool2(torch.relu(self.conv3(torch.relu(self.conv2(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.training and self.aux1 is not None else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.training and self.aux2 is not None else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if self.training and self.aux_logits:
            return x, aux1, aux2
        return x
'''

LOSS_MODULE = '''
criterion = nn.CrossEntropyLoss()


def googlenet_loss(outputs, targets, aux_weight=0.3):
    # nn.CrossEntropyLoss and a tuple check.
    if isinstance(outputs, tuple):
        logits, aux1, aux2 = outputs
        return criterion(logits, targets) + aux_weight * criterion(aux1, targets) + aux_weight * criterion(aux2, targets)
    return criterion(outputs, targets)
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

NETSRC = ref("GoogLeNet")
AUX_IN_EVAL = edit(NETSRC, "with_aux = self.training and self.aux_logits", "with_aux = self.aux_logits")
DROPOUT_AS_KEEP = edit(NETSRC, "nn.Dropout(0.4),", "nn.Dropout(0.6),")
GAP_FIXED_SIZE = edit(NETSRC, "nn.AdaptiveAvgPool2d(1), nn.Flatten(),", "nn.AvgPool2d(7), nn.Flatten(),")

LOSSSRC = ref("googlenet_loss")
LOSS_WEIGHT_ON_MAIN = edit(
    LOSSSRC, "return main + aux_weight * (F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets))",
    "return aux_weight * main + F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets)")
LOSS_FIXED_WEIGHT = edit(LOSSSRC, "return main + aux_weight * (", "return main + 0.3 * (")
LOSS_ALWAYS_TUPLE = '''
def googlenet_loss(outputs, targets, aux_weight=0.3):
    logits, aux1, aux2 = outputs                 # forgets that evaluation mode returns one tensor
    return F.cross_entropy(logits, targets) + aux_weight * (F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets))
'''

# =============================================================================================
# Cheats and do-nothing answers
# =============================================================================================
GOOGLENET_TORCHVISION = '''
import torchvision


class GoogLeNet(nn.Module):
    # My class, torchvision's network inside.
    def __init__(self, num_classes=1000, aux_logits=True):
        super().__init__()
        self.aux_logits = aux_logits
        self.body = torchvision.models.googlenet(weights=None, num_classes=num_classes, aux_logits=aux_logits,
                                                 init_weights=False, dropout=0.4)

    def forward(self, X):
        out = self.body(X)
        return tuple(out) if isinstance(out, tuple) else out
'''

GOOGLENET_DOES_NOTHING = '''
class GoogLeNet(nn.Module):
    def __init__(self, num_classes=1000, aux_logits=True):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, X):
        return torch.zeros(X.shape[0], self.num_classes)
'''

LOSS_DOES_NOTHING = '''
def googlenet_loss(outputs, targets, aux_weight=0.3):
    return torch.tensor(0.0, requires_grad=True)
'''

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
    Case("alt_modulelist_functional", "alternative",
         sub(Inception=INCEPTION_MODULELIST, inception_macs=MACS_TERMS, GoogLeNet=GOOGLENET_LOOP,
             googlenet_loss=LOSS_LIST),
         "full", "branches as an nn.ModuleList with F.relu/F.max_pool2d in forward; MACs summed over a list of "
                 "convolutions; GoogLeNet's modules built in a loop over the table, padding-1 pooling, the paper's "
                 "5x5/3 average pooling in the heads, F.dropout and a mean for GAP; the loss as a weighted sum"),
    Case("alt_attributes", "alternative",
         sub(Inception=INCEPTION_ATTRIBUTES, inception_macs=MACS_NUMPY, GoogLeNet=GOOGLENET_ATTRIBUTES,
             googlenet_loss=LOSS_MODULE),
         "full", "layers as attributes registered out of order, in-place ReLU, padding='same', ceil_mode pooling; "
                 "MACs as a numpy dot product; torchvision's layout with its own InceptionAux class; "
                 "nn.CrossEntropyLoss"),
    # --- honest mistakes (each names its mistake in the message)
    Case("mistakes_order_flops", "mistake",
         sub(Inception=ORDER_POOL_FIRST, inception_macs=MACS_AS_FLOPS, GoogLeNet=AUX_IN_EVAL,
             googlenet_loss=LOSS_WEIGHT_ON_MAIN),
         lose(INCEPTION, MACS, NET, LOSS),
         "branches concatenated pool first; MACs counted as FLOPs; auxiliary heads returned in eval mode; "
         "the 0.3 weight on the main loss instead of the auxiliary ones",
         names=(Named(INCEPTION, "order pool, 1x1, 3x3, 5x5"), Named(MACS, "counts FLOPs"),
                Named(NET, "active in evaluation mode"), Named(LOSS, "applied to the main"))),
    Case("mistakes_relu_three", "mistake",
         sub(Inception=NO_RELU_REDUCTION, inception_macs=MACS_THREE_FOR_FIVE, GoogLeNet=DROPOUT_AS_KEEP,
             googlenet_loss=LOSS_FIXED_WEIGHT),
         lose(INCEPTION, MACS, NET, LOSS),
         "no ReLU after the 3x3 branch's reduction; a 3x3 kernel counted in the 5x5 branch; nn.Dropout(0.6) "
         "(40% read as the keep probability); the weight 0.3 written into the loss",
         names=(Named(INCEPTION, "no ReLU", "reduction in front of the 3x3"), Named(MACS, "3x3 kernel", "5x5 branch"),
                Named(NET, "probability to KEEP"), Named(LOSS, "aux_weight argument"))),
    Case("mistakes_padding_output", "mistake",
         sub(Inception=POOL_NO_PADDING, inception_macs=MACS_REDUCTIONS_AT_OUTPUT, googlenet_loss=LOSS_ALWAYS_TUPLE),
         lose(INCEPTION, MACS, NET, LOSS),
         "max pooling without padding (torch.cat fails, so the GoogLeNet built from it fails too); reductions "
         "counted with their branch's output width; a loss that always unpacks three outputs",
         names=(Named(INCEPTION, "could not be concatenated", "padding"), Named(MACS, "output width of its branch"),
                Named(LOSS, "always unpacks three outputs"))),
    Case("mistakes_three_naive", "mistake",
         sub(Inception=THREE_FOR_FIVE, inception_macs=MACS_NAIVE, GoogLeNet=GAP_FIXED_SIZE),
         lose(INCEPTION, MACS, NET),
         "a 3x3 convolution in the 5x5 branch (torchvision's slip; the GoogLeNet built from it has the wrong "
         "shapes too); the naive module's cost; nn.AvgPool2d(7) instead of global average pooling",
         names=(Named(INCEPTION, "3x3 convolution where the paper has a 5x5"), Named(MACS, "naive module"),
                Named(NET, "not nn.AvgPool2d(7)"))),
    # --- cheats
    Case("cheat_torchvision_counting", "cheat",
         sub(Inception=INCEPTION_TORCHVISION, inception_macs=MACS_BY_COUNTING, GoogLeNet=GOOGLENET_TORCHVISION),
         lose(INCEPTION, MACS, NET),
         "torchvision's Inception under the notebook's class name; inception_macs counts a module with "
         "dl.count_macs (a convolution runs, which is forbidden there); GoogLeNet wraps torchvision's googlenet"),
    Case("cheat_steal_reference", "cheat",
         sub(Inception=None, inception_macs=None, GoogLeNet=None, googlenet_loss=steal_reference), "zero",
         "looks for the hidden suite or the instructor's notebook on disk and runs it"),
    # --- submissions that do nothing
    Case("do_nothing", "broken",
         sub(Inception=INCEPTION_DOES_NOTHING, inception_macs=MACS_DOES_NOTHING, GoogLeNet=GOOGLENET_DOES_NOTHING,
             googlenet_loss=LOSS_DOES_NOTHING), "zero",
         "each exercise answered with a placeholder of the right type and shape that computes nothing"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release, untouched"),
]

DEMO = {"correct": "reference", "mistakes": "mistakes_order_flops", "blank": "blank",
        "cheat": "cheat_torchvision_counting"}
