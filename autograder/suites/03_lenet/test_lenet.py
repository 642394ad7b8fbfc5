"""Hidden tests of 03_lenet: the layer table, the LeNet5 module, and training it.

Oracles
-------
- Output shapes: PyTorch's own layers (nn.Conv2d, nn.MaxPool2d) run on the "meta" device in the
  grader, so every spatial size, including odd ones where pooling rounds down, comes from torch.
- Layer sizes: the multiset of parameter shapes of LeNet-5 (C5 as a 5x5 convolution or as a
  linear layer on the flattened S4 output; both are the same function on a 32x32 input). Shapes
  are compared as a multiset, so names, registration order, nn.Sequential or separate attributes
  do not matter.
- Doing nothing earns nothing: outputs must differ between images (not a constant), two LeNet5()
  with different random initialisations must compute different functions (the output comes from
  the layers' weights), and eval-mode outputs must be deterministic before any property is tested.
- Ready-made networks: LeNet5() and its forward run with `forbid_calls` on dlcourse.bench and
  torchvision.models (any name the student imported them under).
- Non-linearity: a network without activations is affine (f(a + b) = f(a) + f(b) - f(0)); with
  max pooling but no activation it is still *shift-affine*: adding a constant c to every pixel
  adds a constant per channel after each convolution, which max pooling and the linear layers
  pass on, so f(x + c) - f(x) does not depend on x. ReLU and tanh break both identities. Outputs
  are centred per row first (and logs taken of probabilities), so that a (log-)softmax at the end
  cannot hide a linear network.
- Accuracy: the trained `net`'s parameters, read with nn.Module.state_dict (the base class's
  method, so an override in the notebook's class is not used), are run HERE in the grader's own
  LeNet-5 (`lenet_forward`) on the grader's exam (below). Which activation and pooling the grader
  uses (ReLU, tanh, ...; max or average) is the variant that reproduces the student's outputs on
  random images; a network whose outputs no variant reproduces fails with that reason. Nothing the
  kernel computes on the exam counts: the kernel never receives it.
- train_lenet uses its arguments: it trains a small torch.nn network, built in the kernel, on a toy
  problem whose labels are permuted with a seed drawn for this grading (`permuted_problem`); the
  weights come back and are evaluated HERE on fresh images of the same problem. Training on the
  notebook's digits, or not training, leaves about chance.

The exam set (why it is out of the kernel's reach)
--------------------------------------------------
The notebook trains on `load_data(...).train`, validates on `.val`, and reports its test accuracy
on the EVEN-numbered images of `.test`; the odd-numbered ones are the exam's source, which no cell
of the notebook reads (tests/test_lenet_exam_split.py checks they are disjoint from train, val and
the even half). The raw digits ship with scikit-learn, so a kernel can always rebuild them: the
grader therefore never measures on them as they are. `exam_set` distorts each odd-numbered image
EXAM_COPIES times (random rotation, scale, shift and pixel noise) with a seed from os.urandom drawn
at every grading, and normalises with the mean/std the kernel used (`info`). A table of the raw
images' labels is useless on them (the bank grades a lookup table; tests/test_lenet_exam_split.py
checks the distortions and an untrained network).

What this does NOT catch: a network trained on the 180 raw exam images. It scores 83-86% on their
distorted copies (measured in the bank's runs), against the reference's ~93% and the 85% threshold,
so it passes in some gradings and fails in others; it was taken out of the bank for that reason. A
kernel that can import scikit-learn can always train on these digits: only an exam from data the
kernel cannot reach at all would close this.

Softmax in forward
------------------
Penalised (1 point): the contract is "return logits", and softmax followed by nn.CrossEntropyLoss
applies softmax twice, which squashes the gradients (the loss cannot go below log(1 + 9/e) ~ 1.46
and learning slows). A final log_softmax is accepted: log_softmax(log_softmax(z)) = log_softmax(z),
so cross-entropy, its gradients and the argmax are exactly those of the logits z.

Known mistakes
--------------
Named from what the grader measures itself: the parameter shapes (a kernel size other than 5x5,
other channel or unit counts, a first linear layer that does not read 16 * 5 * 5 = 400 inputs, the
output layer missing), the output (F6's 84 numbers, probabilities), the two linearity identities
(no activation), the layer shapes of the table computed with ceil-mode or padded layers, the
weights train_lenet leaves (untouched: it trained another network), and its first update compared
with one step of Adam and of plain SGD computed here on the same weights and batch.

The measured exam accuracy is shown with what it measured (the grader's LeNet-5 on distorted held-out
digits) and what it means (chance level, or learning too little). The threshold (85%) is stated in
the notebook, so showing it leaks nothing; the exam's images and labels are never shown.
"""
import math
import os
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.testing import RemoteRef, StudentError, check, fail, named, points

ACCURACY_THRESHOLD = 0.85       # stated in the notebook; see `distort` for what the reference reaches
EXAM_COPIES = 4                 # distorted versions of each of the 180 exam digits (more: less luck either way)
SMALL_PROBLEM_THRESHOLD = 0.8   # train_lenet on the grader's permuted toy problem; chance is 0.1
NUM_CLASSES = 10

# Parameter shapes of LeNet-5 (weights and biases of C1, C3, C5, F6, output).
_COMMON = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120,), (84, 120), (84,), (10, 84), (10,)]
LENET_SHAPES = (Counter(_COMMON + [(120, 400)]), Counter(_COMMON + [(120, 16, 5, 5)]))
ALL_SHAPES = set(_COMMON) | {(120, 400), (120, 16, 5, 5)}

# What a LeNet5 written by the student has no reason to call: other people's finished networks.
# Enforced while LeNet5() and its forward run (whatever name the student imported them under).
READY_MADE = ("dlcourse.bench", "torchvision.models")


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ known mistakes
KERNEL_SIZE = ("your convolutions C1 and C3 do not use 5x5 kernels: LeNet-5's table has 6 and then 16 kernels of "
               "5x5 (nn.Conv2d(1, 6, kernel_size=5), nn.Conv2d(6, 16, kernel_size=5)) (section 2)")
C1_CHANNELS = "C1 does not have 6 feature maps: LeNet-5's first convolution is nn.Conv2d(1, 6, 5) (section 2)"
C3_CHANNELS = "C3 does not have 16 feature maps: LeNet-5's second convolution is nn.Conv2d(6, 16, 5) (section 2)"
FLATTEN_SIZE = ("the first fully connected layer (C5) does not read the flattened S4 output: for a 32x32 image S4 "
                "gives 16 feature maps of 5x5, so C5 is nn.Linear(16 * 5 * 5, 120); lenet_output_shapes computes it "
                "(sections 2 and 3)")
C5_UNITS = "C5 does not have 120 units: LeNet-5's fully connected part is 400 -> 120 -> 84 -> 10 (section 2)"
F6_UNITS = "F6 does not have 84 units: LeNet-5's fully connected part is 400 -> 120 -> 84 -> 10 (section 2)"
NO_OUTPUT = ("the output layer is missing: your network returns F6's 84 numbers; add nn.Linear(84, 10), one logit "
             "per class (section 3)")
NO_ACTIVATION = ("your network has no activation function (no ReLU or tanh after C1, C3, C5 and F6): without one, "
                 "the stack of layers is a linear map (max pooling alone adds almost nothing) (section 3)")
SOFTMAX = ("your forward returns probabilities (softmax): return the logits; nn.CrossEntropyLoss applies "
           "(log-)softmax itself, and applying it twice flattens the gradients (section 3)")
POOL_CEIL = ("your pooling sizes round UP for odd sizes: a 2x2 pooling with stride 2 drops a last row or column that "
             "does not fill a window, H_out = floor((H_in - 2) / 2) + 1 (section 2)")
CONV_PADDED = ("your convolution sizes keep the input size, as if C1 and C3 were padded: LeNet-5's 5x5 convolutions "
               "have no padding, H_out = H_in - 5 + 1 (section 2)")
TRAINS_ANOTHER = ("train_lenet leaves the weights of the network it is given unchanged: it must train the `net` "
                  "argument itself, not a new LeNet5() or a copy, or `net` stays untrained (section 5)")
PLAIN_SGD = ("train_lenet's update equals one step of plain SGD, not Adam: at Adam's learning rate SGD moves the "
             "weights far too little and the network barely learns; use torch.optim.Adam(net.parameters(), lr=lr) "
             "(section 5)")


# ------------------------------------------------------------------------------------------
# The student's network
# ------------------------------------------------------------------------------------------
def check_own_class(ref, what):
    """`ref` must be an instance of the notebook's own LeNet5 class, not someone else's network."""
    if not isinstance(ref, RemoteRef):
        fail(f"{what} is a {type(ref).__name__}, not a network: LeNet5 must be an nn.Module subclass")
    check(ref.type_name == "LeNet5",
          f"{what} is an object of type {ref.type_name}: it must be an instance of the LeNet5 class "
          f"defined in your notebook (class LeNet5(nn.Module))")


def new_net(student):
    """A fresh LeNet5() from the student's kernel, in eval mode."""
    net = student.function("LeNet5", timeout=30, forbid_calls=READY_MADE)()
    check_own_class(net, "LeNet5()")
    net.method("eval")()
    return net


def forward(net, X, what):
    """The network's output on X (called in the student's kernel), checked to be an (N, 10) finite tensor."""
    try:
        Y = net.method("__call__", timeout=60, forbid_calls=READY_MADE)(X)
    except StudentError as e:
        if "shapes cannot be multiplied" in str(e.error_message):
            named(f"{what}: forward failed ({e.type_name}: {str(e.error_message)[:200]})", FLATTEN_SIZE)
        raise
    if not isinstance(Y, torch.Tensor):
        kind = Y.type_name if isinstance(Y, RemoteRef) else type(Y).__name__
        fail(f"{what}: forward returned a {kind}, expected a torch.Tensor")
    if tuple(Y.shape) == (len(X), 84):
        named(f"{what}: wrong output shape: got {tuple(Y.shape)}", NO_OUTPUT)
    check(tuple(Y.shape) == (len(X), NUM_CLASSES), f"{what}: wrong output shape: got {tuple(Y.shape)}")
    check(bool(torch.isfinite(Y).all()), f"{what}: the output is not finite (NaN or inf)")
    return Y.detach().double()


def check_uses_input(Y, what):
    """Different images must give different outputs: a network that returns a constant earns nothing."""
    check(float((Y - Y[:1]).abs().max()) > 1e-6,
          f"{what}: every image gives the same output; the output must be computed from the input")


def check_deterministic(net, X, Y, what):
    """In eval mode the same input must give the same output: the property tests below rely on it,
    and a network that adds noise could pass them by chance (randomness is not non-linearity)."""
    again = forward(net, X, what)
    check(torch.allclose(again, Y, rtol=1e-6, atol=1e-7),
          f"{what}: the same images gave different outputs twice in evaluation mode; after net.eval() the "
          f"network must be a fixed function of its input (no random noise, dropout only in training mode)")


def check_uses_parameters(student):
    """Two LeNet5() built after different torch seeds must compute different functions: the
    output must come from the network's own (randomly initialised) parameters."""
    torch_module = student.get("__builtins__").attr("__import__")("torch")
    X = randn(4, 1, 32, 32, seed=11)
    outputs = []
    for seed in (1, 2):
        torch_module.method("manual_seed")(seed)
        outputs.append(forward(new_net(student), X, f"LeNet5 built after torch.manual_seed({seed})"))
    check(not torch.allclose(outputs[0], outputs[1], rtol=1e-6, atol=1e-7),
          "two LeNet5() with different random initialisations give the same outputs: forward must compute the "
          "output with the network's layers (their weights), not without them")


def param_shapes(state):
    return Counter(tuple(t.shape) for t in state.values() if isinstance(t, torch.Tensor))


def shape_mistake(shapes: Counter) -> str | None:
    """Which layer of the table a wrong set of parameter shapes gets wrong (None if it is not recognised)."""
    convs = [s for s in shapes if len(s) == 4]
    linears = [s for s in shapes if len(s) == 2]
    c1 = [s for s in convs if s[1] == 1]
    c3 = [s for s in convs if c1 and s[1] == c1[0][0]]
    if any(s[2:] != (5, 5) for s in c1 + c3):
        return KERNEL_SIZE
    if c1 and c1[0][0] != 6:
        return C1_CHANNELS
    if c3 and c3[0][0] != 16:
        return C3_CHANNELS
    c5_conv = [s for s in convs if c3 and s[1] == c3[0][0]]
    if c5_conv:
        c5_units = c5_conv[0][0]
    else:
        fed_by_convs = [s for s in linears if not any(t[0] == s[1] for t in linears)]   # reads the flattened S4
        if len(fed_by_convs) != 1:
            return None
        if fed_by_convs[0][1] != 16 * 5 * 5:
            return FLATTEN_SIZE
        c5_units = fed_by_convs[0][0]
    if c5_units != 120:
        return C5_UNITS
    f6 = [s for s in linears if s[1] == c5_units]
    if f6 and f6[0][0] != 84:
        return F6_UNITS
    if not any(s[0] == NUM_CLASSES for s in linears) and any(s[0] == 84 for s in linears):
        return NO_OUTPUT
    return None


def check_lenet_shapes(state, what):
    """The parameter shapes must be LeNet-5's (as a multiset); the message names only what was found."""
    shapes = param_shapes(state)
    if shapes in LENET_SHAPES:
        return
    mistake = shape_mistake(shapes)
    if mistake:
        named(f"{what}: its parameters do not match the layer table", mistake)
    unexpected = sorted({s for s in shapes if s not in ALL_SHAPES})
    if unexpected:
        shown = ", ".join(str(s) for s in unexpected[:6])
        fail(f"{what}: its parameters do not match the layer table; tensors of shape {shown} belong to no "
             f"LeNet-5 layer. Check each layer's number of channels or units and its kernel size.")
    total = sum(math.prod(s) * n for s, n in shapes.items())
    fail(f"{what}: its parameters do not match the layer table ({sum(shapes.values())} weight and bias "
         f"tensors, {total:,} numbers): is a layer or a bias missing, or one there twice?")


# ------------------------------------------------------------------ LeNet5 (4 points)
@points(1, cell="test_LeNet5")
def test_forward_shape(student):
    """LeNet5 maps a batch (N, 1, 32, 32) to logits (N, 10) for several batch sizes"""
    net = new_net(student)
    for N, seed in [(1, 1), (3, 2), (16, 3)]:
        Y = forward(net, randn(N, 1, 32, 32, seed=seed), f"LeNet5 on a ({N}, 1, 32, 32) batch")
    check_uses_input(Y, "LeNet5 on a (16, 1, 32, 32) batch")


@points(1, cell="test_LeNet5")
def test_layer_sizes(student):
    """LeNet5's layers have the table's sizes: 6 and 16 kernels of 5x5, then 120, 84 and 10 units"""
    net = new_net(student)
    check_lenet_shapes(net.state_dict(), "LeNet5")
    check_uses_parameters(student)


def centred(Y):
    """Row-centred outputs; logs first when the rows are probabilities (softmax)."""
    if bool((Y >= 0).all()) and torch.allclose(Y.sum(1), torch.ones(len(Y), dtype=Y.dtype), atol=1e-4):
        Y = Y.clamp_min(1e-30).log()
    return Y - Y.mean(dim=1, keepdim=True)


def relative(diff, *parts):
    scale = sum(float(p.norm()) for p in parts) + 1e-12
    return float(diff.norm()) / scale


@points(1, cell="test_LeNet5")
def test_not_linear(student):
    """LeNet5 is not a linear function of its input: it has non-linear activations"""
    net = new_net(student)
    f = lambda X, what: centred(forward(net, X, what))                      # noqa: E731
    a, b = randn(8, 1, 32, 32, seed=4), randn(8, 1, 32, 32, seed=5)
    zero = torch.zeros(8, 1, 32, 32)
    fa, fb, fab, f0 = (f(a, "LeNet5 on random images"), f(b, "LeNet5 on random images"),
                       f(a + b, "LeNet5 on random images"), f(zero, "LeNet5 on blank images"))
    check_deterministic(net, a, forward(net, a, "LeNet5 on random images"), "LeNet5 on random images")
    check_uses_input(fa, "LeNet5 on random images")
    affine = relative(fab - fa - fb + f0, fa, fb)
    check(affine > 1e-3, "LeNet5 is a linear (affine) function of its input: f(a + b) = f(a) + f(b) - f(0): "
                         + NO_ACTIVATION, mistake=NO_ACTIVATION)
    x1, x2, c = randn(8, 1, 32, 32, seed=6), randn(8, 1, 32, 32, seed=7), 2.0
    d1 = f(x1 + c, "LeNet5 on brightened images") - f(x1, "LeNet5 on random images")
    d2 = f(x2 + c, "LeNet5 on brightened images") - f(x2, "LeNet5 on random images")
    shift = relative(d1 - d2, d1, d2)
    check(shift > 1e-3, "LeNet5: brightening every pixel changes the output by the same amount for every image, so "
                        "its only non-linearity is the pooling: " + NO_ACTIVATION, mistake=NO_ACTIVATION)


@points(1, cell="test_LeNet5")
def test_returns_logits(student):
    """LeNet5.forward returns logits, not probabilities (no softmax: nn.CrossEntropyLoss applies it)"""
    net = new_net(student)
    Y = forward(net, 3 * randn(16, 1, 32, 32, seed=8), "LeNet5 on random images")
    check_uses_input(Y, "LeNet5 on random images")
    probabilities = bool(((Y >= 0) & (Y <= 1)).all()) and torch.allclose(
        Y.sum(1), torch.ones(len(Y), dtype=Y.dtype), atol=1e-4)
    check(not probabilities, "LeNet5's outputs are probabilities (every row is in [0, 1] and sums to 1): " + SOFTMAX,
          mistake=SOFTMAX)


# ------------------------------------------------------------------ lenet_output_shapes (2 points)
def reference_shapes(input_shape, ceil_mode=False, padding=0):
    """Each layer's output shape, from PyTorch's own layers on the meta device (no computation).

    ceil_mode=True / padding=2: the shapes of the known mistakes (pooling rounding up, padded convolutions)."""
    N, C, H, W = input_shape
    X = torch.empty(N, C, H, W, device="meta")
    shapes = []
    for layer in [nn.Conv2d(1, 6, 5, padding=padding, device="meta"), nn.MaxPool2d(2, ceil_mode=ceil_mode),
                  nn.Conv2d(6, 16, 5, padding=padding, device="meta"), nn.MaxPool2d(2, ceil_mode=ceil_mode)]:
        X = layer(X)
        shapes.append(tuple(X.shape))
    return shapes + [(N, 120), (N, 84), (N, 10)]


LAYERS = ("C1", "S2", "C3", "S4", "C5", "F6", "output")


def check_shapes(student, input_shape):
    what = f"lenet_output_shapes({input_shape})"
    got = student.function("lenet_output_shapes", forbid=("convolution",), timeout=30)(input_shape)
    if not isinstance(got, (list, tuple)):
        kind = got.type_name if isinstance(got, RemoteRef) else type(got).__name__
        fail(f"{what}: expected a list of 7 shapes, got a {kind}")
    check(len(got) == len(LAYERS), f"{what}: expected a list of 7 shapes (C1 to the output), got {len(got)}")
    for layer, shape in zip(LAYERS, got):
        ok_type = isinstance(shape, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in shape)
        check(ok_type, f"{what}: the shape of {layer} should be a tuple of ints, got {shape!r:.80}")
    got = [tuple(shape) for shape in got]
    expected = reference_shapes(input_shape)
    wrong = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
    if wrong is None:
        return
    message = f"{what}: wrong shape for {LAYERS[wrong]}: got {got[wrong]}"
    for mistake, explain in [(reference_shapes(input_shape, ceil_mode=True), POOL_CEIL),
                             (reference_shapes(input_shape, padding=2), CONV_PADDED)]:
        if got == mistake:
            named(message, explain)
    fail(message)


@points(1, cell="test_lenet_output_shapes")
def test_shapes_32(student):
    """lenet_output_shapes for 32x32 inputs (the paper's table) and several batch sizes"""
    for shape in [(1, 1, 32, 32), (5, 1, 32, 32)]:
        check_shapes(student, shape)


@points(1, cell="test_lenet_output_shapes")
def test_shapes_other_sizes(student):
    """lenet_output_shapes for other input sizes: 28x28, non-square, and odd sizes where pooling rounds down"""
    for shape in [(2, 1, 28, 28), (3, 1, 36, 44), (1, 1, 33, 35), (4, 1, 64, 48)]:
        check_shapes(student, shape)


# ------------------------------------------------------------------ train_lenet (3 points)
def grading_seed() -> int:
    """A seed drawn for this grading from the operating system: the kernel cannot know or predict it."""
    return int.from_bytes(os.urandom(8), "little")


def data_settings(student):
    """(name, image size, mean, std) of the data the notebook's set-up cell loaded (`info`), or the
    release's settings (mean and std None: the grader's own statistics) when `info` is missing or odd."""
    name, size, mean, std = "digits", 32, None, None
    try:                                    # what the notebook's data cell loaded (info = data.info)
        info = student.get("info")
        name, shape = info.attr("name"), info.attr("shape")
        mean, std = tuple(info.attr("mean")), tuple(info.attr("std"))
        size = int(shape[-1])
    except Exception:                       # no usable `info`: the release's settings
        name, size, mean, std = "digits", 32, None, None
    if name not in ("digits", "mnist") or not 16 <= size <= 64:
        name, size, mean, std = "digits", 32, None, None
    if mean is None or len(mean) != 1 or len(std) != 1 or not all(
            isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in (*mean, *std)):
        mean = std = None
    return name, size, mean, std


def distort(images, seed, copies):
    """`copies` distorted versions of each uint8 image (M, 1, S, S): a random rotation (up to 8
    degrees), scale (0.95-1.05) and shift (up to 6% of the side) by bilinear resampling, then
    Gaussian pixel noise (std 0.05 of the pixel range). Returns floats in [0, 1], (copies * M, 1, S, S).

    Mild on purpose. Measured once on the offline digits (seed 0): the reference's training scores 93%
    on them (95.5% on the raw exam images); the same LeNet trained on the 180 raw exam images alone
    82% after 10 epochs and 89% after 25 (memorising the exam buys little, but a network that learned
    digits from it passes); an untrained one about 10%."""
    g = torch.Generator().manual_seed(seed)
    X = images.float().div(255).repeat(copies, 1, 1, 1)
    n = len(X)
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(8)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.05
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos() / scale, -angle.sin() / scale
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin() / scale, angle.cos() / scale
    theta[:, :, 2] = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.12      # grid units: 2 = the whole side
    X = F.grid_sample(X, F.affine_grid(theta, list(X.shape), align_corners=False), align_corners=False)
    return (X + 0.05 * torch.randn(X.shape, generator=g)).clamp(0, 1)


def exam_set(student, seed=None):
    """The grader's exam, made here and never sent to the kernel: the odd-numbered images of the
    data set's test split (which no cell of the notebook reads), each distorted EXAM_COPIES times
    with a seed drawn for this grading, normalised like the kernel's data.

    The raw digits ship with scikit-learn, so the kernel can read them; the distortions it cannot
    know, so the exam's images exist only in this process. Returns X (M, 1, S, S) float32 and y (M,) int64."""
    from dlcourse.data import get_datasets

    name, size, mean, std = data_settings(student)
    _, _, test_ds, grader_info = get_datasets(name, image_size=size, offline=(name == "digits"), download=False)
    if mean is None:
        mean, std = grader_info.mean, grader_info.std
    images, labels = test_ds.images[1::2], test_ds.labels[1::2]             # (M, 1, S, S) uint8, (M,)
    X = (distort(images, grading_seed() if seed is None else seed, EXAM_COPIES) - mean[0]) / std[0]
    return X, labels.long().repeat(EXAM_COPIES)


# ------------------------------------------------------------------ the grader's own LeNet-5
ACTIVATIONS = {"ReLU": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "leaky ReLU": F.leaky_relu,
               "ELU": F.elu, "GELU": F.gelu, "SiLU": F.silu}
POOLINGS = {"max": F.max_pool2d, "average": F.avg_pool2d}


def lenet_parameters(state):
    """The student's LeNet-5 parameters by layer, found by their shapes (each shape occurs once in
    LeNet-5), as float32: {"C1": (weight, bias), ..., "output": (weight, bias)}."""
    by_shape = {tuple(t.shape): t.detach().float() for t in state.values() if isinstance(t, torch.Tensor)}
    c5 = by_shape.get((120, 400), by_shape.get((120, 16, 5, 5)))
    return {"C1": (by_shape[(6, 1, 5, 5)], by_shape[(6,)]), "C3": (by_shape[(16, 6, 5, 5)], by_shape[(16,)]),
            "C5": (c5.reshape(120, 400), by_shape[(120,)]), "F6": (by_shape[(84, 120)], by_shape[(84,)]),
            "output": (by_shape[(10, 84)], by_shape[(10,)])}


def lenet_forward(params, X, activation, pooling, pool_first=False):
    """LeNet-5 computed here, with the student's parameters: convolution, activation and pooling (or
    pooling, then activation) twice, then the three linear layers with the activation between them."""
    act, pool = ACTIVATIONS[activation], POOLINGS[pooling]
    h = X.float()
    for layer in ("C1", "C3"):
        h = F.conv2d(h, *params[layer])                                         # (N, 6, 28, 28), (N, 16, 10, 10)
        h = act(pool(h, 2)) if pool_first else pool(act(h), 2)                   # (N, 6, 14, 14), (N, 16, 5, 5)
    h = act(F.linear(h.flatten(1), *params["C5"]))                              # (N, 120)
    h = act(F.linear(h, *params["F6"]))                                         # (N, 84)
    return F.linear(h, *params["output"])                                       # (N, 10) logits


def matching_lenet(params, X, Y):
    """The variant (activation, pooling, order) of the grader's LeNet-5 that computes the student's
    outputs Y on X with the student's parameters, or None."""
    target = centred(Y.double())
    for activation in ACTIVATIONS:
        for pooling in POOLINGS:
            for pool_first in (False, True):
                with torch.no_grad():
                    mine = centred(lenet_forward(params, X, activation, pooling, pool_first).double())
                if relative(mine - target, mine, target) < 1e-4:
                    return activation, pooling, pool_first
    return None


@points(2, cell="test_train_lenet")
def test_exam_accuracy(student):
    """the trained `net`'s weights, run in the grader's own LeNet-5, classify at least 85% of the grader's held-out digits (digits the notebook never reads, moved, rotated and noised at random for this grading)"""
    new_net(student)                # the class itself is built without a ready-made network
    net = student.get("net")
    check_own_class(net, "`net`")
    state = net.state_dict()        # nn.Module.state_dict, not an override of the notebook's class
    check_lenet_shapes(state, "`net`")
    params = lenet_parameters(state)
    check(all(bool(torch.isfinite(t).all()) for pair in params.values() for t in pair),
          "`net`'s parameters are not finite (NaN or inf): did the training diverge?")
    net.method("eval")()
    probe = randn(8, 1, 32, 32, seed=21)
    variant = matching_lenet(params, probe, forward(net, probe, "`net` on random images"))
    check(variant is not None,
          "`net` does not compute LeNet-5 with its own parameters: the grader runs your trained weights in its own "
          "LeNet-5 (convolution, activation and 2x2 pooling twice, then 400 -> 120 -> 84 -> 10 with the activation "
          "between; ReLU, tanh, sigmoid, leaky ReLU, ELU, GELU or SiLU; max or average pooling), and on random "
          "images none of these gives your network's outputs. Does forward use every layer once, in the table's "
          "order, and flatten S4 with torch.flatten(X, 1)?")
    X, y = exam_set(student)
    with torch.no_grad():
        acc = float((lenet_forward(params, X, *variant).argmax(dim=1) == y).double().mean())
    if acc >= ACCURACY_THRESHOLD:
        return
    what = (f"the grader ran your trained `net`'s weights in its own LeNet-5 on {len(y)} held-out digits (test "
            f"digits the notebook never reads, each moved, rotated and noised at random for this grading) and "
            f"{acc:.1%} came out right; a LeNet-5 trained as in section 5 gets well over {ACCURACY_THRESHOLD:.0%} "
            f"of them, chance is {1 / NUM_CLASSES:.0%}")
    if acc <= 2 / NUM_CLASSES:
        meaning = "that is about chance level: `net` has not learned at all"
        question = ("Does the training cell run to the end with the default run size, and does train_lenet train "
                    "the network it is given?")
    else:
        meaning = "`net` learned something, but far less than LeNet-5 learns from the training digits"
        question = "Too few epochs, or an optimizer or learning rate that learns too slowly?"
    diagnosis = train_lenet_mistake(student)
    if diagnosis:
        named(f"{what}; {meaning}", diagnosis)
    fail(f"{what}; {meaning}. {question}")


def toy_problem(num_batches, seed, permutation=None):
    """Batches of 32 images (32, 1, 32, 32) whose class is a bright 8x8 block at one of 10 places;
    with `permutation`, the block at place c has label permutation[c]."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(num_batches):
        y = torch.randint(0, NUM_CLASSES, (32,), generator=g)
        X = 0.3 * torch.randn(32, 1, 32, 32, generator=g)
        for i, c in enumerate(y.tolist()):
            r, k = divmod(c, 5)
            X[i, 0, 4 + 14 * r: 12 + 14 * r, 1 + 6 * k: 7 + 6 * k] += 2.0
        batches.append((X, y if permutation is None else permutation[y]))
    return batches


def permuted_problem(seed):
    """A small problem of this grading: toy_problem with the class labels permuted at random.
    Returns train batches, validation batches (both for the kernel) and test batches (the grader's only)."""
    permutation = torch.randperm(NUM_CLASSES, generator=torch.Generator().manual_seed(seed))
    return [toy_problem(n, (seed + i) % 2**62, permutation) for i, n in enumerate((6, 2, 8))]


def small_net(student):
    """nn.Sequential(nn.Flatten(), nn.Linear(1024, 10)) built in the student's kernel from torch.nn:
    train_lenet is tested on its own, whatever the student's LeNet5 does."""
    torch_nn = student.get("nn")
    check(isinstance(torch_nn, RemoteRef) and torch_nn.type_name == "module" and torch_nn.attr("__name__") == "torch.nn",
          "the notebook's `nn` is not torch.nn any more: do not reassign the names imported in the set-up cell")
    return torch_nn.method("Sequential")(torch_nn.method("Flatten")(), torch_nn.method("Linear")(1024, NUM_CLASSES))


def one_step(state, X, y, lr, optimizer):
    """The weights of Flatten + Linear(1024, 10) from `state` after one step of `optimizer` on (X, y)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(1024, NUM_CLASSES)).double()
    net.load_state_dict({k: v.double() for k, v in state.items()})
    opt = optimizer(net.parameters(), lr=lr)
    F.cross_entropy(net(X.double()), y).backward()
    opt.step()
    return {k: v.detach() for k, v in net.state_dict().items()}


def train_lenet_mistake(student):
    """Why train_lenet does not train, from one epoch of one batch on a small network (None: not recognised).

    The grader replays that epoch itself from the same weights: one step of Adam and one of plain SGD."""
    try:
        train = student.function("train_lenet", timeout=120)
        net = small_net(student)
        before = net.state_dict()
        X, y = toy_problem(1, seed=11)[0]
        train(net, [(X, y)], [(X, y)], 1, 1e-3, "cpu")
        after = net.state_dict()
    except Exception:           # anything the student's code does here only loses the diagnosis
        return None
    shapes = {"1.weight": (NUM_CLASSES, 1024), "1.bias": (NUM_CLASSES,)}
    for state in (before, after):
        if not (isinstance(state, dict) and state.keys() == shapes.keys()
                and all(isinstance(state[k], torch.Tensor) and tuple(state[k].shape) == shapes[k]
                        and state[k].is_floating_point() and bool(torch.isfinite(state[k]).all()) for k in shapes)):
            return None
    if all(torch.equal(before[k], after[k]) for k in before):
        return TRAINS_ANOTHER

    def same_update(expected):        # the student's change of every weight is the replayed one, up to 5 %
        moved = torch.cat([(after[k].double() - before[k].double()).flatten() for k in expected])
        step = torch.cat([(expected[k] - before[k].double()).flatten() for k in expected])
        return float((moved - step).norm()) <= 0.05 * float(step.norm()) + 1e-12
    if (not same_update(one_step(before, X, y, 1e-3, torch.optim.Adam))
            and same_update(one_step(before, X, y, 1e-3, torch.optim.SGD))):
        return PLAIN_SGD
    return None


@points(1, cell="test_train_lenet")
def test_train_lenet_uses_its_arguments(student):
    """train_lenet trains the network it is given on the data it is given (a small problem whose labels are permuted at random for this grading), for num_epochs epochs at learning rate lr, and returns fit's History"""
    train = student.function("train_lenet", timeout=120)
    train_iter, val_iter, test_iter = permuted_problem(grading_seed() % 2**62)

    net = small_net(student)
    before = net.state_dict()
    history = train(net, train_iter, val_iter, 3, 0.01, "cpu")
    if not isinstance(history, dict):
        kind = history.type_name if isinstance(history, RemoteRef) else type(history).__name__
        fail(f"train_lenet returned a {kind}; expected the History that dl.fit returns")
    losses, val_accs = history.get("train_loss"), history.get("val_acc")
    check(isinstance(losses, list) and len(losses) == 3,
          f"train_lenet(net, ..., num_epochs=3, ...) returned a history with "
          f"{len(losses) if isinstance(losses, list) else 'no'} epochs of training loss")
    check(isinstance(val_accs, list) and len(val_accs) == 3,
          "train_lenet's history has no validation accuracy for every epoch: pass val_iter to dl.fit")
    after = net.state_dict()
    check(isinstance(after, dict) and after.keys() == before.keys(),
          "after train_lenet the network's parameters are not those of the network it was given")
    check(any(not torch.equal(before[k], after[k]) for k in before),
          f"train_lenet(net, ...) on a small network: {TRAINS_ANOTHER}", mistake=TRAINS_ANOTHER)

    # The trained weights, evaluated HERE on fresh images of the same problem, which the kernel never
    # receives: only training on train_iter (with its permuted labels) fits them; training on the
    # notebook's digits, or not at all, leaves about chance (10%).
    mine = nn.Sequential(nn.Flatten(), nn.Linear(1024, NUM_CLASSES)).double()
    mine.load_state_dict({k: v.double() for k, v in after.items()})
    with torch.no_grad():
        acc = sum(int((mine(X.double()).argmax(1) == y).sum()) for X, y in test_iter) / sum(len(y) for _, y in test_iter)
    check(acc >= SMALL_PROBLEM_THRESHOLD,
          f"after train_lenet(net, train_iter, val_iter, num_epochs=3, lr=0.01, device='cpu') on the grader's small "
          f"problem (ten classes whose labels were shuffled for this grading), the network classifies {acc:.0%} of "
          f"fresh images of that problem correctly (chance: 10%; training on the given batches reaches nearly 100%). "
          f"Does train_lenet train `net` on `train_iter` (not on the notebook's data)?")

    # A learning rate of 1e-7 moves no weight by more than ~1e-6 in 6 steps (Adam's step is about lr per
    # weight, SGD's lr times a gradient below 1); a learning rate fixed inside train_lenet moves them far more.
    slow = small_net(student)
    before = slow.state_dict()
    train(slow, train_iter, val_iter, 1, 1e-7, "cpu")
    after = slow.state_dict()
    moved = max(float((before[k].double() - after[k].double()).abs().max()) for k in before)
    check(moved < 1e-4, "train_lenet with lr=1e-7 still changed the weights a lot: the optimizer must use the "
                        "lr argument")
