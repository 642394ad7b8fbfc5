"""Hidden tests of 05_googlenet, exercises 1 and 2: the `Inception` module and `inception_macs`.

Oracles (all computed here, in the grader)
------------------------------------------
- Parameter shapes: the grader's own Inception (`RefInception`, built on the "meta" device, so no
  memory and no time) for the same columns; compared as a multiset, so layer names, registration
  order, nn.Sequential or ModuleList do not matter.
- Values: for column values whose twelve parameter tensors all have different shapes, the grader
  draws its own weights, loads them into the student's module by shape (load_state_dict with the
  student's own keys), runs the student's forward on its own input and compares with `reference`
  (F.conv2d / F.max_pool2d here). Known wrong modules (another order of concatenation, a missing
  ReLU after a reduction, ...) are computed the same way and named when the output matches one.
- What each channel group sees: the grader bumps one input pixel and measures, from the two
  outputs, which output rows change in each channel group (1, 3, 5 and 3 rows for the 1x1, 3x3,
  5x5 and pool branches). This needs no weights and names a wrong order or a 3x3 in the 5x5 branch
  even when the layers cannot be matched.
- Multiply-adds: `FlopCounterMode` on the grader's RefInception on the meta device (one
  multiply-add = 2 FLOPs), for the lecture's module, GoogLeNet's nine and random column values.
  `inception_macs` runs with convolutions forbidden: it must be a formula, not a count of a module.

Each exercise's tests call only that exercise's function or class.
"""
from __future__ import annotations

import itertools
import random
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from autograder.testing import (Mistake, RemoteRef, StudentError, assert_close, assert_equal, check, fail, named,
                                points)

CELL, MACS_CELL = "test_Inception", "test_inception_macs"
BRANCHES = ("1x1", "3x3", "5x5", "pool")
# Finished modules and counters the student's code must not call (enforced while it runs).
READY_MADE = ("torchvision.models",)
COUNTERS = ("dlcourse.count_macs", "dlcourse.count_flops", "dlcourse.layer_table", "dlcourse.summary",
            "torch.utils.flop_counter")

# Columns (in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) whose twelve parameter
# tensors all have different shapes, so that weights can be matched to layers by shape alone.
DISTINCT = [(8, 6, 4, 9, 3, 5, 7), (12, 10, 6, 11, 2, 4, 3), (5, 3, 7, 8, 4, 6, 9)]


# ------------------------------------------------------------------------------------------
# The grader's own module and its known wrong variants
# ------------------------------------------------------------------------------------------
class RefInception(nn.Module):
    """The paper's module (Figure 2b): the grader's reference, used on the meta device for shapes and MACs."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.b1 = nn.Conv2d(in_channels, ch1x1, 1)
        self.b2r, self.b2 = nn.Conv2d(in_channels, ch3x3red, 1), nn.Conv2d(ch3x3red, ch3x3, 3, padding=1)
        self.b3r, self.b3 = nn.Conv2d(in_channels, ch5x5red, 1), nn.Conv2d(ch5x5red, ch5x5, 5, padding=2)
        self.b4 = nn.Conv2d(in_channels, pool_proj, 1)

    def forward(self, X):
        return torch.cat([F.relu(self.b1(X)), F.relu(self.b2(F.relu(self.b2r(X)))),
                          F.relu(self.b3(F.relu(self.b3r(X)))),
                          F.relu(self.b4(F.max_pool2d(X, 3, stride=1, padding=1)))], 1)


def reference_shapes(cfg, kernel5=5, bias=True):
    """Parameter shapes of the module with columns `cfg` (sorted list), as a multiset."""
    c_in, c1, r3, c3, r5, c5, pp = cfg
    shapes = [(c1, c_in, 1, 1), (r3, c_in, 1, 1), (c3, r3, 3, 3), (r5, c_in, 1, 1), (c5, r5, kernel5, kernel5),
              (pp, c_in, 1, 1)]
    if bias:
        shapes += [(c,) for c in (c1, r3, c3, r5, c5, pp)]
    return sorted(shapes)


def reference_weights(cfg, seed):
    """name -> tensor for the six convolutions, scaled so that outputs stay of order 1 (biases of both signs)."""
    c_in, c1, r3, c3, r5, c5, pp = cfg
    g = torch.Generator().manual_seed(seed)
    shapes = {"b1": (c1, c_in, 1, 1), "b2r": (r3, c_in, 1, 1), "b2": (c3, r3, 3, 3), "b3r": (r5, c_in, 1, 1),
              "b3": (c5, r5, 5, 5), "b4": (pp, c_in, 1, 1)}
    weights = {}
    for name, shape in shapes.items():
        fan_in = shape[1] * shape[2] * shape[3]
        weights[name + ".weight"] = torch.randn(*shape, generator=g) * (2.0 / fan_in) ** 0.5
        weights[name + ".bias"] = torch.randn(shape[0], generator=g) * 0.3
    return weights


def reference_branches(X, w, relu_red3=True, relu_red5=True):
    """The four branch outputs (1x1, 3x3, 5x5, pool) of the module with weights `w`, in float64."""
    X = X.double()
    w = {k: v.double() for k, v in w.items()}

    def conv(name, x, padding=0):
        return F.conv2d(x, w[name + ".weight"], w[name + ".bias"], padding=padding)

    red3, red5 = conv("b2r", X), conv("b3r", X)
    red3 = F.relu(red3) if relu_red3 else red3
    red5 = F.relu(red5) if relu_red5 else red5
    return [F.relu(conv("b1", X)), F.relu(conv("b2", red3, 1)), F.relu(conv("b3", red5, 2)),
            F.relu(conv("b4", F.max_pool2d(X, 3, stride=1, padding=1)))]


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# The student's module
# ------------------------------------------------------------------------------------------
def new_module(student, cfg):
    """Inception(*cfg) built in the student's kernel: an instance of the notebook's own class."""
    what = f"Inception{tuple(cfg)}"
    module = student.function("Inception", timeout=30, forbid_calls=READY_MADE)(*cfg)
    if not isinstance(module, RemoteRef):
        fail(f"{what} returned a {type(module).__name__}: Inception must be an nn.Module subclass")
    check(module.type_name == "Inception",
          f"{what} is an object of type {module.type_name}: it must be an instance of the Inception class "
          f"defined in your notebook (class Inception(nn.Module)), not a finished module from a library")
    return module, what


def explain_error(e: StudentError, what: str):
    """A forward that failed: say why in the notebook's terms when the cause is the usual one."""
    text = f"{e.type_name}: {e.error_message}"
    if "Sizes of tensors must match" in text or "Expected size" in text:
        named(what, f"the branches' outputs could not be concatenated ({text[:160]}): a branch without padding "
                    f"shrinks the image. Every branch must keep the input's height and width: padding 1 for the 3x3 "
                    f"convolution and for the 3x3 max pooling (stride 1), padding 2 for the 5x5 (section 1)")
    raise e


def forward(module, X, what):
    """The module's output on X (run in the student's kernel), checked to be a finite tensor of the right size."""
    try:
        Y = module.method("__call__", timeout=60, forbid_calls=READY_MADE)(X)
    except StudentError as e:
        explain_error(e, what)
    if not isinstance(Y, torch.Tensor):
        kind = Y.type_name if isinstance(Y, RemoteRef) else type(Y).__name__
        fail(f"{what}: forward returned a {kind}, expected a torch.Tensor")
    check(bool(torch.isfinite(Y).all()), f"{what}: the output is not finite (NaN or inf)")
    return Y


def expected_shape(cfg, X):
    c_in, c1, r3, c3, r5, c5, pp = cfg
    return (X.shape[0], c1 + c3 + c5 + pp, X.shape[2], X.shape[3])


def load_by_shape(module, weights, what):
    """Load the grader's weights into the student's module, matching tensors by their (distinct) shapes."""
    state = module.state_dict()
    by_shape = {tuple(t.shape): t for t in weights.values()}
    mine = Counter(tuple(t.shape) for t in weights.values())
    theirs = Counter(tuple(t.shape) for t in state.values() if isinstance(t, torch.Tensor))
    check(mine == theirs, f"{what}: the grader cannot load its weights because the module's layers differ from "
                          f"the paper's (the layer test says how)")
    module.method("load_state_dict", timeout=30)({k: by_shape[tuple(v.shape)] for k, v in state.items()})


# ------------------------------------------------------------------ Inception (4 points)
SHAPE_CASES = [((10, 6, 4, 8, 3, 5, 7), (2, 10, 9, 7)), ((3, 1, 1, 1, 1, 1, 1), (1, 3, 5, 5)),
               ((16, 5, 6, 7, 2, 3, 4), (3, 16, 12, 13)), ((192, 64, 96, 128, 16, 32, 32), (1, 192, 14, 14))]


@points(1, cell=CELL)
def test_inception_output_shape(student):
    """Inception keeps H x W and outputs ch1x1 + ch3x3 + ch5x5 + pool_proj channels (odd and non-square sizes too), computed from its input"""
    for k, (cfg, shape) in enumerate(SHAPE_CASES):
        module, what = new_module(student, cfg)
        X = randn(*shape, seed=10 + k)
        Y = forward(module, X, f"{what} on a {shape} input")
        check(tuple(Y.shape) == expected_shape(cfg, X), f"{what} on a {shape} input: wrong output shape: got "
                                                        f"{tuple(Y.shape)}")
        Y2 = forward(module, 2 * randn(*shape, seed=20 + k), f"{what} on a {shape} input")
        check(not torch.equal(Y, Y2) and float(Y.std()) > 0,
              f"{what}: the output does not depend on the input: the module must compute its branches")


@points(1, cell=CELL)
def test_inception_layers(student):
    """Inception's convolutions have the paper's sizes: 1x1, 1x1 then 3x3, 1x1 then 5x5, pool then 1x1, with biases"""
    for cfg in [(192, 64, 96, 128, 16, 32, 32), DISTINCT[0], (20, 1, 2, 3, 4, 5, 6)]:
        module, what = new_module(student, cfg)
        shapes = sorted(tuple(t.shape) for t in module.state_dict().values() if isinstance(t, torch.Tensor))
        expected = reference_shapes(cfg)
        if shapes != expected:
            extra, missing = sorted((Counter(shapes) - Counter(expected)).elements()), \
                sorted((Counter(expected) - Counter(shapes)).elements())
            described = "; ".join(part for part in [
                ("tensors of shape " + ", ".join(map(str, extra[:4])) + " belong to no layer of the module"
                 + (" (batch normalisation is not part of the paper's module)" if any(len(e) == 0 for e in extra)
                    else "")) if extra else "",
                ("no tensor of shape " + ", ".join(map(str, missing[:4])) + " (a layer is missing or has other "
                                                                            "sizes)") if missing else ""] if part)
            known = [(reference_shapes(cfg, kernel5=3),
                      "the third branch has a 3x3 convolution where the paper has a 5x5 (torchvision's googlenet has "
                      "the same slip, section 4): use kernel_size=5 with padding=2"),
                     (reference_shapes(cfg, bias=False),
                      "the convolutions have no bias: the paper's module uses nn.Conv2d with its bias (bias=True)"),
                     (reference_shapes(cfg, kernel5=3, bias=False),
                      "3x3 kernels in the 5x5 branch and no biases: use kernel_size=5 and keep the biases")]
            for wrong, explain in known:
                if shapes == wrong:
                    named(f"{what}: the shapes of its parameters", explain)
            fail(f"{what}: its parameters do not match the paper's module: {described}")


def extents(Y, Y2):
    """Per output channel: how many output rows changed between the two outputs."""
    diff = (Y2.double() - Y.double()).abs().sum(dim=0)                  # (C, H, W)
    return (diff.amax(dim=2) > 1e-6).sum(dim=1)                          # (C,)


def group_max(per_channel, sizes):
    out, start = [], 0
    for size in sizes:
        out.append(int(max(per_channel[start:start + size])))
        start += size
    return out


@points(1, cell=CELL)
def test_inception_branch_order_and_kernels(student):
    """the channel groups 1x1, 3x3, 5x5, pool (in this order) see 1, 3, 5 and 3 input rows around a pixel"""
    seen = {"1x1": 1, "3x3": 3, "5x5": 5, "pool": 3}
    for k, cfg in enumerate(DISTINCT[:2]):
        module, what = new_module(student, cfg)
        c_in, c1, r3, c3, r5, c5, pp = cfg
        sizes = dict(zip(BRANCHES, (c1, c3, c5, pp)))
        X = randn(4, c_in, 11, 11, seed=30 + k)                             # four images: robust to dead ReLUs
        bump = torch.zeros_like(X)
        bump[:, :, 5, 5] = 10.0
        Y = forward(module, X, what)
        per_channel = torch.maximum(extents(Y, forward(module, X + bump, what)),     # a bump up and one down:
                                    extents(Y, forward(module, X - bump, what)))     # one passes each ReLU
        got = group_max(per_channel.tolist(), [sizes[b] for b in BRANCHES])

        def pattern(order, five=5):
            per_channel = [seen[b] if b != "5x5" else five for b in order for _ in range(sizes[b])]
            return group_max(per_channel, [sizes[b] for b in BRANCHES])

        mistakes = [Mistake(pattern(BRANCHES, five=3), "the 5x5 branch sees only 3 rows: it has a 3x3 "
                                                      "convolution where the paper has a 5x5")]
        # The 3x3 and pool groups both see 3 rows, so the pattern names "another order", not which one.
        mistakes += [Mistake(pattern(order), f"the groups see {pattern(order)} rows: the branches are concatenated "
                                             f"in another order than the paper's 1x1, 3x3, 5x5, pool (torch.cat of "
                                             f"the four outputs in that order, dim=1)")
                     for order in itertools.permutations(BRANCHES) if order != BRANCHES]
        assert_equal(got, pattern(BRANCHES), f"{what}: the number of rows each channel group (1x1, 3x3, 5x5, "
                                             f"pool) changes when one input pixel changes", mistakes=mistakes)


@points(1, cell=CELL)
def test_inception_values(student):
    """with the grader's weights loaded, Inception's output equals the paper's module (ReLU after every convolution, the reductions' too)"""
    for k, cfg in enumerate(DISTINCT):
        module, what = new_module(student, cfg)
        weights = reference_weights(cfg, seed=40 + k)
        load_by_shape(module, weights, what)
        X = randn(2, cfg[0], 7, 9, seed=50 + k)
        Y = forward(module, X, f"{what} with the grader's weights")
        expected = torch.cat(reference_branches(X, weights), 1)
        mistakes = [Mistake(torch.cat(reference_branches(X, weights, relu_red3=False), 1),
                            "there is no ReLU after the 1x1 reduction in front of the 3x3 convolution: every "
                            "convolution of the module is followed by a ReLU, the reductions too"),
                    Mistake(torch.cat(reference_branches(X, weights, relu_red5=False), 1),
                            "there is no ReLU after the 1x1 reduction in front of the 5x5 convolution: every "
                            "convolution of the module is followed by a ReLU, the reductions too"),
                    Mistake(torch.cat(reference_branches(X, weights, False, False), 1),
                            "there is no ReLU after the two 1x1 reductions: every convolution of the module is "
                            "followed by a ReLU, the reductions too")]
        branches = dict(zip(BRANCHES, reference_branches(X, weights)))
        mistakes += [Mistake(torch.cat([branches[b] for b in order], 1),
                             f"the branches are concatenated in the order {', '.join(order)}; the paper's order "
                             f"is 1x1, 3x3, 5x5, pool")
                     for order in itertools.permutations(BRANCHES) if order != BRANCHES]
        assert_close(Y, expected, f"{what} with the grader's weights", rtol=1e-4, atol=1e-4, mistakes=mistakes)


# ------------------------------------------------------------------ inception_macs (3 points)
def reference_macs(c_in, H, W, *columns):
    """FlopCounterMode on the grader's module, on the meta device (shapes only)."""
    with torch.device("meta"):
        module = RefInception(c_in, *columns)
        X = torch.zeros(1, c_in, H, W)
    with FlopCounterMode(display=False) as counter:
        module(X)
    return counter.get_total_flops() // 2


def macs_mistakes(c_in, H, W, c1, r3, c3, r5, c5, pp):
    """Known wrong counts for these arguments, each with what the student most likely did."""
    HW = H * W
    right = HW * (c_in * (c1 + r3 + r5 + pp) + 9 * r3 * c3 + 25 * r5 * c5)
    valid = (H * W * c_in * (c1 + r3 + r5 + pp) + max(H - 2, 0) * max(W - 2, 0) * 9 * r3 * c3
             + max(H - 4, 0) * max(W - 4, 0) * 25 * r5 * c5)
    return [
        Mistake(2 * right, "your count is twice the multiply-adds: it counts FLOPs (one multiply-add = 2 FLOPs, "
                           "as FlopCounterMode reports them); the exercise asks for multiply-adds"),
        Mistake(right - HW * 16 * r5 * c5, "your count has a 3x3 kernel (9 weights) in the 5x5 branch: the "
                                           "paper's third branch is a 5x5 convolution (25 weights per channel pair)"),
        Mistake(HW * (c_in * (c1 + c3 + c5 + pp) + 9 * r3 * c3 + 25 * r5 * c5),
                "your count gives each 1x1 reduction the output width of its branch (ch3x3, ch5x5) instead of its "
                "own (ch3x3red, ch5x5red): a reduction outputs only ch3x3red or ch5x5red channels"),
        Mistake(HW * (c_in * (c1 + pp) + 9 * r3 * c3 + 25 * r5 * c5),
                "your count leaves out the two 1x1 reductions: they are convolutions too, each reading all "
                "in_channels"),
        Mistake(HW * (c_in * (c1 + r3 + r5 + pp) + 9 * c_in * c3 + 25 * c_in * c5),
                "your count lets the 3x3 and 5x5 convolutions read all in_channels: they read the reductions' "
                "outputs (ch3x3red and ch5x5red channels)"),
        Mistake(HW * c_in * (c1 + 9 * c3 + 25 * c5), "your count is the naive module's (no reductions, no pool "
                                                     "projection); the exercise is the module with reductions"),
        Mistake(right - HW * c_in * pp, "your count leaves out the pool projection (the 1x1 convolution after "
                                        "the max pooling)"),
        Mistake(valid, "your count shrinks the 3x3 and 5x5 outputs as if there were no padding: with 'same' "
                       "padding every output keeps height x width"),
    ]


def check_macs(student, args):
    fn = student.function("inception_macs", forbid=("convolution",), forbid_calls=COUNTERS + READY_MADE, timeout=30)
    got = fn(*args)
    assert_equal(got, reference_macs(*args), f"inception_macs{tuple(args)}", mistakes=macs_mistakes(*args))


# (in_channels, height, width, columns...) of the lecture's slide and of GoogLeNet's nine modules (Table 1).
TABLE_MODULES = [(256, 28, 28, 128, 64, 192, 64, 96, 64),
                 (192, 28, 28, 64, 96, 128, 16, 32, 32), (256, 28, 28, 128, 128, 192, 32, 96, 64),
                 (480, 14, 14, 192, 96, 208, 16, 48, 64), (512, 14, 14, 160, 112, 224, 24, 64, 64),
                 (512, 14, 14, 128, 128, 256, 24, 64, 64), (512, 14, 14, 112, 144, 288, 32, 64, 64),
                 (528, 14, 14, 256, 160, 320, 32, 128, 128), (832, 7, 7, 256, 160, 320, 32, 128, 128),
                 (832, 7, 7, 384, 192, 384, 48, 128, 128)]


@points(1, cell=MACS_CELL)
def test_inception_macs_table(student):
    """inception_macs for the lecture's module and GoogLeNet's nine modules at their sizes"""
    for args in TABLE_MODULES:
        check_macs(student, args)


@points(2, cell=MACS_CELL)
def test_inception_macs_many(student):
    """inception_macs for 25 random column values and input sizes (non-square, tiny, 1-channel branches)"""
    rng = random.Random(5)
    cases = [(1, 1, 1, 1, 1, 1, 1, 1, 1), (3, 5, 2, 1, 2, 3, 4, 5, 6)]
    while len(cases) < 25:
        cases.append((rng.randint(1, 300), rng.randint(1, 40), rng.randint(1, 40),
                      *(rng.randint(1, 200) for _ in range(6))))
    for args in cases:
        check_macs(student, args)
