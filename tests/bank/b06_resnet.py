"""Submission bank of 06_resnet: what the grader must make of typical notebooks.

Every case is the release notebook with the reference answers, except where a case changes
something. Cells (grade ids of the autograded test cells):
  test_batch_norm (5), test_resnet (6), test_CifarResNet (3), test_train_resnet (3); q_residual (2)
  is graded by hand and is not part of the hidden suite.

Mistakes of different exercises share a notebook when each exercise's tests call only its own
function. Exception, on purpose: CifarResNet is built from the student's BasicBlock, so a wrong
BasicBlock also costs CifarResNet's output tests (both cells are listed).
"""
from __future__ import annotations

import functools

from bank.common import Case, Lose, Named, append, edit, reference, release, submission

ASSIGNMENT = "06_resnet"
BN, NET, CIFAR, TRAIN = "test_batch_norm", "test_resnet", "test_CifarResNet", "test_train_resnet"
ALL = (BN, NET, CIFAR, TRAIN)

ref = functools.partial(reference, ASSIGNMENT)


def sub(**answers):
    return lambda: submission(ASSIGNMENT, **answers)


# ---------------------------------------------------------------------------------------------
# Correct, differently written (full marks)
# ---------------------------------------------------------------------------------------------
BN_SUMS = '''
def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Channels first, everything else flattened: one row of values per channel."""
    C = x.shape[1]
    flat = x.transpose(0, 1).reshape(C, -1)                  # (C, m)
    if training:
        m = flat.shape[1]
        mean = flat.sum(dim=1) / m
        var = ((flat - mean[:, None]) ** 2).sum(dim=1) / m
        running_mean[:] = (1 - momentum) * running_mean + momentum * mean.detach()
        running_var[:] = (1 - momentum) * running_var + momentum * var.detach() * m / (m - 1)
    else:
        mean, var = running_mean, running_var
    view = [1, C] + [1] * (x.dim() - 2)
    return (x - mean.view(view)) * torch.rsqrt(var.view(view) + eps) * gamma.view(view) + beta.view(view)
'''

BN_VAR_MEAN = '''
def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    dims = [0] + list(range(2, x.dim()))
    if training:
        var, mean = torch.var_mean(x, dim=dims, unbiased=False)
        n = x.numel() / x.shape[1]
        with torch.no_grad():
            running_mean.lerp_(mean, momentum)               # running + momentum * (new - running)
            running_var.lerp_(var * n / (n - 1), momentum)
    else:
        mean, var = running_mean, running_var
    shape = [-1 if d == 1 else 1 for d in range(x.dim())]
    return gamma.reshape(shape) * (x - mean.reshape(shape)) / (var.reshape(shape) + eps).sqrt() + beta.reshape(shape)
'''

NET_FUNCTIONAL = '''
def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.downsample = downsample
        self.conv1, self.bn1 = conv(inplanes, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv(inplanes, planes, 1), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv(planes, 4 * planes, 1), nn.BatchNorm2d(4 * planes)
        self.relu, self.downsample = nn.ReLU(), downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def stage(block, inplanes, planes, num_blocks, stride):
    out = planes * block.expansion
    down = None
    if stride != 1 or inplanes != out:
        down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    return nn.Sequential(block(inplanes, planes, stride, down), *[block(out, planes) for _ in range(num_blocks - 1)])


class Net(nn.Module):
    def __init__(self, block, layers, num_classes):
        super().__init__()
        self.fc = nn.Linear(512 * block.expansion, num_classes)        # registered first: order does not matter
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, (w, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", stage(block, inplanes, w, n, 1 if i == 0 else 2))
            inplanes = w * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet(block, layers, num_classes=1000, zero_init_residual=False):
    net = Net(block, layers, num_classes)
    for name, p in net.named_parameters():
        if p.dim() == 4:
            nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:
        for m in net.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.constant_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight, 0)
    return net
'''

CIFAR_CAT = '''
class Shortcut(nn.Module):
    """Option A with torch.cat; keep=False gives the plain network's zero shortcut."""

    def __init__(self, planes, stride, keep=True):
        super().__init__()
        self.planes, self.stride, self.keep = planes, stride, keep

    def forward(self, x):
        x = x[..., ::self.stride, ::self.stride]
        pad = torch.zeros(x.shape[0], self.planes - x.shape[1], *x.shape[2:], dtype=x.dtype, device=x.device)
        out = torch.cat([x, pad], dim=1)
        return out if self.keep else out * 0


class CifarResNet(nn.Module):
    def __init__(self, n, num_classes=10, residual=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        cin = 16
        for i, cout in enumerate([16, 32, 64], start=1):
            blocks = nn.Sequential()
            for j in range(n):
                stride = 2 if (i > 1 and j == 0) else 1
                needs = stride != 1 or cin != cout
                sc = Shortcut(cout, stride, keep=residual) if (needs or not residual) else None
                blocks.append(BasicBlock(cin, cout, stride, sc))
                cin = cout
            self.add_module(f"layer{i}", blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, X):
        X = self.relu(self.bn1(self.conv1(X)))
        X = self.layer3(self.layer2(self.layer1(X)))
        return self.fc(self.avgpool(X).flatten(1))
'''

TRAIN_EXPLICIT = '''
def train_resnet(net, train_iter, num_epochs, lr, device):
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr, momentum=0.9, weight_decay=1e-4)
    history = dl.fit(net, train_iter, None, num_epochs=num_epochs, optimizer=optimizer, loss_fn=loss_fn,
                     device=device, progress=False)
    return history
'''

# ---------------------------------------------------------------------------------------------
# Do-nothing answers (each must score 0 in its cell)
# ---------------------------------------------------------------------------------------------
NOTHING = {
    "batch_norm": '''
def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    return x.clone()
''',
    "resnet": '''
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()

    def forward(self, x):
        return x


class Bottleneck(BasicBlock):
    expansion = 4


def resnet(block, layers, num_classes=1000, zero_init_residual=False):
    return nn.Identity()
''',
    "CifarResNet": '''
class CifarResNet(nn.Module):
    def __init__(self, n, num_classes=10, residual=True):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, X):
        return torch.zeros(len(X), self.num_classes)
''',
    "train_resnet": '''
def train_resnet(net, train_iter, num_epochs, lr, device):
    return dl.History()
''',
}

# ---------------------------------------------------------------------------------------------
# Honest mistakes
# ---------------------------------------------------------------------------------------------
BN_REF = ref("batch_norm")
NET_REF = ref("resnet")
CIFAR_REF = ref("CifarResNet")
TRAIN_REF = ref("train_resnet")

BN_UNBIASED = edit(BN_REF, "var = x.var(dim=dims, unbiased=False)", "var = x.var(dim=dims, unbiased=True)")
BN_OLD_WEIGHT = edit(edit(BN_REF, "running_mean.mul_(1 - momentum).add_(momentum * mean)",
                          "running_mean.mul_(momentum).add_((1 - momentum) * mean)"),
                     "running_var.mul_(1 - momentum).add_(momentum * var * m / (m - 1))",
                     "running_var.mul_(momentum).add_((1 - momentum) * var * m / (m - 1))")
BN_STORE_BIASED = edit(BN_REF, "momentum * var * m / (m - 1))", "momentum * var)")
BN_MIXED_ROWS = edit(edit(BN_REF, "        mean = x.mean(dim=dims)                                # (C,)",
                          "        flat = x.reshape(x.shape[1], -1)                        # one row per channel?\n"
                          "        mean = flat.mean(dim=1)"),
                     "        var = x.var(dim=dims, unbiased=False)                  # (C,) biased: normalises this batch",
                     "        var = flat.var(dim=1, unbiased=False)")
BN_BATCH_IN_EVAL = edit(BN_REF, "    if training:\n        mean = x.mean(dim=dims)",
                        "    if True:\n        mean = x.mean(dim=dims)")
BN_REBIND = edit(edit(BN_REF, "running_mean.mul_(1 - momentum).add_(momentum * mean)",
                      "running_mean = (1 - momentum) * running_mean + momentum * mean"),
                 "running_var.mul_(1 - momentum).add_(momentum * var * m / (m - 1))",
                 "running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)")

NET_V1 = edit(edit(NET_REF, "self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)",
                   "self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)"),
              "self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)",
              "self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)")
NET_NO_FINAL_RELU = edit(NET_REF, "return self.relu(out + identity)                                   # H(x)",
                         "return out + identity                                              # H(x)")
NET_RELU_TWICE = edit(NET_REF, "out = self.bn2(self.conv2(out))                                    # F(x)",
                      "out = self.relu(self.bn2(self.conv2(out)))                         # F(x)")
NET_NO_SHORTCUT_BN = edit(NET_REF, """            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride,
                                                 bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))""",
                          """            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride,
                                                 bias=False))""")
NET_WIDTHS = edit(NET_REF, "self.layer4 = self._make_layer(block, 512, layers[3], stride=2)",
                  "self.layer4 = self._make_layer(block, 256, layers[3], stride=2)")
NET_WRONG_ZERO = edit(NET_REF, """                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)""", """                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.bn1.weight)""")

CIFAR_OPTION_B = edit(CIFAR_REF, """                elif stride != 1 or inplanes != planes:
                    shortcut = PadShortcut(planes, stride)""", """                elif stride != 1 or inplanes != planes:
                    shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                             nn.BatchNorm2d(planes))""")
CIFAR_PLAIN_KEEPS = edit(CIFAR_REF, "                if not residual:\n                    shortcut = ZeroShortcut(planes, stride)\n                elif",
                         "                if")

TRAIN_GLOBAL_DATA = edit(TRAIN_REF, "return dl.fit(net, train_iter, num_epochs=", "return dl.fit(net, data.train, num_epochs=")
TRAIN_FIXED = edit(edit(TRAIN_REF, "lr=lr, momentum", "lr=0.05, momentum"), "num_epochs=num_epochs, optimizer",
                   "num_epochs=2, optimizer")


def lose(cells):
    return Lose.only(cells, ALL)


CASES = [
    Case("reference", "correct", sub(), "full", "the solution notebook's answers"),
    Case("alt_sums_functional_cat", "alternative",
         sub(batch_norm=BN_SUMS, resnet=NET_FUNCTIONAL, CifarResNet=CIFAR_CAT, train_resnet=TRAIN_EXPLICIT), "full",
         "batch norm by sums with slice assignment; functional blocks, a helper per stage, fc registered first; "
         "option A with torch.cat; an explicit loss"),
    Case("alt_var_mean", "alternative", sub(batch_norm=BN_VAR_MEAN), "full", "torch.var_mean and lerp_"),
    Case("mistakes_unbiased_v1_globaldata", "mistake",
         sub(batch_norm=BN_UNBIASED, resnet=NET_V1, train_resnet=TRAIN_GLOBAL_DATA),
         lose((BN, NET, TRAIN)),
         "normalises with the unbiased variance; Bottleneck's stride on the first 1x1 (the paper's v1); "
         "trains on the notebook's data instead of its argument",
         names=(Named(BN, "unbiased variance"), Named(NET, "first 1x1"))),
    Case("mistakes_momentum_norelu_epochs", "mistake",
         sub(batch_norm=BN_OLD_WEIGHT, resnet=NET_NO_FINAL_RELU, train_resnet=TRAIN_FIXED),
         lose((BN, NET, CIFAR, TRAIN)),
         "momentum as the weight of the old value; no ReLU after the addition (CifarResNet uses the block); "
         "fixed lr and epochs",
         names=(Named(BN, "weight of the new"), Named(NET, "no ReLU after the addition"))),
    Case("mistakes_biased_store_no_bn_shortcut_option_b", "mistake",
         sub(batch_norm=BN_STORE_BIASED, resnet=NET_NO_SHORTCUT_BN, CifarResNet=CIFAR_OPTION_B),
         lose((BN, NET, CIFAR)),
         "stores the biased variance; projection shortcut without BN; projection (option B) in the CIFAR net",
         names=(Named(BN, "biased batch variance"), Named(NET, "has no BN"), Named(CIFAR, "option A"))),
    Case("mistakes_rows_widths_plain", "mistake",
         sub(batch_norm=BN_MIXED_ROWS, resnet=NET_WIDTHS, CifarResNet=CIFAR_PLAIN_KEEPS),
         lose((BN, NET, CIFAR)),
         "statistics of x.reshape(C, -1), whose rows mix channels; stage 4 with 256 planes; residual=False keeps "
         "the shortcuts",
         names=(Named(BN, "mix channels"), Named(NET, "planes"), Named(CIFAR, "still adds"))),
    Case("mistakes_eval_batchstats_relu_twice", "mistake",
         sub(batch_norm=BN_BATCH_IN_EVAL, resnet=NET_RELU_TWICE),
         lose((BN, NET, CIFAR)),
         "batch statistics (and updates) in inference; ReLU on the branch and after the addition",
         names=(Named(BN, "in inference"), Named(NET, "another after"))),
    Case("mistakes_rebind_wrong_zero", "mistake",
         sub(batch_norm=BN_REBIND, resnet=NET_WRONG_ZERO),
         lose((BN, NET)),
         "running statistics rebound to new tensors instead of updated in place; zero_init on bn1",
         names=(Named(BN, "in place"), Named(NET, "last BN"))),
    Case("do_nothing", "cheat", sub(**NOTHING), "zero",
         "every exercise runs but does nothing: batch_norm copies its input, blocks return x, resnet an Identity, "
         "CifarResNet zeros, train_resnet an empty History"),
    Case("cheat_torchvision_and_aliases", "cheat", sub(
        batch_norm=append(BN_REF, '''
_bn = getattr(torch.nn.functional, "batch" + "_norm")


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    return _bn(x, running_mean, running_var, gamma, beta, training, momentum, eps)
'''),
        resnet=append(NET_REF, '''
import torchvision.models.resnet as _tv

BasicBlock, Bottleneck = _tv.BasicBlock, _tv.Bottleneck


def resnet(block, layers, num_classes=1000, zero_init_residual=False):
    return _tv.ResNet(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual)
'''),
        CifarResNet=None),
        lose((BN, NET, CIFAR)), "F.batch_norm through an alias; torchvision's blocks and ResNet returned"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release, untouched"),
]

DEMO = {"correct": "reference", "mistakes": "mistakes_unbiased_v1_globaldata", "blank": "blank",
        "cheat": "cheat_torchvision_and_aliases"}
