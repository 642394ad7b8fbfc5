"""Hidden tests of 01_convolution: output sizes, parameter counts and receptive fields.

Oracles: the shapes and parameters PyTorch's own layers produce, a gradient through a stack of
convolutions, and values computed by hand (written next to each case).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.testing import Mistake, assert_equal, check, fail, points

# ------------------------------------------------------------------ known mistakes, computed here
CEIL = ("your result equals the formula rounded UP (ceil): a window that would stick out past the padded input is "
        "not computed, so the division by the stride rounds DOWN, floor((H + 2P - D(K - 1) - 1) / S) + 1 (section 5)")
NO_STRIDE = ("your result equals the output size for stride 1: with stride S the window moves S pixels at a time, "
             "so divide by S (and round down) before adding 1 (section 5)")
NO_DILATION = ("your result equals the output size without dilation: a dilated kernel spans D(K - 1) + 1 pixels, "
               "not K (section 5)")
PARAMS_NO_BIAS = ("your count leaves out the biases: with bias=True the layer has one bias per output channel, "
                  "C_out more parameters (section 4)")
PARAMS_KERNEL_ONCE = ("your count uses one side of the kernel instead of its area: each of the C_out kernels has "
                      "kH * kW * C_in weights (section 4)")
PARAMS_NO_IN_CHANNELS = ("your count leaves out the input channels: a kernel spans all C_in input channels, "
                         "kH * kW * C_in weights per output channel (section 4)")
RF_NO_JUMP = ("your result adds k - 1 per layer, as if every stride were 1: after a layer with stride s, one step of "
              "the next layer is s input pixels (the jump, the product of the strides below), so a layer adds "
              "(k - 1) * jump (section 10)")


def size_mistakes(size, k, s, p, d):
    span = d * (k - 1) + 1
    return [Mistake(math.ceil((size + 2 * p - span) / s) + 1, CEIL), Mistake(size + 2 * p - span + 1, NO_STRIDE),
            Mistake(math.floor((size + 2 * p - k) / s) + 1, NO_DILATION)]


def params_mistakes(k, c_in, c_out, bias):
    kH, kW = (k, k) if isinstance(k, int) else k
    b = c_out if bias else 0
    found = [Mistake(kH * c_in * c_out + b, PARAMS_KERNEL_ONCE), Mistake(kW * c_in * c_out + b, PARAMS_KERNEL_ONCE),
             Mistake(kH * kW * c_out + b, PARAMS_NO_IN_CHANNELS)]
    if bias:
        found.insert(0, Mistake(kH * kW * c_in * c_out, PARAMS_NO_BIAS))
    return found


def rf_mistakes(layers):
    return [Mistake(1 + sum(k - 1 for k, _ in layers), RF_NO_JUMP)]


def as_int(value, what):
    """The student's number as an int; a clear failure for anything that is not a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"{what}: expected a whole number (int), got {type(value).__name__}")
    check(float(value).is_integer(), f"{what}: expected a whole number, got a fraction")
    return int(value)


def torch_output_size(size, kernel_size, stride, padding, dilation):
    """Length of F.conv2d's output along one axis (a (size x 1) input keeps it cheap)."""
    x = torch.zeros(1, 1, size, 1)
    w = torch.zeros(1, 1, kernel_size, 1)
    return F.conv2d(x, w, stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1)).shape[2]


def torch_params(kernel_size, in_channels, out_channels, bias):
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias, device="meta")  # shapes only
    return sum(p.numel() for p in layer.parameters())


# The library's anatomy functions (dl.receptive_field, dl.count_parameters, ...) answer these exercises, and
# so do a layer built to be counted and a convolution run to be measured: all forbidden while the student's
# function runs (the docstrings say "counted without building one", "without running a convolution").
LIBRARY = ("dlcourse.anatomy",)


def output_size(student):
    return student.function("conv_output_size", timeout=10, forbid=("convolution",), forbid_calls=LIBRARY)


def params(student):
    return student.function("conv_params", timeout=10, forbid_calls=LIBRARY + ("torch.nn.Conv2d",))


# ------------------------------------------------------------------ conv_output_size (2 points)
@points(1, cell="test_conv_output_size")
def test_output_size_even(student):
    """conv_output_size with paddings and strides that divide the input evenly"""
    for size, k, s, p in [(28, 5, 1, 0), (32, 3, 1, 1), (32, 4, 2, 1), (9, 3, 3, 0), (6, 1, 1, 0)]:
        got = as_int(output_size(student)(size, k, stride=s, padding=p),
                     f"conv_output_size({size}, {k}, stride={s}, padding={p})")
        assert_equal(got, torch_output_size(size, k, s, p, 1),
                     f"conv_output_size({size}, {k}, stride={s}, padding={p})",
                     mistakes=size_mistakes(size, k, s, p, 1))


@points(1, cell="test_conv_output_size")
def test_output_size_uneven_and_dilation(student):
    """conv_output_size when the stride does not divide evenly (round down), and with dilation"""
    for size, k, s, p, d in [(8, 3, 2, 0, 1), (11, 3, 3, 1, 1), (224, 7, 2, 3, 1), (10, 3, 1, 2, 2),
                             (15, 3, 2, 0, 3), (18, 3, 4, 2, 2), (13, 2, 5, 0, 1)]:
        what = f"conv_output_size({size}, {k}, stride={s}, padding={p}, dilation={d})"
        got = as_int(output_size(student)(size, k, stride=s, padding=p, dilation=d), what)
        assert_equal(got, torch_output_size(size, k, s, p, d), what, mistakes=size_mistakes(size, k, s, p, d))


# ------------------------------------------------------------------ conv_params (2 points)
@points(1, cell="test_conv_params")
def test_params_square_kernels(student):
    """conv_params for square kernels, with and without bias"""
    for k, c_in, c_out, bias in [(3, 1, 1, True), (3, 64, 128, True), (5, 3, 16, False), (1, 256, 64, False),
                                 (7, 3, 64, True)]:
        what = f"conv_params({k}, {c_in}, {c_out}, bias={bias})"
        got = as_int(params(student)(k, c_in, c_out, bias=bias), what)
        assert_equal(got, torch_params(k, c_in, c_out, bias), what, mistakes=params_mistakes(k, c_in, c_out, bias))


@points(1, cell="test_conv_params")
def test_params_rectangular_kernels(student):
    """conv_params for non-square kernels given as a (kH, kW) pair, and the default bias"""
    for k, c_in, c_out, bias in [((3, 5), 4, 8, True), ((1, 7), 16, 2, False), ((2, 3), 3, 5, False)]:
        what = f"conv_params({k}, {c_in}, {c_out}, bias={bias})"
        got = as_int(params(student)(k, c_in, c_out, bias=bias), what)
        assert_equal(got, torch_params(k, c_in, c_out, bias), what, mistakes=params_mistakes(k, c_in, c_out, bias))
    got = as_int(params(student)((3, 3), 2, 4), "conv_params((3, 3), 2, 4) with the default bias")
    assert_equal(got, torch_params(3, 2, 4, True), "conv_params((3, 3), 2, 4) with the default bias",
                 mistakes=params_mistakes((3, 3), 2, 4, True))


# ------------------------------------------------------------------ receptive_field (3 points)
def gradient_receptive_field(layers, size):
    """Extent (rows) of the non-zero gradient of the centre output unit through all-ones convolutions."""
    x = torch.zeros(1, 1, size, 1, requires_grad=True)
    y = x
    for k, s in layers:
        y = F.conv2d(y, torch.ones(1, 1, k, 1), stride=(s, 1))
    y[0, 0, y.shape[2] // 2, 0].backward()
    rows = x.grad[0, 0, :, 0].ne(0).nonzero().flatten()
    return int(rows.max() - rows.min() + 1)


def rf(student, layers, name=None):
    what = f"receptive_field of {name}" if name else f"receptive_field({layers})"
    receptive_field = student.function("receptive_field", timeout=10, forbid=("convolution",), forbid_calls=LIBRARY)
    return as_int(receptive_field([tuple(layer) for layer in layers]), what), what


@points(1, cell="test_receptive_field")
def test_rf_stride_one(student):
    """receptive_field of stacks of stride-1 layers (and of no layer at all)"""
    # Hand-computed: with stride 1 every layer adds k - 1.
    for layers, expected in [([(3, 1)] * 3, 7), ([(5, 1)], 5), ([(3, 1), (5, 1)], 7), ([(1, 1), (1, 1)], 1), ([], 1)]:
        got, what = rf(student, layers)
        assert_equal(got, expected, what, mistakes=rf_mistakes(layers))


@points(1, cell="test_receptive_field")
def test_rf_strided(student):
    """receptive_field of stacks with strides (strides make later layers reach further)"""
    # Hand-computed with r += (k - 1) * jump, jump *= s:
    # [(7,2),(3,2),(3,1)]: 1+6=7 (j=2), 7+2*2=11 (j=4), 11+2*4=19.  [(3,2),(3,2)]: 3 (j=2), 3+2*2=7.
    # [(2,2)]*3: 2, 4, 8.  [(3,1),(2,2),(3,1)]: 3, 4 (j=2), 4+2*2=8.
    for layers, expected in [([(7, 2), (3, 2), (3, 1)], 19), ([(3, 2), (3, 2)], 7), ([(2, 2)] * 3, 8),
                             ([(3, 1), (2, 2), (3, 1)], 8)]:
        got, what = rf(student, layers)
        assert_equal(got, expected, what, mistakes=rf_mistakes(layers))


@points(1, cell="test_receptive_field")
def test_rf_deep_networks(student):
    """receptive_field of deep stacks (VGG-16's convolutional part, an AlexNet-like stack, a random stack)"""
    conv, pool = (3, 1), (2, 2)
    vgg16 = [conv, conv, pool, conv, conv, pool, conv, conv, conv, pool, conv, conv, conv, pool, conv, conv, conv, pool]
    # VGG-16 up to pool5: 212 (hand-computed; Araujo et al., Distill 2019, list the same value).
    got, what = rf(student, vgg16, "VGG-16's 13 convolutions and 5 poolings")
    assert_equal(got, 212, what, mistakes=rf_mistakes(vgg16))
    # AlexNet-like: 11, 19 (j=8), 51, 67 (j=16), 99, 131, 163, 195 (j=32), hand-computed.
    alexnet = [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]
    got, what = rf(student, alexnet, "an AlexNet-like stack of 8 layers")
    assert_equal(got, 195, what, mistakes=rf_mistakes(alexnet))
    g = torch.Generator().manual_seed(1)
    layers = [(int(torch.randint(1, 6, (), generator=g)), int(torch.randint(1, 4, (), generator=g))) for _ in range(5)]
    got, what = rf(student, layers, "a random stack of 5 layers")
    assert_equal(got, gradient_receptive_field(layers, size=2000), what, mistakes=rf_mistakes(layers))
