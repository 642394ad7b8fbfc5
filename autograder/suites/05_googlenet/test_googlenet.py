"""Hidden tests of 05_googlenet, exercises 3 and 4: the `GoogLeNet` network and `googlenet_loss`.

Oracles (all computed here, in the grader)
------------------------------------------
- Parameter shapes: the grader's own network built from the paper's Table 1 (`RefGoogLeNet`, on the
  "meta" device: shapes without memory or time), with and without the auxiliary classifiers,
  compared with the student's as a multiset (layer names and nesting do not matter). torchvision's
  googlenet is NOT used as a reference: it differs from Table 1 (a 3x3 convolution in the 5x5
  branch, batch normalisation, dropout 0.2), which the notebook shows.
- Outputs: the student's network runs in its kernel on the grader's images; the grader checks the
  type, shape and finiteness of what comes back, that it depends on the input, and which outputs
  exist in training and evaluation mode.
- The main dropout's rate: with num_classes=1024 and no auxiliary classifiers the classifier is the
  only (1024, 1024) weight. The grader loads the identity into it (bias 0), so the network's output
  IS the dropped-out feature vector: in evaluation mode it gives the features g, in training mode a
  batch of copies of one image gives, per row, 0 or g / (1 - p). The share of zeros estimates p
  (about 2,000 draws: standard error about 0.011).
- The loss: F.cross_entropy in float64 here, on the grader's logits and targets.
"""
from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from autograder.testing import (Mistake, RemoteRef, StudentError, assert_close, check, fail, named, points)

CELL, LOSS_CELL = "test_GoogLeNet", "test_googlenet_loss"
READY_MADE = ("torchvision.models", "dlcourse.bench")    # finished networks: not to be called by the student's code
IMAGE = (3, 224, 224)

# Table 1 of the paper: (in_channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per module.
TABLE = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
         "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
         "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
         "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
         "5b": (832, 384, 192, 384, 48, 128, 128)}


# ------------------------------------------------------------------------------------------
# The grader's reference: parameter shapes of Table 1's network
# ------------------------------------------------------------------------------------------
def module_shapes(cfg, kernel5=5, bias=True):
    c_in, c1, r3, c3, r5, c5, pp = cfg
    shapes = [(c1, c_in, 1, 1), (r3, c_in, 1, 1), (c3, r3, 3, 3), (r5, c_in, 1, 1), (c5, r5, kernel5, kernel5),
              (pp, c_in, 1, 1)]
    return shapes + ([(c,) for c in (c1, r3, c3, r5, c5, pp)] if bias else [])


def reference_shapes(num_classes, aux_logits, kernel5=5, stem_reduce=True):
    """Every parameter shape of Table 1's network, built here with nn layers on the meta device."""
    with torch.device("meta"):
        layers = [nn.Conv2d(3, 64, 7), nn.Conv2d(64, 192, 3), nn.Linear(1024, num_classes)]
        if stem_reduce:
            layers.append(nn.Conv2d(64, 64, 1))
        if aux_logits:
            for c_in in (512, 528):
                layers += [nn.Conv2d(c_in, 128, 1), nn.Linear(128 * 4 * 4, 1024), nn.Linear(1024, num_classes)]
    shapes = [tuple(p.shape) for layer in layers for p in layer.parameters()]
    for cfg in TABLE.values():
        shapes += module_shapes(cfg, kernel5=kernel5)
    return Counter(shapes)


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# The student's network
# ------------------------------------------------------------------------------------------
def new_net(student, mode, **kwargs):
    """GoogLeNet(**kwargs) built in the student's kernel (the notebook's own class), put in `mode`."""
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    what = f"GoogLeNet({args})"
    net = student.function("GoogLeNet", timeout=60, forbid_calls=READY_MADE)(**kwargs)
    if not isinstance(net, RemoteRef):
        fail(f"{what} returned a {type(net).__name__}: GoogLeNet must be an nn.Module subclass")
    check(net.type_name == "GoogLeNet",
          f"{what} is an object of type {net.type_name}: it must be an instance of the GoogLeNet class defined in "
          f"your notebook, built from your Inception modules, not a finished network from a library")
    if mode is not None:
        net.method(mode, timeout=30)()
    return net, f"{what} in {mode} mode" if mode else what


def run(net, X, what, size_hint=False):
    """The network's raw output on X (a tensor, or a tuple/list of tensors)."""
    try:
        return net.method("__call__", timeout=120, forbid_calls=READY_MADE)(X)
    except StudentError as e:
        if "Sizes of tensors must match" in e.error_message:
            fail(f"{what} failed inside an Inception module: its branches' outputs could not be concatenated "
                 f"({e.error_message[:120]}). Every branch must keep the height and width: fix exercise 1 first")
        if size_hint:
            named(f"{what} failed on a {tuple(X.shape[2:])} image ({e.type_name}: {e.error_message[:160]})",
                  "the pooling before the classifier only fits 224x224 images. Global average pooling must "
                  "average whatever height and width arrive: nn.AdaptiveAvgPool2d(1) or a mean over H and W, "
                  "not nn.AvgPool2d(7) (section 3)")
        raise


def logits_of(Y, X, num_classes, what):
    if isinstance(Y, (tuple, list)):
        fail(f"{what}: forward returned a {type(Y).__name__} of {len(Y)} items; here only the main logits are "
             f"expected (a tensor)")
    if not isinstance(Y, torch.Tensor):
        kind = Y.type_name if isinstance(Y, RemoteRef) else type(Y).__name__
        fail(f"{what}: forward returned a {kind}, expected a torch.Tensor of logits")
    check(tuple(Y.shape) == (X.shape[0], num_classes), f"{what}: wrong output shape: got {tuple(Y.shape)}")
    check(bool(torch.isfinite(Y).all()), f"{what}: the output is not finite (NaN or inf)")
    return Y.double()


def depends_on_input(Y, what):
    check(len(Y) < 2 or not torch.allclose(Y[0], Y[1], rtol=0, atol=1e-7),
          f"{what}: two different images give the same output: the network must compute its output from the image")


# ------------------------------------------------------------------ GoogLeNet (5 points)
@points(1, cell=CELL)
def test_googlenet_eval_logits(student):
    """in evaluation mode, GoogLeNet(num_classes=10, aux_logits=False) maps (2, 3, 224, 224) images to (2, 10) logits computed from them"""
    net, what = new_net(student, "eval", num_classes=10, aux_logits=False)
    X = randn(2, *IMAGE, seed=1)
    depends_on_input(logits_of(run(net, X, what), X, 10, what), what)


def shape_problem(got: Counter, expected: Counter) -> str:
    extra = sorted((got - expected).elements())
    missing = sorted((expected - got).elements())
    parts = []
    if extra:
        parts.append("tensors of shape " + ", ".join(map(str, extra[:5])) + (" ..." if len(extra) > 5 else "")
                     + " belong to no layer of Table 1")
    if missing:
        parts.append("no tensor of shape " + ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
                     + " (a layer of Table 1 is missing or has other sizes)")
    return "; ".join(parts)


def check_table(student, num_classes, aux_logits, kwargs):
    net, what = new_net(student, None, **kwargs)
    got = Counter(tuple(t.shape) for t in net.state_dict().values() if isinstance(t, torch.Tensor))
    expected = reference_shapes(num_classes, aux_logits)
    if got == expected:
        return
    known = [(reference_shapes(num_classes, aux_logits, kernel5=3),
              "every module's third branch has a 3x3 convolution where Table 1 has a 5x5 (torchvision's slip, "
              "section 4)"),
             (reference_shapes(num_classes, aux_logits, stem_reduce=False),
              "the stem has no 1x1 reduction (64 channels) in front of its 3x3 convolution (Table 1's '#3x3 reduce' "
              "of the second convolution row)"),
             (reference_shapes(num_classes, True), "it has auxiliary classifiers although aux_logits=False: build "
                                                   "them only when aux_logits is true"),
             (reference_shapes(num_classes, False), "it has no auxiliary classifiers although aux_logits=True")]
    for shapes, explain in known:
        if got == shapes:
            named(f"{what}: its parameters do not match Table 1", explain)
    fail(f"{what}: its parameters do not match Table 1: {shape_problem(got, expected)}")


@points(1, cell=CELL)
def test_googlenet_table(student):
    """every parameter of GoogLeNet() and of GoogLeNet(num_classes=10, aux_logits=False) has a shape of Table 1's network (stem, nine modules, classifier, auxiliary heads)"""
    check_table(student, 10, False, {"num_classes": 10, "aux_logits": False})
    check_table(student, 1000, True, {})


@points(1, cell=CELL)
def test_googlenet_aux_outputs(student):
    """with aux_logits, training mode returns (logits, aux1, aux2) and evaluation mode only the logits; without aux_logits always the logits"""
    net, what = new_net(student, "train", num_classes=10)
    X = randn(1, *IMAGE, seed=2)
    Y = run(net, X, what)
    if isinstance(Y, torch.Tensor):
        fail(f"{what}: forward returned only a tensor; in training mode with aux_logits=True it must return "
             f"(logits, aux1, aux2)")
    check(isinstance(Y, (tuple, list)) and len(Y) == 3,
          f"{what}: expected a tuple (logits, aux1, aux2), got {type(Y).__name__}"
          + (f" of {len(Y)} items" if isinstance(Y, (tuple, list)) else ""))
    outs = [logits_of(y, X, 10, f"{what}, output {k}") for k, y in enumerate(Y)]
    check(not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2]),
          f"{what}: the three outputs are equal: aux1 and aux2 must come from their own classifiers on inception "
          f"(4a) and (4d)")
    net.method("eval", timeout=30)()
    Y = run(net, X, what.replace("train mode", "eval mode"))
    if isinstance(Y, (tuple, list)):
        named(f"GoogLeNet(num_classes=10) in eval mode returned {len(Y)} outputs",
              "the auxiliary classifiers are active in evaluation mode. They exist only for training: return the "
              "main logits alone when self.training is False (section 4)")
    logits_of(Y, X, 10, "GoogLeNet(num_classes=10) in eval mode")
    net, what = new_net(student, "train", num_classes=10, aux_logits=False)
    logits_of(run(net, X, what), X, 10, what)


@points(1, cell=CELL)
def test_googlenet_dropout(student):
    """in training mode the main classifier sees its 1,024 features through dropout with p = 0.4 (inverted: kept ones scaled by 1/0.6); none in evaluation mode"""
    net, what = new_net(student, "eval", num_classes=1024, aux_logits=False)
    state = net.state_dict()
    weights = [k for k, v in state.items() if tuple(v.shape) == (1024, 1024)]
    biases = [k for k, v in state.items() if tuple(v.shape) == (1024,)]
    check(len(weights) == 1 and len(biases) == 1,
          f"{what}: cannot find the classifier, a linear layer from the 1,024 pooled features to num_classes "
          f"(with bias); it must be the only layer of that size")
    net.method("load_state_dict", timeout=60)({weights[0]: torch.eye(1024), biases[0]: torch.zeros(1024)},
                                              strict=False)
    X = randn(1, *IMAGE, seed=3)
    g = logits_of(run(net, X, what), X, 1024, what)[0]                     # the features before the classifier
    positive = g > 1e-4
    check(int(positive.sum()) >= 100, f"{what}: fewer than 100 of the 1,024 pooled features are positive on a "
                                      f"random image; is there a ReLU after every convolution?")
    net.method("train", timeout=30)()
    twice = X.expand(2, -1, -1, -1).contiguous()
    Y = logits_of(run(net, twice, what.replace("eval mode", "train mode")), twice, 1024, what)[:, positive]
    kept = Y.abs() > 1e-6
    p = 1 - float(kept.double().mean())
    if p < 0.02:
        named("GoogLeNet in training mode", "no dropout before the classifier (Table 1: dropout (40%) after the "
                                            "average pooling)")
    if 0.52 < p < 0.68:
        named(f"GoogLeNet in training mode drops about {p:.0%} of the features before the classifier",
              "the dropout's 40% were taken as the probability to KEEP. nn.Dropout(p) drops with probability p: "
              "use nn.Dropout(0.4) (section 4)")
    check(abs(p - 0.4) < 0.08, f"GoogLeNet in training mode drops about {p:.0%} of the features before the "
                               f"classifier; Table 1 says 40%")
    scale = float((Y[kept] / g[positive].expand_as(Y)[kept]).median())
    check(abs(scale - 1 / 0.6) < 0.05 * (1 / 0.6),
          f"GoogLeNet in training mode multiplies the kept features by {scale:.2f}; inverted dropout (nn.Dropout) "
          f"scales them by 1 / (1 - 0.4) = 1.67 so that evaluation needs no change")


@points(1, cell=CELL)
def test_googlenet_any_size(student):
    """in evaluation mode GoogLeNet also classifies 96x96 and 160x128 images (global average pooling)"""
    net, what = new_net(student, "eval", num_classes=10, aux_logits=False)
    outs = []
    for k, size in enumerate([(96, 96), (160, 128)]):
        X = randn(1, 3, *size, seed=4 + k)
        outs.append(logits_of(run(net, X, what, size_hint=True), X, 10, f"{what} on a {size} image")[0])
    depends_on_input(torch.stack(outs), what)


# ------------------------------------------------------------------ googlenet_loss (3 points)
def ce(logits, y):
    return F.cross_entropy(logits.double(), y)


def loss_inputs(N, C, seed):
    g = torch.Generator().manual_seed(seed)
    outputs = tuple((2 * torch.randn(N, C, generator=g)).requires_grad_(True) for _ in range(3))
    return outputs, torch.randint(0, C, (N,), generator=g)


def call_loss(student, outputs, y, what, **kwargs):
    try:
        loss = student.function("googlenet_loss", timeout=30)(outputs, y, **kwargs)
    except StudentError as e:
        if isinstance(outputs, torch.Tensor):
            named(f"{what}: failed on a single tensor of logits ({e.type_name}: {e.error_message[:120]})",
                  "the loss always unpacks three outputs; in evaluation mode the network returns only the logits "
                  "and the loss is then the plain cross-entropy: check whether outputs is a tensor first")
        raise
    if not isinstance(loss, torch.Tensor):
        kind = loss.type_name if isinstance(loss, RemoteRef) else type(loss).__name__
        fail(f"{what}: returned a {kind}; expected a 0-d tensor (without .item(), so that gradients flow)")
    check(loss.dim() == 0, f"{what}: expected a 0-d tensor, got shape {tuple(loss.shape)}")
    check(loss.requires_grad, f"{what}: the loss is cut off from the graph (no gradient would flow to the "
                              f"network): compute it with torch operations, without .item() or torch.tensor(...)")
    return loss


@points(2, cell=LOSS_CELL)
def test_googlenet_loss_with_aux(student):
    """googlenet_loss((logits, aux1, aux2), y, aux_weight) for aux_weight 0.3 (default), 0.5 and 0, differentiable"""
    for k, (N, C, kwargs) in enumerate([(6, 5, {}), (4, 10, {"aux_weight": 0.5}), (3, 7, {"aux_weight": 0.0}),
                                        (8, 1000, {})]):
        w = kwargs.get("aux_weight", 0.3)
        outputs, y = loss_inputs(N, C, seed=10 + k)
        main, a1, a2 = (ce(o.detach(), y) for o in outputs)
        what = f"googlenet_loss((logits, aux1, aux2), y{', aux_weight=' + str(w) if kwargs else ''})"
        loss = call_loss(student, outputs, y, what, **kwargs)
        assert_close(loss, main + w * (a1 + a2), what, rtol=1e-5, atol=1e-6, mistakes=[
            Mistake(w * main + a1 + a2, "the weight is applied to the main classifier's loss; it discounts the "
                                        "two AUXILIARY losses: main + aux_weight * (aux1 + aux2)"),
            Mistake(main + 0.3 * (a1 + a2), "the weight 0.3 is written into the function: use the aux_weight "
                                            "argument"),
            Mistake(main + w * (a1 + a2) / 2, "the two auxiliary losses are averaged before weighting; the paper "
                                              "adds each with weight aux_weight"),
            Mistake(main + a1 + a2, "the auxiliary losses are added without their weight (aux_weight)"),
            Mistake((main + a1 + a2) / 3, "the three losses are averaged; the auxiliary losses enter with weight "
                                          "aux_weight each"),
            Mistake(main, "the auxiliary classifiers' losses are left out"),
            Mistake(main * (1 + 2 * w), "every term is the main classifier's loss: the auxiliary losses must use "
                                        "aux1 and aux2")])


@points(1, cell=LOSS_CELL)
def test_googlenet_loss_plain(student):
    """googlenet_loss(logits, y) for a single tensor of logits (evaluation mode) is the cross-entropy"""
    for k, (N, C) in enumerate([(4, 5), (10, 1000)]):
        (logits, _, _), y = loss_inputs(N, C, seed=20 + k)
        what = "googlenet_loss(logits, y) for a single (N, C) tensor"
        loss = call_loss(student, logits, y, what)
        assert_close(loss, ce(logits.detach(), y), what, rtol=1e-5, atol=1e-6, mistakes=[
            Mistake(1.6 * ce(logits.detach(), y), "for a single tensor the loss is the plain cross-entropy, not "
                                                  "weighted as if the auxiliary heads had the same logits")])
