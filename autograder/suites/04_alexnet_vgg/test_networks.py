"""Hidden tests of 04_alexnet_vgg, part 2: AlexNet and make_vgg in torchvision's layout.

Oracles (computed here, in the grader)
--------------------------------------
torchvision's own models are the reference: the grader builds them, never the student's kernel
(building them, subclassing them, copying their layers or calling them inside the student's code is
a forbidden use, enforced while the student's code runs: forbid_calls=("torchvision.models",)).
- Keys and shapes: the state_dict keys and tensor shapes of torchvision.models.alexnet and
  vgg11/13/16/19 (+ _bn), built on the "meta" device (shapes only, no memory). The student's
  network is built on the meta device too (`torch.set_default_device("meta")` in the kernel around
  the constructor), so VGG-19's 143 million parameters never exist anywhere; only names and shapes
  come back, as plain data.
- Outputs: the grader makes its own random weights (never torchvision's pretrained ones; nothing is
  downloaded), loads them into the student's network (built on meta, `load_state_dict(assign=True)`)
  and into torchvision's, and compares the outputs on its own inputs. The large fully connected
  weights (up to 4096 x 25088) are sent as strided views of a short random vector
  (w[i, j] = v[i + 3 j]), a few hundred kilobytes instead of 400 MB, which every layer reads like
  any other tensor; a kernel holding VGG-11 twice would be close to its 2 GB limit otherwise.
- Dropout: in train mode, with the same seed in the kernel and in the grader, the student's network
  must give torchvision's output: the same dropout layers, at the same places, draw the same masks.

Known mistakes are named from the keys (a missing ReLU or pooling shifts the positions in an
nn.Sequential; 96 first-layer kernels; dropout after the ReLU; batch norm after the ReLU; 'M'
ignored) or, when the keys are right, from outputs of the reference with one ReLU removed.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torchvision
from torchvision.models import vgg as tv_vgg

from autograder.testing import Mistake, RemoteRef, StudentError, assert_close, check, fail, named, points

ALEX, VGG = "test_AlexNet", "test_make_vgg"
CFGS = {name: tv_vgg.cfgs[letter] for name, letter in [("vgg11", "A"), ("vgg13", "B"), ("vgg16", "D"), ("vgg19", "E")]}
# Every call into the student's network (constructor, state_dict, load_state_dict, train, forward) runs
# with torchvision's models forbidden (the engine's run-time forbid_calls rule): building one, copying
# its layers, subclassing it or delegating to it is caught, whatever name reaches it.
NETWORK_CALLS = {"forbid_calls": ("torchvision.models",)}


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# Reference networks and weights (grader side)
# ------------------------------------------------------------------------------------------
def meta_shapes(build) -> dict:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build().state_dict().items()}


def grader_weights(shapes: dict, seed: int) -> dict:
    """Random weights for these keys: scaled by 1/sqrt(fan-in); big matrices as strided views of a short vector;
    batch norm statistics that make every channel different (running_var > 0)."""
    g = gen(seed)
    sd = {}
    for key, shape in shapes.items():
        numel = int(torch.tensor(shape).prod()) if shape else 1
        fan_in = max(1, numel // shape[0]) if shape else 1
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            sd[key] = 0.2 * torch.randn(shape, generator=g)
        elif len(shape) >= 2 and numel > 1_000_000:
            strides = [1, 3, 7, 13][:len(shape)]
            length = 1 + sum((n - 1) * s for n, s in zip(shape, strides))
            base = torch.randn(length, generator=g) / fan_in ** 0.5
            sd[key] = base.as_strided(shape, strides)
        else:
            scale = 1 / fan_in ** 0.5 if len(shape) >= 2 else 0.1
            sd[key] = scale * torch.randn(shape, generator=g) + (1.0 if key.endswith(".weight") and len(shape) == 1
                                                                 else 0.0)
    return sd


def reference_net(build, weights, train=False):
    with torch.device("meta"):
        net = build()
    net.load_state_dict(weights, assign=True)
    return net.train(train)


def reference_output(net, X, seed=None):
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        return net(X).double()


def without_relu(net, index):
    """`net` with the index-th ReLU (in module order) replaced by the identity; returns the ReLU's name."""
    relus = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.ReLU)]
    name = relus[index][0]
    parent_name, _, child = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child, nn.Identity())
    return name


def relu_mistakes(build, weights, X, what_layer):
    """Outputs of the reference with one ReLU removed (or all), each a Mistake naming the layer."""
    with torch.device("meta"):
        count = sum(isinstance(m, nn.ReLU) for m in build().modules())
    out = []
    for i in range(count):
        net = reference_net(build, weights)
        name = without_relu(net, i)
        out.append(Mistake(reference_output(net, X),
                           f"your output equals the reference network WITHOUT the ReLU at {name} "
                           f"({what_layer(name)}): every convolution and every hidden fully connected layer is "
                           f"followed by a ReLU"))
    net = reference_net(build, weights)
    for i in range(count):
        without_relu(net, 0)
    out.append(Mistake(reference_output(net, X),
                       "your output equals the reference network without ANY ReLU: the network is then one "
                       "linear map"))
    return out


# ------------------------------------------------------------------------------------------
# The student's network (kernel side)
# ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def on_meta(student):
    """Everything the student's constructor creates lives on the meta device (shapes, no memory)."""
    torch_module = student.get("torch")
    check(isinstance(torch_module, RemoteRef) and torch_module.type_name == "module",
          "the notebook's `torch` is not the torch module any more: do not reassign the names imported in the "
          "set-up cell")
    torch_module.method("set_default_device")("meta")
    try:
        yield
    finally:
        torch_module.method("set_default_device")(None)


def build_student(student, fn_name, what, **kwargs):
    """The student's network, built on the meta device."""
    with on_meta(student):
        net = student.function(fn_name, timeout=60, **NETWORK_CALLS)(**kwargs)
    if not isinstance(net, RemoteRef):
        fail(f"{what} returned a {type(net).__name__}, not a network (an nn.Module)")
    return net


def student_shapes(net, what) -> dict:
    sd = net.method("state_dict", timeout=60, **NETWORK_CALLS)()
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        fail(f"{what}.state_dict() did not return a dictionary of tensors")
    return {str(k): tuple(v.shape) for k, v in sd.items()}


def sequential_positions(shapes: dict, prefix: str) -> list[int]:
    """Positions (in the nn.Sequential `prefix`) that hold a weight: '3' for 'features.3.weight'."""
    return sorted({int(k.split(".")[1]) for k in shapes if k.startswith(prefix + ".") and k.split(".")[1].isdigit()})


def describe_difference(got: dict, want: dict, what: str) -> str:
    """A message that names what differs without printing the expected keys in full."""
    missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    for part in ("features", "classifier"):
        g, w = sequential_positions(got, part), sequential_positions(want, part)
        if g != w and g and w and len(g) == len(w):
            return (f"{what}: the layers with weights sit at positions {g} of `{part}`, which does not match the "
                    f"layout: in an nn.Sequential every layer takes a position (also ReLU, pooling, dropout); is one "
                    f"missing, added or in another order?")
    if missing or unexpected:
        return (f"{what}: its state_dict has {len(unexpected)} unexpected key(s) (e.g. {unexpected[:3]}) and lacks "
                f"{len(missing)} (e.g. {missing[:3]})")
    wrong = [k for k in want if got[k] != want[k]]
    return f"{what}: wrong shapes: {', '.join(f'{k} {got[k]}' for k in wrong[:4])}"


def check_shapes(got: dict, want: dict, what: str, mistakes=()):
    if got == want:
        return
    for m in mistakes:
        if got == m.output:
            named(what, m.explain)
    fail(describe_difference(got, want, what))


def student_output(net, weights, X, what, train=False, seed=None, student=None):
    """Load the grader's weights into the student's (meta) network and run it on X."""
    try:
        net.method("load_state_dict", timeout=60, **NETWORK_CALLS)(weights, assign=True)
    except StudentError as e:
        fail(f"{what}: loading the grader's weights failed ({e.type_name}: {e.error_message[:300]})")
    net.method("train", **NETWORK_CALLS)(train)
    if seed is not None:
        student.get("torch").method("manual_seed")(seed)
    Y = net.method("__call__", timeout=60, **NETWORK_CALLS)(X)
    if not isinstance(Y, torch.Tensor):
        kind = Y.type_name if isinstance(Y, RemoteRef) else type(Y).__name__
        fail(f"{what}: forward returned a {kind}, expected a torch.Tensor")
    return Y.detach().double()


# ------------------------------------------------------------------------------------------
# AlexNet (4 points)
# ------------------------------------------------------------------------------------------
def alexnet_mistakes(num_classes):
    """Key/shape dictionaries of the typical wrong layouts."""
    want = meta_shapes(lambda: torchvision.models.alexnet(num_classes=num_classes))
    paper = dict(want)
    paper["features.0.weight"], paper["features.0.bias"] = (96, 3, 11, 11), (96,)
    paper["features.3.weight"] = (192, 96, 5, 5)
    after_relu = {}
    for k, v in want.items():                 # classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
        moved = {"classifier.1": "classifier.0", "classifier.4": "classifier.3"}
        prefix = ".".join(k.split(".")[:2])
        after_relu[k.replace(prefix, moved[prefix]) if prefix in moved else k] = v
    return [
        Mistake(paper, "your first convolution has the paper's 96 kernels (48 per GPU); torchvision's single-stream "
                       "AlexNet has 64 (and conv2 reads 64 channels), section 3"),
        Mistake(after_relu, "your classifier puts dropout after each ReLU (Linear, ReLU, Dropout, ...); torchvision "
                            "applies it to the INPUTS of the first two fully connected layers (Dropout, Linear, "
                            "ReLU, ...), as the paper does"),
    ]


def alexnet_layer(name):
    return {"features.1": "after conv1", "features.4": "after conv2", "features.7": "after conv3",
            "features.9": "after conv4", "features.11": "after conv5", "classifier.2": "after fc6",
            "classifier.5": "after fc7"}.get(name, name)


@points(1, cell=ALEX)
def test_alexnet_keys_and_shapes(student):
    """AlexNet()'s and AlexNet(num_classes=10)'s state_dict keys and shapes are torchvision's alexnet's"""
    for kwargs in ({}, {"num_classes": 10}):
        what = f"AlexNet({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        net = build_student(student, "AlexNet", what, **kwargs)
        want = meta_shapes(lambda: torchvision.models.alexnet(**kwargs))
        check_shapes(student_shapes(net, what), want, what, alexnet_mistakes(kwargs.get("num_classes", 1000)))


def check_alexnet_output(student, num_classes, X, seed, train=False):
    what = f"AlexNet(num_classes={num_classes}) with the grader's weights on a {tuple(X.shape)} input" + \
           (" in train mode (dropout on)" if train else "")
    build = lambda: torchvision.models.alexnet(num_classes=num_classes)          # noqa: E731
    weights = grader_weights(meta_shapes(build), seed)
    net = build_student(student, "AlexNet", f"AlexNet(num_classes={num_classes})", num_classes=num_classes)
    got = student_output(net, weights, X, what, train=train, seed=seed if train else None, student=student)
    expected = reference_output(reference_net(build, weights, train), X, seed=seed if train else None)
    try:
        assert_close(got, expected, what, rtol=1e-4, atol=1e-4)
    except AssertionError:
        if train:
            raise
        assert_close(got, expected, what, rtol=1e-4, atol=1e-4,
                     mistakes=relu_mistakes(build, weights, X, alexnet_layer))


@points(1, cell=ALEX)
def test_alexnet_same_outputs(student):
    """AlexNet loads the grader's weights and gives torchvision's outputs (eval mode, 64x64 images)"""
    check_alexnet_output(student, 10, torch.randn(2, 3, 64, 64, generator=gen(70)), seed=71)


@points(1, cell=ALEX)
def test_alexnet_other_sizes(student):
    """AlexNet gives torchvision's outputs for 224x224 images with 1000 classes and for 96x80 images with 7"""
    check_alexnet_output(student, 1000, torch.randn(1, 3, 224, 224, generator=gen(72)), seed=73)
    check_alexnet_output(student, 7, torch.randn(2, 3, 96, 80, generator=gen(74)), seed=75)


@points(1, cell=ALEX)
def test_alexnet_dropout(student):
    """in train mode AlexNet applies torchvision's dropout: same places, same p (same seed, same output)"""
    X = torch.randn(3, 3, 64, 64, generator=gen(76))
    check_alexnet_output(student, 10, X, seed=77, train=True)


# ------------------------------------------------------------------------------------------
# make_vgg (5 points)
# ------------------------------------------------------------------------------------------
def vgg_shapes(cfg, batch_norm, num_classes=1000, order=("conv", "bn", "relu"), pool=True, relu=True):
    """Keys and shapes of a VGG built from `cfg` with a given layer order (the reference and its variants)."""
    shapes, i, channels = {}, 0, 3
    for v in cfg:
        if v == "M":
            i += 1 if pool else 0
            continue
        for kind in order:
            if kind == "conv":
                shapes[f"features.{i}.weight"], shapes[f"features.{i}.bias"] = (v, channels, 3, 3), (v,)
            elif kind == "bn":
                if not batch_norm:
                    continue
                for name in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"features.{i}.{name}"] = (v,)
                shapes[f"features.{i}.num_batches_tracked"] = ()
            elif kind == "relu" and not relu:
                continue
            i += 1
        channels = v
    for j, (n_in, n_out) in zip((0, 3, 6), [(channels * 49, 4096), (4096, 4096), (4096, num_classes)]):
        shapes[f"classifier.{j}.weight"], shapes[f"classifier.{j}.bias"] = (n_out, n_in), (n_out,)
    return shapes


def vgg_mistakes(cfg, batch_norm, num_classes=1000):
    out = [Mistake(vgg_shapes(cfg, batch_norm, num_classes, pool=False),
                   "your features has no max pooling layers: every 'M' of the configuration is a 2x2 max pooling "
                   "with stride 2, and it takes a position in the nn.Sequential"),
           Mistake(vgg_shapes(cfg, batch_norm, num_classes, relu=False),
                   "your features has no ReLU after the convolutions: every convolution (and its batch norm) is "
                   "followed by a ReLU, which takes a position in the nn.Sequential")]
    if batch_norm:
        out.append(Mistake(vgg_shapes(cfg, batch_norm, num_classes, order=("conv", "relu", "bn")),
                           "your batch norm comes after the ReLU; VGG (and torchvision) normalise the convolution's "
                           "output BEFORE the ReLU: Conv2d, BatchNorm2d, ReLU"))
    return out


def check_vgg_keys(student, name, batch_norm):
    tv_name = name + ("_bn" if batch_norm else "")
    what = f"make_vgg(<{tv_name}'s configuration>, batch_norm={batch_norm})"
    net = build_student(student, "make_vgg", what, cfg=list(CFGS[name]), batch_norm=batch_norm)
    want = meta_shapes(getattr(torchvision.models, tv_name))
    assert vgg_shapes(CFGS[name], batch_norm) == want, "the suite's own VGG layout disagrees with torchvision"
    check_shapes(student_shapes(net, what), want, what, vgg_mistakes(CFGS[name], batch_norm))


@points(1, cell=VGG)
def test_vgg_keys_and_shapes(student):
    """make_vgg builds the state_dict keys and shapes of torchvision's vgg11, vgg13, vgg16 and vgg19"""
    for name in CFGS:
        check_vgg_keys(student, name, False)


@points(1, cell=VGG)
def test_vgg_bn_keys_and_shapes(student):
    """make_vgg with batch_norm=True builds the keys and shapes of vgg11_bn, vgg13_bn, vgg16_bn and vgg19_bn"""
    for name in CFGS:
        check_vgg_keys(student, name, True)


def vgg_conv_layer(name):
    return f"after the convolution before {name}" if name.startswith("features") else f"in the classifier ({name})"


def custom_vgg(cfg, batch_norm, num_classes):
    """torchvision's VGG for any configuration: its first fully connected layer sized for the last width."""
    net = tv_vgg.VGG(tv_vgg.make_layers(cfg, batch_norm=batch_norm), num_classes=num_classes, init_weights=False)
    last = [v for v in cfg if v != "M"][-1]
    net.classifier[0] = nn.Linear(last * 49, 4096)
    return net


def check_vgg_output(student, cfg, batch_norm, num_classes, X, seed, label):
    what = f"make_vgg({label}, batch_norm={batch_norm}, num_classes={num_classes}) with the grader's weights on a " \
           f"{tuple(X.shape)} input"
    build = lambda: custom_vgg(cfg, batch_norm, num_classes)                     # noqa: E731
    weights = grader_weights(meta_shapes(build), seed)
    net = build_student(student, "make_vgg", f"make_vgg({label}, batch_norm={batch_norm})", cfg=list(cfg),
                        batch_norm=batch_norm, num_classes=num_classes)
    got = student_output(net, weights, X, what)
    expected = reference_output(reference_net(build, weights), X)
    try:
        assert_close(got, expected, what, rtol=1e-4, atol=1e-4)
    except AssertionError:
        assert_close(got, expected, what, rtol=1e-4, atol=1e-4,
                     mistakes=relu_mistakes(build, weights, X, vgg_conv_layer))


@points(1, cell=VGG)
def test_vgg11_outputs(student):
    """make_vgg(vgg11's configuration) loads the grader's weights and gives torchvision's outputs (32x32 images)"""
    check_vgg_output(student, CFGS["vgg11"], False, 10, torch.randn(2, 3, 32, 32, generator=gen(80)), 81,
                     "<vgg11's configuration>")


@points(1, cell=VGG)
def test_vgg11_bn_outputs(student):
    """make_vgg(vgg11's configuration, batch_norm=True) gives torchvision's vgg11_bn outputs in eval mode"""
    check_vgg_output(student, CFGS["vgg11"], True, 10, torch.randn(2, 3, 40, 36, generator=gen(82)), 83,
                     "<vgg11's configuration>")


@points(1, cell=VGG)
def test_vgg_other_configuration(student):
    """make_vgg works for configurations of its own: widths other than 512, a final block without pooling"""
    cfg = [16, "M", 32, 32, "M", 24]
    check_vgg_output(student, cfg, True, 5, torch.randn(2, 3, 36, 40, generator=gen(84)), 85, str(cfg))
    check_vgg_output(student, cfg, False, 3, torch.randn(1, 3, 32, 32, generator=gen(86)), 87, str(cfg))
