"""Submission bank of 04_alexnet_vgg (contract: tests/bank/common.py).

Every case is the release notebook with the reference answers, except the answer cells a case replaces.
Autograded test cells (grade ids) and their points:
  test_topk_accuracy 3, test_max_pool2d 3, test_max_pool2d_backward 4, test_AlexNet 4, test_make_vgg 5
  (19 autograded points);
  q_3x3_stack (2) is graded by hand and is not part of the hidden suite.

Each exercise's hidden tests call only that exercise's function, so honest mistakes of DIFFERENT
exercises share a notebook and each must lose points in its own cell only (Lose.only). The one
dependency: the reference max_pool2d_backward calls the student's max_pool2d, so a notebook with a
max_pool2d mistake carries a self-contained backward (BACKWARD_LOOP and its variants).
"""
from __future__ import annotations

import functools

from .common import Case, Lose, Named, edit, release, reference, submission

ASSIGNMENT = "04_alexnet_vgg"

TOPK, POOL, BACKWARD = "test_topk_accuracy", "test_max_pool2d", "test_max_pool2d_backward"
ALEX, VGG = "test_AlexNet", "test_make_vgg"
CELLS = (TOPK, POOL, BACKWARD, ALEX, VGG)

ref = functools.partial(reference, ASSIGNMENT)   # ref(grade_id): the reference answer of one answer cell


def lose(*cells: str) -> Lose:
    """Lose points in `cells`, keep full points in every other autograded cell."""
    return Lose.only(cells, CELLS)


def sub(**answers):
    """A build function: the release with these answer cells replaced (callables are called at build time)."""
    return lambda: submission(ASSIGNMENT, **{k: (v() if callable(v) else v) for k, v in answers.items()})


# =============================================================================================
# Correct, differently written solutions
# =============================================================================================
TOPK_RANK = '''
def topk_accuracy(logits, targets, ks=(1, 5)):
    """The target's rank: how many classes score strictly above it; correct at k when rank < k."""
    C = logits.size(1)
    if any(k > C or k < 1 for k in ks):
        raise ValueError("every k must be between 1 and the number of classes")
    target_logit = logits.gather(1, targets.unsqueeze(1))              # (N, 1)
    rank = (logits > target_logit).sum(dim=1)                          # (N,)
    return [float((rank < k).float().mean()) for k in ks]
'''

TOPK_SORT = '''
def topk_accuracy(logits, targets, ks=(1, 5)):
    """Sort every row once; the position of the target in its sorted row is its rank."""
    if max(ks) > logits.shape[1]:
        raise ValueError(f"k={max(ks)} > number of classes {logits.shape[1]}")
    order = logits.argsort(dim=1, descending=True)                     # (N, C)
    position = (order == targets.view(-1, 1)).int().argmax(dim=1)      # (N,)
    result = []
    for k in ks:
        result.append((position < k).sum().item() / len(targets))
    return result
'''

POOL_LOOPS = '''
def max_pool2d(x, kernel_size, stride=None, padding=0):
    """One output position at a time."""
    if stride is None:
        stride = kernel_size
    K, S, P = kernel_size, stride, padding
    N, C, H, W = x.shape
    x_pad = torch.full((N, C, H + 2 * P, W + 2 * P), -math.inf, dtype=x.dtype)
    x_pad[:, :, P:P + H, P:P + W] = x
    H_out, W_out = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
    out = torch.empty(N, C, H_out, W_out, dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = x_pad[:, :, i * S:i * S + K, j * S:j * S + K].amax(dim=(2, 3))
    return out
'''

POOL_AS_STRIDED = '''
def max_pool2d(x, kernel_size, stride=None, padding=0):
    """A strided view (N, C, H_out, W_out, K, K) of the padded input: every window without a copy."""
    K, P = kernel_size, padding
    S = stride or K
    x_pad = F.pad(x, [P] * 4, value=-float("inf")).contiguous()
    N, C, Hp, Wp = x_pad.shape
    H_out, W_out = (Hp - K) // S + 1, (Wp - K) // S + 1
    sN, sC, sH, sW = x_pad.stride()
    windows = x_pad.as_strided((N, C, H_out, W_out, K, K), (sN, sC, S * sH, S * sW, sH, sW))
    return windows.amax(dim=(-2, -1))
'''

# A backward that does not call max_pool2d: one window at a time, argmax of the flattened window
# (torch.argmax returns the FIRST maximal index, which is the course's tie rule).
BACKWARD_LOOP = '''
def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0):
    K, P = kernel_size, padding
    S = K if stride is None else stride
    N, C, H, W = x.shape
    H_out, W_out = grad_out.shape[-2:]
    x_pad = F.pad(x, (P, P, P, P), value=float("-inf"))
    grad = torch.zeros_like(x_pad)
    for i in range(H_out):
        for j in range(W_out):
            window = x_pad[:, :, i * S:i * S + K, j * S:j * S + K].reshape(N, C, K * K)
            best = window.argmax(dim=2)                                # (N, C): first maximum
            r, c = i * S + best // K, j * S + best % K
            for n in range(N):
                for ch in range(C):
                    grad[n, ch, r[n, ch], c[n, ch]] += grad_out[n, ch, i, j]
    return grad[:, :, P:P + H, P:P + W]
'''

BACKWARD_AS_STRIDED = '''
def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0):
    """Windows as a strided view, the first argmax of each, then one index_put_ that adds duplicates."""
    K, P = kernel_size, padding
    S = stride if stride is not None else K
    N, C, H, W = x.shape
    x_pad = F.pad(x, [P] * 4, value=-float("inf")).contiguous()
    Hp, Wp = x_pad.shape[-2:]
    H_out, W_out = grad_out.shape[-2:]
    sN, sC, sH, sW = x_pad.stride()
    windows = x_pad.as_strided((N, C, H_out, W_out, K, K), (sN, sC, S * sH, S * sW, sH, sW))
    best = windows.reshape(N, C, H_out, W_out, K * K).argmax(dim=-1)              # (N, C, H_out, W_out)
    rows = torch.arange(H_out).view(1, 1, -1, 1) * S + best // K
    cols = torch.arange(W_out).view(1, 1, 1, -1) * S + best % K
    n = torch.arange(N).view(-1, 1, 1, 1).expand_as(best)
    c = torch.arange(C).view(1, -1, 1, 1).expand_as(best)
    grad = torch.zeros_like(x_pad)
    grad.index_put_((n, c, rows, cols), grad_out, accumulate=True)
    return grad[:, :, P:P + H, P:P + W]
'''

# =============================================================================================
# Honest mistakes
# =============================================================================================
TOPK_GE = edit(TOPK_RANK, "rank = (logits > target_logit).sum(dim=1)",
               "rank = (logits >= target_logit).sum(dim=1)                         # counts the target too")
TOPK_LE_K = edit(TOPK_RANK, "(rank < k)", "(rank <= k)")
TOPK_WRONG_DIM = '''
def topk_accuracy(logits, targets, ks=(1, 5)):
    if max(ks) > logits.shape[1]:
        raise ValueError("k too large")
    result = []
    for k in ks:
        top = logits.topk(k, dim=0).indices                 # (k, C): the wrong direction
        result.append((top == targets).any(dim=0).float().mean().item())
    return result
'''
TOPK_MEAN_OVER_K = '''
def topk_accuracy(logits, targets, ks=(1, 5)):
    if max(ks) > logits.shape[1]:
        raise ValueError("k too large")
    result = []
    for k in ks:
        hits = logits.topk(k, dim=1).indices == targets[:, None]     # (N, k)
        result.append(hits.float().mean().item())                    # averages over N * k entries
    return result
'''

POOL_STRIDE_ONE = edit(POOL_AS_STRIDED, "S = stride or K", "S = stride or 1")
POOL_ZERO_PAD = edit(POOL_AS_STRIDED, 'value=-float("inf")', "value=0.0")

BACKWARD_EVERY_ELEMENT = edit(BACKWARD_LOOP, '''            best = window.argmax(dim=2)                                # (N, C): first maximum
            r, c = i * S + best // K, j * S + best % K
            for n in range(N):
                for ch in range(C):
                    grad[n, ch, r[n, ch], c[n, ch]] += grad_out[n, ch, i, j]''',
                              '''            grad[:, :, i * S:i * S + K, j * S:j * S + K] += grad_out[:, :, i, j, None, None]''')
BACKWARD_ALL_TIES = edit(BACKWARD_LOOP, '''            best = window.argmax(dim=2)                                # (N, C): first maximum
            r, c = i * S + best // K, j * S + best % K
            for n in range(N):
                for ch in range(C):
                    grad[n, ch, r[n, ch], c[n, ch]] += grad_out[n, ch, i, j]''',
                         '''            mask = window == window.amax(dim=2, keepdim=True)          # every maximum, ties included
            grad[:, :, i * S:i * S + K, j * S:j * S + K] += (mask * grad_out[:, :, i, j, None]).reshape(N, C, K, K)''')
BACKWARD_SPLIT = edit(BACKWARD_LOOP, '''            best = window.argmax(dim=2)                                # (N, C): first maximum
            r, c = i * S + best // K, j * S + best % K
            for n in range(N):
                for ch in range(C):
                    grad[n, ch, r[n, ch], c[n, ch]] += grad_out[n, ch, i, j]''',
                      '''            mask = (window == window.amax(dim=2, keepdim=True)).to(x.dtype)
            share = mask / mask.sum(dim=2, keepdim=True)               # ties share the gradient
            grad[:, :, i * S:i * S + K, j * S:j * S + K] += (share * grad_out[:, :, i, j, None]).reshape(N, C, K, K)''')
BACKWARD_LAST_TIE = edit(BACKWARD_LOOP, "best = window.argmax(dim=2)                                # (N, C): first maximum",
                         "best = K * K - 1 - window.flip(-1).argmax(dim=2)          # (N, C): last maximum")


BACKWARD_OVERWRITE = edit(BACKWARD_LOOP, "grad[n, ch, r[n, ch], c[n, ch]] += grad_out[n, ch, i, j]",
                          "grad[n, ch, r[n, ch], c[n, ch]] = grad_out[n, ch, i, j]      # the last window wins")


# =============================================================================================
# Cheats and do-nothing answers
# =============================================================================================
POOL_F = '''
def max_pool2d(x, kernel_size, stride=None, padding=0):
    return F.max_pool2d(x, kernel_size, stride, padding)
'''
BACKWARD_AUTOGRAD_F = '''
def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0):
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        torch.nn.MaxPool2d(kernel_size, stride, padding)(x).backward(grad_out)
    return x.grad
'''
# autograd through a pooling written with allowed tensor ops (a strided view, argmax and gather, so autograd
# routes each window's gradient to its first maximum: the course's tie rule). Without the "autograd" op group in
# max_pool2d_backward's rules this scores full marks; the backward pass is the exercise, so it must lose all 4.
BACKWARD_AUTOGRAD_OWN = '''
def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0):
    K, P = kernel_size, padding
    S = K if stride is None else stride
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        x_pad = F.pad(x, [P] * 4, value=-float("inf"))
        N, C, Hp, Wp = x_pad.shape
        H_out, W_out = (Hp - K) // S + 1, (Wp - K) // S + 1
        sN, sC, sH, sW = x_pad.stride()
        windows = x_pad.as_strided((N, C, H_out, W_out, K, K), (sN, sC, S * sH, S * sW, sH, sW))
        windows = windows.reshape(N, C, H_out, W_out, K * K)
        out = windows.gather(-1, windows.argmax(dim=-1, keepdim=True)).squeeze(-1)
        out.backward(grad_out)
    return x.grad
'''
POOL_TENSOR_UNFOLD = '''
def max_pool2d(x, kernel_size, stride=None, padding=0):
    S = stride or kernel_size
    x = F.pad(x, [padding] * 4, value=-float("inf"))
    return x.unfold(2, kernel_size, S).unfold(3, kernel_size, S).amax(dim=(-2, -1))
'''

TOPK_NOTHING = '''
def topk_accuracy(logits, targets, ks=(1, 5)):
    return [0.0 for k in ks]
'''
POOL_NOTHING = '''
def max_pool2d(x, kernel_size, stride=None, padding=0):
    return x
'''
BACKWARD_NOTHING = '''
def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0):
    return torch.zeros_like(x)
'''


# =============================================================================================
# Part 2: AlexNet and make_vgg
# =============================================================================================
ALEX_SEQUENTIAL = """
class AlexNet(nn.Sequential):
    \"\"\"The whole network as one nn.Sequential of named stages; no forward of its own.\"\"\"

    def __init__(self, num_classes=1000):
        spec = [(64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False),
                (256, 3, 1, 1, True)]              # (kernels, size, stride, padding, pooling after)
        features, channels = [], 3
        for out, k, s, p, pool in spec:
            features += [nn.Conv2d(channels, out, k, stride=s, padding=p), nn.ReLU()]
            if pool:
                features.append(nn.MaxPool2d(3, 2))
            channels = out
        super().__init__()
        self.add_module("features", nn.Sequential(*features))
        self.add_module("avgpool", nn.AdaptiveAvgPool2d(6))
        self.add_module("flatten", nn.Flatten())
        self.add_module("classifier", nn.Sequential(
            nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, num_classes)))
"""

VGG_NESTED = """
from collections import OrderedDict


def make_vgg(cfg, batch_norm=False, num_classes=1000):
    \"\"\"One nn.Sequential with named parts (nested Sequentials): the keys are features.*, classifier.*.\"\"\"
    features, c = nn.Sequential(), 3
    for v in cfg:
        if v == "M":
            features.append(nn.MaxPool2d(2))
            continue
        features.append(nn.Conv2d(c, v, 3, 1, 1))
        if batch_norm:
            features.append(nn.BatchNorm2d(v))
        features.append(nn.ReLU())
        c = v
    classifier = nn.Sequential(nn.Linear(c * 49, 4096), nn.ReLU(), nn.Dropout(0.5),
                               nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, num_classes))
    return nn.Sequential(OrderedDict(features=features, avgpool=nn.AdaptiveAvgPool2d((7, 7)),
                                     flatten=nn.Flatten(1), classifier=classifier))
"""


def alex_96_filters():
    return edit(edit(ref("AlexNet"), "nn.Conv2d(3, 64,", "nn.Conv2d(3, 96,"), "nn.Conv2d(64, 192,", "nn.Conv2d(96, 192,")


def alex_dropout_after_relu():
    return edit(ref("AlexNet"), """            nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),         # (N, 4096)
            nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),                # (N, 4096)""",
                """            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(p=0.5),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=0.5),""")


def alex_no_relu_after_conv5():
    return edit(ref("AlexNet"), "nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),",
                "nn.Conv2d(256, 256, kernel_size=3, padding=1),")


def vgg_no_relu():
    return edit(ref("make_vgg"), "            layers.append(nn.ReLU(inplace=True))\n", "")


def vgg_ignores_m():
    return edit(ref("make_vgg"), "layers.append(nn.MaxPool2d(kernel_size=2, stride=2))             # halves H and W",
                "continue")


def vgg_bn_after_relu():
    return edit(ref("make_vgg"), """            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))""", """            layers.append(nn.ReLU(inplace=True))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))""")


TOPK_LIBRARY = """
def topk_accuracy(logits, targets, ks=(1, 5)):
    scores = dl.topk_accuracy(logits, targets, ks)
    return [float(scores[f"top{k}"]) for k in ks]
"""
ALEX_SUBCLASS = """
import torchvision


class AlexNet(torchvision.models.AlexNet):
    pass
"""
VGG_TORCHVISION = """
import torchvision


def make_vgg(cfg, batch_norm=False, num_classes=1000):
    return torchvision.models.VGG(torchvision.models.vgg.make_layers(cfg, batch_norm), num_classes=num_classes)
"""
ALEX_COPIES_LAYERS = """
import importlib


class AlexNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        ready = getattr(importlib.import_module("torchvision." + "models"), "alex" + "net")(num_classes=num_classes)
        self.features, self.avgpool, self.classifier = ready.features, ready.avgpool, ready.classifier

    def forward(self, X):
        return self.classifier(torch.flatten(self.avgpool(self.features(X)), 1))
"""
VGG_DELEGATES = """
class _Net(nn.Module):
    \"\"\"Right keys, but forward hands the work to a torchvision network made from the loaded weights.\"\"\"

    def __init__(self, cfg, batch_norm, num_classes):
        super().__init__()
        import torchvision
        self.args = (cfg, batch_norm, num_classes)
        inner = torchvision.models.vgg.VGG(torchvision.models.vgg.make_layers(cfg, batch_norm), num_classes)
        self.features, self.classifier = inner.features, inner.classifier

    def forward(self, X):
        import torchvision
        ready = torchvision.models.vgg.VGG(torchvision.models.vgg.make_layers(self.args[0], self.args[1]),
                                           self.args[2])
        ready.load_state_dict(self.state_dict())
        return ready.eval()(X)


def make_vgg(cfg, batch_norm=False, num_classes=1000):
    return _Net(cfg, batch_norm, num_classes)
"""
ALEX_NOTHING = """
class AlexNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()

    def forward(self, X):
        return X
"""
VGG_NOTHING = """
def make_vgg(cfg, batch_norm=False, num_classes=1000):
    return nn.Identity()
"""

# =============================================================================================
CASES = [
    Case("reference", "correct", sub(), "full", "the solution notebook's own answers"),
    Case("alt_rank_loops", "alternative",
         sub(topk_accuracy=TOPK_RANK, max_pool2d=POOL_LOOPS, max_pool2d_backward=BACKWARD_LOOP,
             AlexNet=ALEX_SEQUENTIAL),
         "full", "top-k by the target's rank; pooling one output position at a time; backward one window at a "
                 "time with argmax; AlexNet as an nn.Sequential subclass built from a spec list"),
    Case("alt_sort_as_strided", "alternative",
         sub(topk_accuracy=TOPK_SORT, max_pool2d=POOL_AS_STRIDED, max_pool2d_backward=BACKWARD_AS_STRIDED,
             make_vgg=VGG_NESTED),
         "full", "top-k by sorting each row; pooling and its backward on an as_strided view of all windows; VGG as "
                 "nested nn.Sequentials with the same state_dict keys"),
    # --- honest mistakes (different exercises share a notebook; each loses in its own cell only)
    Case("demo_mistakes", "mistake",
         sub(topk_accuracy=TOPK_GE, max_pool2d=POOL_STRIDE_ONE, max_pool2d_backward=BACKWARD_EVERY_ELEMENT,
             AlexNet=alex_96_filters, make_vgg=vgg_no_relu),
         lose(TOPK, POOL, BACKWARD, ALEX, VGG),
         "top-k with >= at the boundary (top-(k-1)); the stride defaults to 1; the gradient goes to every "
         "element of the window; AlexNet with the paper's 96 first-layer kernels; VGG without ReLUs",
         names=(Named(TOPK, "top-(k-1)"), Named(POOL, "stride 1"), Named(BACKWARD, "every element of the window"),
                Named(ALEX, "96"), Named(VGG, "no relu"))),
    Case("mistakes_dim_zero_pad_all_ties", "mistake",
         sub(topk_accuracy=TOPK_WRONG_DIM, max_pool2d=POOL_ZERO_PAD, max_pool2d_backward=BACKWARD_ALL_TIES,
             AlexNet=alex_no_relu_after_conv5, make_vgg=vgg_ignores_m),
         lose(TOPK, POOL, BACKWARD, ALEX, VGG),
         "top-k over the images instead of the classes; padding with zeros; gradient to every tied maximum; "
         "AlexNet without the ReLU after conv5 (same keys); VGG ignoring 'M'",
         names=(Named(TOPK, "columns"), Named(POOL, "zero-padded"), Named(BACKWARD, "every element that equals"),
                Named(ALEX, "without the relu", "conv5"), Named(VGG, "no max pooling"))),
    Case("mistakes_mean_over_k_overwrite", "mistake",
         sub(topk_accuracy=TOPK_MEAN_OVER_K, max_pool2d_backward=BACKWARD_OVERWRITE,
             AlexNet=alex_dropout_after_relu, make_vgg=vgg_bn_after_relu),
         lose(TOPK, BACKWARD, ALEX, VGG),
         "top-k averaged over the N x k hits instead of the N rows; overlapping windows overwrite instead of add; "
         "AlexNet's dropout after the ReLUs; VGG's batch norm after the ReLU",
         names=(Named(TOPK, "divided by k"), Named(BACKWARD, "sum of their gradients"),
                Named(ALEX, "dropout after each relu"), Named(VGG, "batch norm", "after the relu"))),
    Case("mistakes_le_k_split_ties", "mistake",
         sub(topk_accuracy=TOPK_LE_K, max_pool2d_backward=BACKWARD_SPLIT),
         lose(TOPK, BACKWARD),
         "top-k with <= k (top-(k+1)); tied maxima share the gradient",
         names=(Named(TOPK, "top-(k+1)"), Named(BACKWARD, "splits"))),
    Case("mistake_last_tie", "mistake", sub(max_pool2d_backward=BACKWARD_LAST_TIE), lose(BACKWARD),
         "gradient to the last of the tied maxima", names=Named(BACKWARD, "last")),
    # --- cheats
    Case("demo_cheat", "cheat",
         sub(topk_accuracy=TOPK_LIBRARY, max_pool2d=POOL_F, max_pool2d_backward=BACKWARD_AUTOGRAD_F,
             AlexNet=ALEX_SUBCLASS, make_vgg=VGG_TORCHVISION),
         "zero", "the library's top-k; F.max_pool2d, and autograd through nn.MaxPool2d for the backward; AlexNet "
                 "subclassing torchvision's; make_vgg returning torchvision's VGG"),
    Case("cheat_disguised", "cheat",
         sub(max_pool2d=POOL_TENSOR_UNFOLD, AlexNet=ALEX_COPIES_LAYERS, make_vgg=VGG_DELEGATES),
         lose(POOL, BACKWARD, ALEX, VGG),
         "windows by Tensor.unfold (the reference backward calls this max_pool2d); AlexNet copying the layers of "
         "a torchvision model reached through importlib and strings; a VGG with the right keys whose forward "
         "hands the loaded weights to a torchvision network"),
    Case("cheat_backward_autograd", "cheat", sub(max_pool2d_backward=BACKWARD_AUTOGRAD_OWN), 15.0,
         "max_pool2d_backward by autograd through a pooling of allowed tensor ops (as_strided, argmax, gather): "
         "all 4 backward points lost to the 'autograd' rule, every other exercise full"),
    # --- nothing done
    Case("do_nothing", "broken",
         sub(topk_accuracy=TOPK_NOTHING, max_pool2d=POOL_NOTHING, max_pool2d_backward=BACKWARD_NOTHING,
             AlexNet=ALEX_NOTHING, make_vgg=VGG_NOTHING),
         "zero", "every answer runs and does nothing: 0 accuracy, the input, a zero gradient, an empty network, "
                 "nn.Identity"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release, untouched"),
]

DEMO = {"correct": "reference", "mistakes": "demo_mistakes", "blank": "blank", "cheat": "demo_cheat"}
