"""Hidden tests of 01_convolution: conv2d_naive, im2col and conv2d_im2col against PyTorch.

Shapes are chosen to expose mistakes: non-square inputs and kernels (height/width mixed up),
several channels and batch items (sums over the wrong axis), strides and paddings that do not
divide evenly (off-by-one sizes, one-sided padding), pair-valued settings, bias None vs given.
PyTorch's convolution and unfold are forbidden while the student's functions run.

Known mistakes (testing.Mistake): beside each reference, the outputs that the common wrong answers
give on the same input, computed here with PyTorch (never sent to the kernel): the flipped kernel,
the bias left out or added once per input channel, all the padding on one side, im2col's rows in
another order, and a conv2d_im2col whose weight order does not match its im2col's rows.
"""
import torch
import torch.nn.functional as F

from autograder.testing import Mistake, assert_close, points

CONV = ("convolution", "unfold")        # op groups forbidden inside the student's functions


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def setting(stride, padding, bias):
    return f"stride={stride}, padding={padding}, {'with' if bias is not None else 'without'} bias"


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ------------------------------------------------------------------ known mistakes, computed here
FLIPPED = ("your result equals the true (mathematical) convolution, with the kernel flipped: what deep learning "
           "calls convolution is cross-correlation, out[i, j] = sum of x[i + a, j + b] * w[a, b] with the kernel "
           "NOT flipped (section 2)")
NO_BIAS = ("your result equals the convolution without the bias: add bias[o] to every output of output channel o "
           "(section 4)")
BIAS_PER_INPUT_CHANNEL = ("your result equals the convolution with the bias added once per input channel (C_in "
                          "times): the bias is one number per OUTPUT channel, added once after the sum over input "
                          "channels and the kernel window (section 4)")
PAD_ONE_SIDE = ("your result equals the convolution of an input padded on one side only (all 2P zeros after the "
                "image): padding P puts P zeros on BOTH sides of each spatial axis, so the size is right but every "
                "window is shifted (section 5)")
IM2COL_ORDER = ("your columns hold the right numbers in the wrong row order (kernel row, kernel column, channel): "
                "im2col's rows are ordered channel first, then kernel row, then kernel column, c * kH * kW + a * kW "
                "+ b, the order of weight.reshape(C_out, -1) and of F.unfold (section 8)")
IM2COL_ROWS_COLS = ("your columns hold the right numbers with the kernel's column index before its row index: the "
                    "rows are ordered c * kH * kW + a * kW + b, kernel row a before kernel column b (section 8)")
WEIGHT_ORDER = ("your result equals the product of the weights with your im2col's columns whose rows are in "
                "another order (kernel row, kernel column, channel): conv2d_im2col is right only when "
                "weight.reshape(C_out, -1)'s columns follow im2col's rows (channel, kernel row, kernel column). "
                "Fix the order in im2col (section 8)")


def conv_mistakes(x, w, b=None, stride=1, padding=0):
    """The outputs of the known wrong conv2d's on this input (see the module docstring)."""
    found = [Mistake(F.conv2d(x, w.flip(-2, -1), b, stride=stride, padding=padding), FLIPPED)]
    if b is not None:
        found += [Mistake(F.conv2d(x, w, None, stride=stride, padding=padding), NO_BIAS),
                  Mistake(F.conv2d(x, w, b * x.shape[1], stride=stride, padding=padding), BIAS_PER_INPUT_CHANNEL)]
    pH, pW = pair(padding)
    if pH or pW:
        one_side = F.pad(x, (0, 2 * pW, 0, 2 * pH))
        found.append(Mistake(F.conv2d(one_side, w, b, stride=stride), PAD_ONE_SIDE))
    return found


def channel_last(cols, C, kH, kW):
    """im2col's columns with rows reordered (kernel row, kernel column, channel)."""
    N, _, L = cols.shape
    return cols.reshape(N, C, kH, kW, L).permute(0, 2, 3, 1, 4).reshape(N, C * kH * kW, L)


def im2col_mistakes(x, kernel_size, stride=1, padding=0):
    """The outputs of the known wrong im2col's on this input."""
    (kH, kW), C = pair(kernel_size), x.shape[1]
    cols = F.unfold(x, kernel_size, stride=stride, padding=padding)
    N, _, L = cols.shape
    found = [Mistake(channel_last(cols, C, kH, kW), IM2COL_ORDER)]
    if kH > 1 and kW > 1:
        swapped = cols.reshape(N, C, kH, kW, L).transpose(2, 3).reshape(N, C * kH * kW, L)
        found.append(Mistake(swapped, IM2COL_ROWS_COLS))
    return found


def gemm_mistakes(x, w, b=None, stride=1, padding=0):
    """conv_mistakes, and the product of the weights with channel-last im2col columns."""
    C_out, C_in, kH, kW = w.shape
    cols = channel_last(F.unfold(x, (kH, kW), stride=stride, padding=padding), C_in, kH, kW)
    out = w.reshape(C_out, -1) @ cols + (b[:, None] if b is not None else 0)
    H_out, W_out = F.conv2d(x, w, None, stride=stride, padding=padding).shape[2:]
    return conv_mistakes(x, w, b, stride, padding) + [Mistake(out.reshape(len(x), C_out, H_out, W_out),
                                                              WEIGHT_ORDER)]


# ------------------------------------------------------------------ conv2d_naive (4 points)
def naive(student):
    return student.function("conv2d_naive", forbid=CONV, timeout=60)


@points(1, cell="test_conv2d_naive")
def test_naive_one_channel(student):
    """conv2d_naive: one channel, a non-square input and an asymmetric 2x3 kernel, no bias"""
    x, w = randn(1, 1, 5, 6, seed=0), randn(1, 1, 2, 3, seed=1)
    assert_close(naive(student)(x, w), F.conv2d(x, w),
                 "conv2d_naive on a (1, 1, 5, 6) input with a (1, 1, 2, 3) kernel", mistakes=conv_mistakes(x, w))


@points(1, cell="test_conv2d_naive")
def test_naive_channels_and_bias(student):
    """conv2d_naive: several batch items, input and output channels, with a bias"""
    x, w, b = randn(3, 4, 6, 5, seed=2), randn(2, 4, 3, 2, seed=3), randn(2, seed=4)
    assert_close(naive(student)(x, w, b), F.conv2d(x, w, b),
                 "conv2d_naive on a (3, 4, 6, 5) input, (2, 4, 3, 2) weight and a bias", mistakes=conv_mistakes(x, w, b))


@points(1, cell="test_conv2d_naive")
def test_naive_stride_and_padding(student):
    """conv2d_naive: strides and paddings that do not divide the input evenly"""
    x, w = randn(2, 3, 7, 5, seed=5), randn(4, 3, 3, 2, seed=6)
    conv = naive(student)
    for stride, padding in [(2, 1), (3, 2)]:
        assert_close(conv(x, w, None, stride=stride, padding=padding), F.conv2d(x, w, stride=stride, padding=padding),
                     f"conv2d_naive on a (2, 3, 7, 5) input, {setting(stride, padding, None)}",
                     mistakes=conv_mistakes(x, w, None, stride, padding))


@points(1, cell="test_conv2d_naive")
def test_naive_pair_stride_and_padding(student):
    """conv2d_naive: stride and padding given as (height, width) pairs, with a bias"""
    x, w, b = randn(2, 2, 8, 7, seed=7), randn(3, 2, 2, 3, seed=8), randn(3, seed=9)
    stride, padding = (2, 3), (1, 2)
    assert_close(naive(student)(x, w, b, stride=stride, padding=padding),
                 F.conv2d(x, w, b, stride=stride, padding=padding),
                 f"conv2d_naive on a (2, 2, 8, 7) input, {setting(stride, padding, b)}",
                 mistakes=conv_mistakes(x, w, b, stride, padding))


# ------------------------------------------------------------------ im2col (4 points)
def unfold(student):
    return student.function("im2col", forbid=CONV, timeout=30)


@points(1, cell="test_im2col")
def test_im2col_one_channel(student):
    """im2col: one channel, a 2x2 kernel on a non-square input"""
    x = randn(1, 1, 4, 5, seed=10)
    assert_close(unfold(student)(x, 2), F.unfold(x, 2), "im2col of a (1, 1, 4, 5) input with a 2x2 kernel",
                 mistakes=im2col_mistakes(x, 2))


@points(1, cell="test_im2col")
def test_im2col_channels_and_rectangular_kernel(student):
    """im2col: several channels and batch items, a non-square kernel (rows ordered channel, kernel row, kernel column)"""
    x = randn(2, 3, 5, 6, seed=11)
    assert_close(unfold(student)(x, (2, 3)), F.unfold(x, (2, 3)),
                 "im2col of a (2, 3, 5, 6) input with a (2, 3) kernel", mistakes=im2col_mistakes(x, (2, 3)))


@points(1, cell="test_im2col")
def test_im2col_stride_and_padding(student):
    """im2col: strides and paddings that do not divide the input evenly"""
    x = randn(2, 2, 7, 6, seed=12)
    cols = unfold(student)
    for stride, padding in [(2, 1), (3, 2)]:
        assert_close(cols(x, 3, stride=stride, padding=padding), F.unfold(x, 3, stride=stride, padding=padding),
                     f"im2col of a (2, 2, 7, 6) input, 3x3 kernel, stride={stride}, padding={padding}",
                     mistakes=im2col_mistakes(x, 3, stride, padding))


@points(1, cell="test_im2col")
def test_im2col_pairs(student):
    """im2col: kernel size, stride and padding given as (height, width) pairs"""
    x = randn(1, 2, 8, 9, seed=13)
    kernel_size, stride, padding = (3, 2), (2, 3), (1, 0)
    assert_close(unfold(student)(x, kernel_size, stride=stride, padding=padding),
                 F.unfold(x, kernel_size, stride=stride, padding=padding),
                 f"im2col of a (1, 2, 8, 9) input, kernel {kernel_size}, stride={stride}, padding={padding}",
                 mistakes=im2col_mistakes(x, kernel_size, stride, padding))


# ------------------------------------------------------------------ conv2d_im2col (3 points)
def gemm_conv(student):
    return student.function("conv2d_im2col", forbid=CONV, timeout=30)


@points(1, cell="test_conv2d_im2col")
def test_im2col_conv_channels(student):
    """conv2d_im2col: several batch items and channels, a non-square kernel, no bias"""
    x, w = randn(2, 3, 6, 5, seed=14), randn(4, 3, 2, 3, seed=15)
    assert_close(gemm_conv(student)(x, w), F.conv2d(x, w),
                 "conv2d_im2col on a (2, 3, 6, 5) input with a (4, 3, 2, 3) weight", mistakes=gemm_mistakes(x, w))


@points(1, cell="test_conv2d_im2col")
def test_im2col_conv_bias_stride_padding(student):
    """conv2d_im2col: with a bias, and strides and paddings that do not divide evenly"""
    x, w, b = randn(3, 2, 7, 8, seed=16), randn(5, 2, 3, 3, seed=17), randn(5, seed=18)
    conv = gemm_conv(student)
    for stride, padding in [(2, 1), (3, 2)]:
        assert_close(conv(x, w, b, stride=stride, padding=padding), F.conv2d(x, w, b, stride=stride, padding=padding),
                     f"conv2d_im2col on a (3, 2, 7, 8) input, {setting(stride, padding, b)}",
                     mistakes=gemm_mistakes(x, w, b, stride, padding))


@points(1, cell="test_conv2d_im2col")
def test_im2col_conv_pairs(student):
    """conv2d_im2col: stride and padding given as (height, width) pairs"""
    x, w, b = randn(2, 3, 9, 7, seed=19), randn(2, 3, 3, 2, seed=20), randn(2, seed=21)
    stride, padding = (3, 2), (2, 1)
    assert_close(gemm_conv(student)(x, w, b, stride=stride, padding=padding),
                 F.conv2d(x, w, b, stride=stride, padding=padding),
                 f"conv2d_im2col on a (2, 3, 9, 7) input, {setting(stride, padding, b)}",
                 mistakes=gemm_mistakes(x, w, b, stride, padding))
    assert_close(gemm_conv(student)(x, w, None, stride=stride, padding=padding),
                 F.conv2d(x, w, None, stride=stride, padding=padding),
                 f"conv2d_im2col on a (2, 3, 9, 7) input, {setting(stride, padding, None)}",
                 mistakes=gemm_mistakes(x, w, None, stride, padding))
