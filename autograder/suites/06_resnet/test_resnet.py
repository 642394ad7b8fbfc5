"""Hidden tests of 06_resnet: batch_norm, the residual blocks and the ResNet family, the CIFAR-10
ResNet, and training one.

Oracles (all computed here, in the grader's process)
----------------------------------------------------
- batch_norm: torch.nn.functional.batch_norm on the same tensors (outputs and the running statistics
  it leaves behind). The student's running statistics come back from the kernel as the arguments
  after the call (`return_args=True`): the contract is an in-place update of the caller's tensors.
- Blocks and ResNets: torchvision's BasicBlock, Bottleneck and ResNet (torchvision.models.resnet). A
  state_dict made here (random values from the grader's seed, never downloaded weights) is loaded
  into the student's module in the kernel and into torchvision's here; in eval mode both must
  compute the same outputs on the same input. Parameter names and shapes are compared first, so a
  layout mistake gets a message that names the layer.
- CifarResNet: this file's own implementation of the paper's section 4.2 network (option A
  shortcuts), used the same way.
- train_resnet: the grader sends coloured-shape images whose class labels are permuted at random
  for each grading, lets the student's function train a small torch.nn network built in the kernel
  from torch.nn (so the training function is tested on its own), reads the weights back and
  evaluates them HERE on fresh images of the same permuted task, which the kernel never receives.
  A network trained on the notebook's own data (unpermuted labels), an untrained one, or one that
  does not learn from the data it is given scores about chance (10%).

Known mistakes are named (autograder.testing.Mistake): the unbiased variance used to normalise, the
biased variance stored, momentum taken as the weight of the old value, statistics updated (or batch
statistics used) in inference, statistics over the batch dimension only for 4-D input; the ReLU
after the addition missing or also applied to the branch before it, the stride on the Bottleneck's
first 1x1 convolution (the paper's v1) instead of the 3x3; option B (projection) shortcuts in the
CIFAR network.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models.resnet as tv

from autograder.testing import Mistake, RemoteRef, assert_close, check, fail, points, student_nn

NORM = ("normalization",)            # op group forbidden inside batch_norm
READY_MADE = ("torchvision.models",)  # the grader's reference networks: a forbidden use inside the student's code


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def kind_of(value):
    return value.type_name if isinstance(value, RemoteRef) else type(value).__name__


# ==============================================================================================
# batch_norm (5 points)
# ==============================================================================================
def bn_reference(x, gamma, beta, mean, var, training, momentum, eps=1e-5):
    """(y, running_mean, running_var) as F.batch_norm leaves them."""
    mean, var = mean.clone(), var.clone()
    y = F.batch_norm(x, mean, var, gamma, beta, training=training, momentum=momentum, eps=eps)
    return y, mean, var


def bn_by_hand(x, gamma, beta, mean, var, training, momentum, eps=1e-5, *, dims=None, norm_unbiased=False,
               store_unbiased=True, old_weight=False, update=None, batch_stats=None, mixed_rows=False):
    """Batch normalisation with one thing done differently: the known mistakes' outputs.

    mixed_rows: the statistics of x.reshape(C, -1)'s rows, which mix channels (dimension 1 is the channel)."""
    dims = dims if dims is not None else ((0,) if x.dim() == 2 else (0, 2, 3))
    shape = [1] * x.dim()
    shape[1] = -1
    mean, var = mean.clone(), var.clone()
    use_batch = training if batch_stats is None else batch_stats
    do_update = training if update is None else update
    m = math.prod(x.shape[d] for d in dims)
    if use_batch or do_update:
        source = x.reshape(x.shape[1], -1).T.reshape(-1, *x.shape[1:2]) if mixed_rows else x
        flat_dims = (0,) if mixed_rows else dims
        b_mean = source.mean(dim=flat_dims, keepdim=True).reshape(shape)
        b_var = source.var(dim=flat_dims, unbiased=norm_unbiased, keepdim=True).reshape(shape)
        store = source.var(dim=flat_dims, unbiased=False, keepdim=True).reshape(shape) * (
            m / (m - 1) if store_unbiased else 1)
    if do_update and b_mean.numel() == mean.numel():
        w = (1 - momentum) if old_weight else momentum
        mean = (1 - w) * mean + w * b_mean.reshape(-1)
        var = (1 - w) * var + w * store.reshape(-1)
    if use_batch:
        mu, v = b_mean, b_var
    else:
        mu, v = mean.reshape(shape), var.reshape(shape)
    y = gamma.reshape(shape) * (x - mu) / torch.sqrt(v + eps) + beta.reshape(shape)
    return y, mean, var


def bn_inputs(shape, seed):
    g = torch.Generator().manual_seed(seed)
    C = shape[1]
    x = 1.5 + 2.0 * torch.randn(*shape, generator=g)
    gamma, beta = torch.rand(C, generator=g) + 0.5, torch.randn(C, generator=g)
    mean, var = torch.randn(C, generator=g), torch.rand(C, generator=g) + 0.5
    return x, gamma, beta, mean, var


def call_bn(student, x, gamma, beta, mean, var, training, momentum):
    """(y, running_mean, running_var) from the student's batch_norm, its arguments read back after the call."""
    fn = student.function("batch_norm", forbid=NORM, timeout=30, return_args=True)
    result = fn(x, gamma, beta, mean.clone(), var.clone(), training, momentum)
    check(isinstance(result, tuple) and len(result) == 2, "batch_norm: the grader could not read the call back")
    y, args = result
    return y, args[3], args[4]


def check_output(student, shape, seed, training, momentum, what, mistakes):
    x, gamma, beta, mean, var = bn_inputs(shape, seed)
    y, _, _ = call_bn(student, x, gamma, beta, mean, var, training, momentum)
    y_ref, _, _ = bn_reference(x, gamma, beta, mean, var, training, momentum)
    named = [Mistake(bn_by_hand(x, gamma, beta, mean, var, training, momentum, **kw)[0], text)
             for kw, text in mistakes]
    assert_close(y, y_ref, what, mistakes=named)
    check(not torch.equal(y, x), f"{what}: returned its input unchanged")


UNBIASED_NORM = ({"norm_unbiased": True},
                 "you normalise with the unbiased variance (divided by m - 1); the batch is normalised with the "
                 "biased one (divided by m), and only the running estimate is fed the unbiased one (section 2)")
MIXED_ROWS = ({"mixed_rows": True},
              "your per-channel statistics mix channels: x.reshape(C, -1) does not group the values by channel, "
              "because the channel is dimension 1, not 0; take them over every dimension but 1 "
              "(x.mean(dim=(0, 2, 3)), or x.transpose(0, 1).reshape(C, -1)) (section 2)")
BATCH_IN_EVAL = ({"batch_stats": True, "update": False},
                 "in inference (training=False) you normalise with the batch's statistics; inference uses "
                 "running_mean and running_var, so one image's output does not depend on its batch (section 2)")


@points(1, cell="test_batch_norm")
def test_training_2d(student):
    """batch_norm in training mode on (N, C) input normalises each column with the batch's statistics, then scales and shifts"""
    for shape, seed in [((8, 3), 1), ((5, 7), 2)]:
        check_output(student, shape, seed, True, 0.1, f"batch_norm in training mode on a {shape} input",
                     [UNBIASED_NORM, MIXED_ROWS])


@points(1, cell="test_batch_norm")
def test_training_4d(student):
    """batch_norm in training mode on (N, C, H, W) input takes each channel's statistics over N, H and W"""
    for shape, seed in [((4, 3, 5, 6), 3), ((2, 5, 3, 3), 4)]:
        check_output(student, shape, seed, True, 0.1, f"batch_norm in training mode on a {shape} input",
                     [UNBIASED_NORM, MIXED_ROWS, ({"dims": (0, 1, 2, 3)}, "you take one mean and variance over the "
                                                  "whole tensor; batch norm normalises every channel separately")])


@points(1, cell="test_batch_norm")
def test_running_statistics_update(student):
    """in training mode batch_norm updates running_mean and running_var in place, as F.batch_norm does"""
    mistakes = [({"store_unbiased": False}, "running_var is fed the biased batch variance; PyTorch stores the "
                                            "unbiased one (times m / (m - 1)), an estimate of the population's "
                                            "variance for inference (section 2)"),
                ({"old_weight": True}, "the running statistics move by 1 - momentum towards the batch; momentum is "
                                       "the weight of the NEW value: running = (1 - momentum) * running + "
                                       "momentum * batch statistic (section 2)")]
    for shape, seed, momentum in [((6, 4), 5, 0.1), ((3, 2, 4, 5), 6, 0.3)]:
        x, gamma, beta, mean, var = bn_inputs(shape, seed)
        _, got_mean, got_var = call_bn(student, x, gamma, beta, mean, var, True, momentum)
        _, ref_mean, ref_var = bn_reference(x, gamma, beta, mean, var, True, momentum)
        what = f"batch_norm(training=True, momentum={momentum}) on a {shape} input"
        check(isinstance(got_mean, torch.Tensor) and isinstance(got_var, torch.Tensor),
              f"{what}: running_mean / running_var are not tensors after the call")
        explain = ("running_mean and running_var were not changed: update them in place (running_mean.mul_(...)"
                   ".add_(...), or running_mean[:] = ...); a new tensor bound to the same name does not reach the "
                   "caller (section 2)")
        check(not (torch.equal(got_mean, mean) and torch.equal(got_var, var)), f"{what}: {explain}", mistake=explain)
        named = [Mistake(bn_by_hand(x, gamma, beta, mean, var, True, momentum, **kw)[1:], text) for kw, text in mistakes]
        assert_close((got_mean, got_var), (ref_mean, ref_var), f"{what}: running (mean, var) after the call",
                     mistakes=named)


@points(1, cell="test_batch_norm")
def test_inference_mode(student):
    """with training=False batch_norm normalises with the running statistics and leaves them unchanged"""
    for shape, seed in [((6, 3), 7), ((3, 4, 2, 5), 8)]:
        x, gamma, beta, mean, var = bn_inputs(shape, seed)
        y, got_mean, got_var = call_bn(student, x, gamma, beta, mean, var, False, 0.1)
        y_ref, _, _ = bn_reference(x, gamma, beta, mean, var, False, 0.1)
        what = f"batch_norm(training=False) on a {shape} input"
        assert_close(y, y_ref, what, mistakes=[Mistake(bn_by_hand(x, gamma, beta, mean, var, False, 0.1,
                                                                  batch_stats=True, update=False)[0],
                                                       BATCH_IN_EVAL[1])])
        check(torch.equal(got_mean, mean) and torch.equal(got_var, var),
              f"{what}: running_mean or running_var changed; in inference nothing is updated (section 2)")


@points(1, cell="test_batch_norm")
def test_other_momenta_eps_and_float64(student):
    """batch_norm with other momentum and eps values, and in float64 (the result keeps the input's dtype)"""
    x, gamma, beta, mean, var = (t.double() for t in bn_inputs((5, 3, 2, 2), 9))
    for training, momentum in [(True, 0.5), (False, 0.5), (True, 1.0)]:
        fn = student.function("batch_norm", forbid=NORM, timeout=30, return_args=True)
        result = fn(x, gamma, beta, mean.clone(), var.clone(), training, momentum, 1e-3)
        check(isinstance(result, tuple) and len(result) == 2, "batch_norm: the grader could not read the call back")
        (y, args), (y_ref, r_mean, r_var) = result, bn_reference(x, gamma, beta, mean, var, training, momentum, 1e-3)
        what = f"batch_norm(training={training}, momentum={momentum}, eps=1e-3) on a float64 input"
        assert_close(y, y_ref, what, check_dtype=True, rtol=1e-7, atol=1e-8)
        assert_close((args[3], args[4]), (r_mean, r_var), f"{what}: running (mean, var)", rtol=1e-7, atol=1e-8)


# ==============================================================================================
# BasicBlock, Bottleneck, resnet (6 points)
# ==============================================================================================
def grader_state(module, seed):
    """A state_dict for `module` with random values (BN statistics positive): nothing is downloaded."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in module.state_dict().items():
        if not v.is_floating_point():
            state[k] = v.clone()
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(("running_mean", "bias")):
            state[k] = 0.1 * torch.randn(v.shape, generator=g)
        elif v.dim() == 1:                                             # BN weight (gamma)
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:                                                          # conv / linear weights, He-scaled
            fan_in = v[0].numel()
            state[k] = torch.randn(v.shape, generator=g) * math.sqrt(2.0 / fan_in)
    return state


def check_layout(state, expected, what):
    """Parameter names and shapes must be torchvision's; the message names the first difference."""
    if not isinstance(state, dict):
        fail(f"{what}: its state_dict is a {kind_of(state)}, not a dict of tensors")
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    want = {k: tuple(v.shape) for k, v in expected.items()}
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if (any(".downsample.1." in k for k in missing) and any(".downsample.0." in k for k in got)
            and not any(".downsample.1." in k for k in got)):
        explain = ("the projection shortcut has no BN: the shortcut is downsample = Sequential(conv1x1 with the "
                   "stride, BatchNorm2d) (section 3)")
        fail(f"{what}: {explain} ({missing[0]} is missing)", mistake=explain)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
        fail(f"{what}: its parameter names differ from the expected layout ({'; '.join(parts)}): use the attribute "
             f"names of the exercise (conv1, bn1, ..., layer1..4, downsample, fc)")
    for k, shape in want.items():
        if got[k] != shape:
            explain = ("a layer has the wrong number of channels (planes) or the wrong kernel size: the stages have "
                       "64, 128, 256 and 512 planes, and a Bottleneck expands by 4 (section 3)")
            fail(f"{what}: {k} has shape {got[k]}: {explain}", mistake=explain)


def load_and_run(module, state, X, what):
    """Load `state` into the student's module (a RemoteRef), eval mode, forward X; returns the output."""
    module.method("load_state_dict", timeout=60)(state)
    module.method("eval")()
    Y = module.method("__call__", timeout=120, forbid_calls=READY_MADE)(X)
    if not isinstance(Y, torch.Tensor):
        fail(f"{what}: forward returned a {kind_of(Y)}, expected a tensor")
    return Y


def not_torchvision(ref, what):
    if not isinstance(ref, RemoteRef):
        fail(f"{what} is a {kind_of(ref)}, not a module")
    check(not ref.type_name.startswith("torchvision."),
          f"{what} is torchvision's {ref.type_name.rsplit('.', 1)[-1]}: torchvision's models are the grader's reference; "
          f"build the network yourself")


def tv_block_variant(block, x, variant):
    """torchvision's `block` (eval mode) computing a known wrong block."""
    identity = x if block.downsample is None else block.downsample(x)
    if isinstance(block, tv.Bottleneck):
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.relu(block.bn2(block.conv2(out)))
        branch = block.bn3(block.conv3(out))
    else:
        out = block.relu(block.bn1(block.conv1(x)))
        branch = block.bn2(block.conv2(out))
    if variant == "no_final_relu":
        return branch + identity
    if variant == "relu_on_branch":
        return block.relu(branch) + identity
    return block.relu(block.relu(branch) + identity)                  # "relu_twice"


def block_mistakes(block, x):
    with torch.no_grad():
        return [Mistake(tv_block_variant(block, x, "no_final_relu"),
                        "the block has no ReLU after the addition: H(x) = ReLU(F(x) + x) (section 3)"),
                Mistake(tv_block_variant(block, x, "relu_on_branch"),
                        "you apply the ReLU to the branch F(x) and then add x; the ReLU comes after the addition "
                        "(section 3)"),
                Mistake(tv_block_variant(block, x, "relu_twice"),
                        "you apply a ReLU to F(x) before adding x and another after: the last BN's output goes "
                        "into the addition directly (section 3)")]


def check_block(student, cls, tv_cls, inplanes, planes, stride, seed):
    what = f"{cls}({inplanes}, {planes}, stride={stride})"
    torch_nn = student_nn(student)
    ref_down = None
    down = None
    out_planes = planes * tv_cls.expansion
    if stride != 1 or inplanes != out_planes:
        ref_down = nn.Sequential(nn.Conv2d(inplanes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes))
        down = torch_nn.method("Sequential")(torch_nn.method("Conv2d")(inplanes, out_planes, 1, stride=stride, bias=False),
                                             torch_nn.method("BatchNorm2d")(out_planes))
        what += " with a projection shortcut"
    ref = tv_cls(inplanes, planes, stride, ref_down).eval()
    block = student.function(cls, timeout=30, forbid_calls=READY_MADE)(inplanes, planes, stride, down)
    not_torchvision(block, what)
    expansion = block.attr("expansion")
    check(expansion == tv_cls.expansion, f"{cls}.expansion is {expansion!r}; it is {tv_cls.expansion}")
    state = grader_state(ref, seed)
    check_layout(block.state_dict(), ref.state_dict(), what)
    ref.load_state_dict(state)
    X = randn(2, inplanes, 8, 7, seed=seed + 1)          # negative values too: the ReLU's place shows
    Y = load_and_run(block, state, X, what)
    with torch.no_grad():
        expected = ref(X)
        mistakes = block_mistakes(ref, X)
        if tv_cls is tv.Bottleneck and stride != 1:
            v1 = tv.Bottleneck(inplanes, planes, 1, ref_down).eval()
            v1.load_state_dict(state)
            v1.conv1.stride, v1.conv2.stride = (stride, stride), (1, 1)  # the paper's v1: stride on the first 1x1
            mistakes.append(Mistake(v1(X), "the stride sits on the first 1x1 convolution (the paper's v1); torchvision's "
                                           "v1.5, which this exercise follows, puts it on the 3x3 (section 3)"))
    assert_close(Y, expected, f"{what} on a (2, {inplanes}, 8, 7) input, eval mode", mistakes=mistakes)


@points(1, cell="test_resnet")
def test_basic_block(student):
    """BasicBlock: torchvision's layout and outputs, with and without a projection shortcut"""
    check_block(student, "BasicBlock", tv.BasicBlock, 16, 16, 1, seed=10)
    check_block(student, "BasicBlock", tv.BasicBlock, 16, 32, 2, seed=11)


@points(1, cell="test_resnet")
def test_bottleneck(student):
    """Bottleneck: torchvision's layout and outputs (1x1 reduce, 3x3 with the stride, 1x1 expand by 4)"""
    check_block(student, "Bottleneck", tv.Bottleneck, 64, 16, 1, seed=12)
    check_block(student, "Bottleneck", tv.Bottleneck, 32, 16, 2, seed=13)


def check_resnet(student, block, layers, seed, num_classes=10, run=True):
    name = {(tv.BasicBlock, (2, 2, 2, 2)): "ResNet-18", (tv.BasicBlock, (3, 4, 6, 3)): "ResNet-34",
            (tv.Bottleneck, (3, 4, 6, 3)): "ResNet-50"}[(block, tuple(layers))]
    what = f"resnet({block.__name__}, {list(layers)}, num_classes={num_classes}) ({name})"
    net = student.function("resnet", timeout=120, forbid_calls=READY_MADE)(student.get(block.__name__), list(layers),
                                                                          num_classes)
    not_torchvision(net, what)
    ref = tv.ResNet(block, list(layers), num_classes=num_classes).eval()
    check_layout(net.state_dict(), ref.state_dict(), what)
    if not run:
        return
    state = grader_state(ref, seed)
    ref.load_state_dict(state)
    X = randn(2, 3, 64, 48, seed=seed + 1)
    Y = load_and_run(net, state, X, what)
    with torch.no_grad():
        expected = ref(X)
    assert_close(Y, expected, f"{what} on a (2, 3, 64, 48) input, eval mode, the same weights as torchvision's",
                 rtol=1e-4, atol=1e-4)


@points(2, cell="test_resnet")
def test_resnet18_and_34(student):
    """resnet(BasicBlock, ...) builds ResNet-18 and ResNet-34 with torchvision's parameter names and shapes, and ResNet-18 computes torchvision's outputs"""
    check_resnet(student, tv.BasicBlock, [2, 2, 2, 2], seed=20)
    check_resnet(student, tv.BasicBlock, [3, 4, 6, 3], seed=21, run=False)


@points(1, cell="test_resnet")
def test_resnet50(student):
    """resnet(Bottleneck, [3, 4, 6, 3]) builds ResNet-50 with torchvision's layout and outputs"""
    check_resnet(student, tv.Bottleneck, [3, 4, 6, 3], seed=22)


@points(1, cell="test_resnet")
def test_initialisation(student):
    """resnet initialises convolutions as the paper (He: std sqrt(2 / fan_out)), BN scales at 1, and with zero_init_residual=True the last BN of every block at 0"""
    for block, last in [("BasicBlock", "bn2"), ("Bottleneck", "bn3")]:
        layers = [1, 1, 1, 1]
        for zero in (False, True):
            net = student.function("resnet", timeout=120, forbid_calls=READY_MADE)(student.get(block), layers, 10, zero)
            not_torchvision(net, "resnet(...)")
            state = net.state_dict()
            what = f"resnet({block}, {layers}, zero_init_residual={zero})"
            gammas = {k: v for k, v in state.items() if k.endswith(".weight") and v.dim() == 1 and "fc" not in k}
            check(gammas, f"{what}: no BN scales found in the state_dict")
            for k, v in gammas.items():
                is_last = k.split(".")[-2] == last and k.startswith("layer")
                want = 0.0 if (zero and is_last) else 1.0
                if not bool((v == want).all()):
                    explain = (f"zero_init_residual zeroes the scale of the last BN of every block ({last}) and no "
                               f"other, so that each block starts as the identity (section 3)")
                    if zero and is_last:
                        fail(f"{what}: {k} does not start at 0: {explain}", mistake=explain)
                    if zero and want == 1.0 and bool((v == 0).all()):
                        fail(f"{what}: {k} starts at 0: {explain}", mistake=explain)
                    fail(f"{what}: {k} does not start at 1 (BN starts with gamma = 1, beta = 0)")
            w = state.get("layer1.0.conv1.weight")
            check(isinstance(w, torch.Tensor) and w.dim() == 4, f"{what}: no layer1.0.conv1.weight")
            fan_out = w.shape[0] * w.shape[2] * w.shape[3]
            ratio = float(w.double().std()) / math.sqrt(2.0 / fan_out)
            check(0.8 < ratio < 1.25,
                  f"{what}: layer1.0.conv1's weights have a standard deviation {ratio:.2f} times the paper's He "
                  f"initialisation (normal, variance 2 / fan_out: nn.init.kaiming_normal_(w, mode='fan_out', "
                  f"nonlinearity='relu'); section 3)")


# ==============================================================================================
# CifarResNet (3 points)
# ==============================================================================================
class _Shortcut(nn.Module):
    """Option A (or zeros for the plain network): every stride-th pixel, zero-padded channels."""

    def __init__(self, planes, stride, zero=False):
        super().__init__()
        self.planes, self.stride, self.zero = planes, stride, zero

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        x = F.pad(x, (0, 0, 0, 0, 0, self.planes - x.shape[1]))
        return torch.zeros_like(x) if self.zero else x


class RefCifarResNet(nn.Module):
    """He et al. (2015), section 4.2: 3x3 conv 16, three stages of n BasicBlocks (16, 32, 64), avgpool, fc."""

    def __init__(self, n, num_classes=10, residual=True, option="A"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        inplanes = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                down = None
                if not residual:
                    down = _Shortcut(planes, stride, zero=True)
                elif stride != 1 or inplanes != planes:
                    down = _Shortcut(planes, stride) if option == "A" else nn.Sequential(
                        nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
                blocks.append(tv.BasicBlock(inplanes, planes, stride, down))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, X):
        X = self.relu(self.bn1(self.conv1(X)))
        X = self.layer3(self.layer2(self.layer1(X)))
        return self.fc(torch.flatten(self.avgpool(X), 1))


def check_option_a(state, what):
    if isinstance(state, dict) and any(".downsample." in k for k in state):
        explain = ("its shortcuts have parameters (option B): the paper's CIFAR network uses option A, every "
                   "second pixel with zero-padded channels, no parameters (section 5)")
        fail(f"{what}: {explain} ({next(k for k in state if '.downsample.' in k)})", mistake=explain)


def cifar_net(student, n, num_classes=10, residual=True):
    what = f"CifarResNet({n}, num_classes={num_classes}, residual={residual})"
    net = student.function("CifarResNet", timeout=60, forbid_calls=READY_MADE)(n, num_classes, residual)
    not_torchvision(net, what)
    return net, what


@points(1, cell="test_CifarResNet")
def test_cifar_layout(student):
    """CifarResNet(n) has the paper's 6n+2 layers with 16, 32 and 64 filters and option A (parameter-free) shortcuts"""
    for n, num_classes in [(1, 10), (3, 7)]:
        net, what = cifar_net(student, n, num_classes)
        state = net.state_dict()
        check_option_a(state, what)
        check_layout(state, RefCifarResNet(n, num_classes).state_dict(), what)


@points(1, cell="test_CifarResNet")
def test_cifar_outputs(student):
    """CifarResNet computes the paper's network: the same outputs as the grader's for the same weights, on 32x32 and 16x16 inputs"""
    for n, seed, size in [(1, 30, 32), (2, 31, 16)]:
        net, what = cifar_net(student, n)
        ref = RefCifarResNet(n).eval()
        state = net.state_dict()
        check_option_a(state, what)
        check_layout(state, ref.state_dict(), what)
        state = grader_state(ref, seed)
        ref.load_state_dict(state)
        X = randn(3, 3, size, size, seed=seed + 1)
        Y = load_and_run(net, state, X, what)
        with torch.no_grad():
            expected = ref(X)
        assert_close(Y, expected, f"{what} on a (3, 3, {size}, {size}) input, eval mode")


@points(1, cell="test_CifarResNet")
def test_cifar_plain(student):
    """CifarResNet(n, residual=False) is the plain network: the same layers without any shortcut"""
    net, what = cifar_net(student, 2, residual=False)
    ref = RefCifarResNet(2, residual=False).eval()
    check_layout(net.state_dict(), ref.state_dict(), what)
    state = grader_state(ref, 32)
    ref.load_state_dict(state)
    X = randn(3, 3, 16, 16, seed=33)
    Y = load_and_run(net, state, X, what)
    with torch.no_grad():
        expected, with_shortcuts = ref(X), RefCifarResNet(2).eval()
        with_shortcuts.load_state_dict(state)
        residual = with_shortcuts(X)
    assert_close(Y, expected, f"{what} on a (3, 3, 16, 16) input, eval mode",
                 mistakes=[Mistake(residual, "residual=False still adds the shortcuts: the plain network has none")])


# ==============================================================================================
# train_resnet (3 points)
# ==============================================================================================
ACCURACY_THRESHOLD = 0.35        # the reference's training reached 0.62-0.76 in 3 seeded runs; chance is 0.1
SIZE, NUM_TRAIN, NUM_EXAM = 16, 2048, 512


def task():
    """A fresh task for every grading: shapes with a random seed and randomly permuted class labels.

    Returns (train batches of normalised (X, y)), (exam X, y) for the grader only.
    """
    from dlcourse.data import make_shapes

    seed = int.from_bytes(os.urandom(4), "little")
    X, y = make_shapes(NUM_TRAIN + NUM_EXAM, seed=seed, image_size=SIZE)         # (n, 3, S, S) in [0, 1]
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(seed))
    y = perm[y]                                                                 # the labels of THIS grading
    mean = X[:NUM_TRAIN].mean(dim=(0, 2, 3), keepdim=True)
    std = X[:NUM_TRAIN].std(dim=(0, 2, 3), keepdim=True)
    X = (X - mean) / std
    train = list(zip(X[:NUM_TRAIN].split(64), y[:NUM_TRAIN].split(64)))
    return train, (X[NUM_TRAIN:], y[NUM_TRAIN:])


def small_convnet(torch_nn):
    """The network train_resnet trains in the tests, built from torch.nn (in the kernel: `torch_nn` is
    the student's torch.nn module; in the grader: torch.nn), so its weights can be read back here."""
    m = torch_nn.method if isinstance(torch_nn, RemoteRef) else (lambda name: getattr(torch_nn, name))
    return m("Sequential")(m("Conv2d")(3, 32, 3, padding=1, bias=False), m("BatchNorm2d")(32), m("ReLU")(),
                           m("MaxPool2d")(2),                                                   # (N, 32, 8, 8)
                           m("Conv2d")(32, 64, 3, padding=1, bias=False), m("BatchNorm2d")(64), m("ReLU")(),
                           m("MaxPool2d")(2),                                                   # (N, 64, 4, 4)
                           m("Conv2d")(64, 64, 3, padding=1, bias=False), m("BatchNorm2d")(64), m("ReLU")(),
                           m("AdaptiveAvgPool2d")(1), m("Flatten")(), m("Linear")(64, 10))     # (N, 10)


def trained_copy(student, train, num_epochs, lr):
    """Train a fresh small network in the kernel with the student's function.

    Returns (history, weights before training, a grader-side copy of the trained network in eval mode)."""
    net = small_convnet(student_nn(student))
    mine = small_convnet(nn)
    before = net.state_dict()
    check(isinstance(before, dict) and set(before) == set(mine.state_dict()),
          "the grader could not build its test network in your kernel (is torch.nn intact?)")
    history = student.function("train_resnet", timeout=240)(net, train, num_epochs, lr, "cpu")
    after = net.state_dict()
    check(isinstance(after, dict) and set(after) == set(before),
          "after train_resnet the network's parameters are not those of the network it was given")
    mine.load_state_dict(after)
    return history, before, mine.eval()


@points(2, cell="test_train_resnet")
def test_trained_network_generalises(student):
    """train_resnet trains the network it is given on the data it is given: the grader measures the returned weights on fresh images of the same task (at least 35% accuracy; chance is 10%)"""
    train, (X_exam, y_exam) = task()
    _, _, net = trained_copy(student, train, 4, 0.05)
    with torch.no_grad():
        acc = float((net(X_exam).argmax(1) == y_exam).double().mean())
    check(acc >= ACCURACY_THRESHOLD,
          f"after train_resnet(net, train_iter, num_epochs=4, lr=0.05, device='cpu') the network classifies {acc:.0%} "
          f"of fresh images of the same task correctly (chance: 10%; a network trained on the given batches reaches "
          f"far more). Does train_resnet train `net` (not a new network) on `train_iter` (not the notebook's data)?")


@points(1, cell="test_train_resnet")
def test_uses_its_arguments(student):
    """train_resnet trains for num_epochs epochs at learning rate lr and returns dl.fit's History"""
    train, _ = task()
    history, _, _ = trained_copy(student, train[:4], 2, 0.05)
    if not isinstance(history, dict):
        fail(f"train_resnet returned a {kind_of(history)}; expected the History that dl.fit returns")
    losses = history.get("train_loss")
    check(isinstance(losses, list) and len(losses) == 2,
          f"train_resnet(..., num_epochs=2, ...) returned a history with "
          f"{len(losses) if isinstance(losses, list) else 'no'} epochs of training loss")
    _, before, slow = trained_copy(student, train[:2], 1, 1e-9)
    after = slow.state_dict()
    moved = max(float((before[k].double() - after[k].double()).abs().max())
                for k in before if before[k].is_floating_point() and before[k].dim() > 1)
    check(moved < 1e-4, "train_resnet with lr=1e-9 still moved the weights a lot: the optimiser must use the lr argument")
