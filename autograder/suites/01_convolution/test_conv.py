"""Hidden tests of 01_convolution: conv2d_naive, im2col and conv2d_im2col against PyTorch.

Shapes are chosen to expose mistakes: non-square inputs and kernels (height/width mixed up),
several channels and batch items (sums over the wrong axis), strides and paddings that do not
divide evenly (off-by-one sizes, one-sided padding), pair-valued settings, bias None vs given.
PyTorch's convolution and unfold are forbidden while the student's functions run.
"""
import torch
import torch.nn.functional as F

from autograder.testing import assert_close, points

CONV = ("convolution", "unfold")        # op groups forbidden inside the student's functions


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def setting(stride, padding, bias):
    return f"stride={stride}, padding={padding}, {'with' if bias is not None else 'without'} bias"


# ------------------------------------------------------------------ conv2d_naive (4 points)
def naive(student):
    return student.function("conv2d_naive", forbid=CONV, timeout=60)


@points(1, cell="test_conv2d_naive")
def test_naive_one_channel(student):
    """conv2d_naive: one channel, a non-square input and an asymmetric 2x3 kernel, no bias"""
    x, w = randn(1, 1, 5, 6, seed=0), randn(1, 1, 2, 3, seed=1)
    assert_close(naive(student)(x, w), F.conv2d(x, w),
                 "conv2d_naive on a (1, 1, 5, 6) input with a (1, 1, 2, 3) kernel")


@points(1, cell="test_conv2d_naive")
def test_naive_channels_and_bias(student):
    """conv2d_naive: several batch items, input and output channels, with a bias"""
    x, w, b = randn(3, 4, 6, 5, seed=2), randn(2, 4, 3, 2, seed=3), randn(2, seed=4)
    assert_close(naive(student)(x, w, b), F.conv2d(x, w, b),
                 "conv2d_naive on a (3, 4, 6, 5) input, (2, 4, 3, 2) weight and a bias")


@points(1, cell="test_conv2d_naive")
def test_naive_stride_and_padding(student):
    """conv2d_naive: strides and paddings that do not divide the input evenly"""
    x, w = randn(2, 3, 7, 5, seed=5), randn(4, 3, 3, 2, seed=6)
    conv = naive(student)
    for stride, padding in [(2, 1), (3, 2)]:
        assert_close(conv(x, w, None, stride=stride, padding=padding), F.conv2d(x, w, stride=stride, padding=padding),
                     f"conv2d_naive on a (2, 3, 7, 5) input, {setting(stride, padding, None)}")


@points(1, cell="test_conv2d_naive")
def test_naive_pair_stride_and_padding(student):
    """conv2d_naive: stride and padding given as (height, width) pairs, with a bias"""
    x, w, b = randn(2, 2, 8, 7, seed=7), randn(3, 2, 2, 3, seed=8), randn(3, seed=9)
    stride, padding = (2, 3), (1, 2)
    assert_close(naive(student)(x, w, b, stride=stride, padding=padding),
                 F.conv2d(x, w, b, stride=stride, padding=padding),
                 f"conv2d_naive on a (2, 2, 8, 7) input, {setting(stride, padding, b)}")


# ------------------------------------------------------------------ im2col (4 points)
def unfold(student):
    return student.function("im2col", forbid=CONV, timeout=30)


@points(1, cell="test_im2col")
def test_im2col_one_channel(student):
    """im2col: one channel, a 2x2 kernel on a non-square input"""
    x = randn(1, 1, 4, 5, seed=10)
    assert_close(unfold(student)(x, 2), F.unfold(x, 2), "im2col of a (1, 1, 4, 5) input with a 2x2 kernel")


@points(1, cell="test_im2col")
def test_im2col_channels_and_rectangular_kernel(student):
    """im2col: several channels and batch items, a non-square kernel (rows ordered channel, kernel row, kernel column)"""
    x = randn(2, 3, 5, 6, seed=11)
    assert_close(unfold(student)(x, (2, 3)), F.unfold(x, (2, 3)),
                 "im2col of a (2, 3, 5, 6) input with a (2, 3) kernel")


@points(1, cell="test_im2col")
def test_im2col_stride_and_padding(student):
    """im2col: strides and paddings that do not divide the input evenly"""
    x = randn(2, 2, 7, 6, seed=12)
    cols = unfold(student)
    for stride, padding in [(2, 1), (3, 2)]:
        assert_close(cols(x, 3, stride=stride, padding=padding), F.unfold(x, 3, stride=stride, padding=padding),
                     f"im2col of a (2, 2, 7, 6) input, 3x3 kernel, stride={stride}, padding={padding}")


@points(1, cell="test_im2col")
def test_im2col_pairs(student):
    """im2col: kernel size, stride and padding given as (height, width) pairs"""
    x = randn(1, 2, 8, 9, seed=13)
    kernel_size, stride, padding = (3, 2), (2, 3), (1, 0)
    assert_close(unfold(student)(x, kernel_size, stride=stride, padding=padding),
                 F.unfold(x, kernel_size, stride=stride, padding=padding),
                 f"im2col of a (1, 2, 8, 9) input, kernel {kernel_size}, stride={stride}, padding={padding}")


# ------------------------------------------------------------------ conv2d_im2col (3 points)
def gemm_conv(student):
    return student.function("conv2d_im2col", forbid=CONV, timeout=30)


@points(1, cell="test_conv2d_im2col")
def test_im2col_conv_channels(student):
    """conv2d_im2col: several batch items and channels, a non-square kernel, no bias"""
    x, w = randn(2, 3, 6, 5, seed=14), randn(4, 3, 2, 3, seed=15)
    assert_close(gemm_conv(student)(x, w), F.conv2d(x, w),
                 "conv2d_im2col on a (2, 3, 6, 5) input with a (4, 3, 2, 3) weight")


@points(1, cell="test_conv2d_im2col")
def test_im2col_conv_bias_stride_padding(student):
    """conv2d_im2col: with a bias, and strides and paddings that do not divide evenly"""
    x, w, b = randn(3, 2, 7, 8, seed=16), randn(5, 2, 3, 3, seed=17), randn(5, seed=18)
    conv = gemm_conv(student)
    for stride, padding in [(2, 1), (3, 2)]:
        assert_close(conv(x, w, b, stride=stride, padding=padding), F.conv2d(x, w, b, stride=stride, padding=padding),
                     f"conv2d_im2col on a (3, 2, 7, 8) input, {setting(stride, padding, b)}")


@points(1, cell="test_conv2d_im2col")
def test_im2col_conv_pairs(student):
    """conv2d_im2col: stride and padding given as (height, width) pairs"""
    x, w, b = randn(2, 3, 9, 7, seed=19), randn(2, 3, 3, 2, seed=20), randn(2, seed=21)
    stride, padding = (3, 2), (2, 1)
    assert_close(gemm_conv(student)(x, w, b, stride=stride, padding=padding),
                 F.conv2d(x, w, b, stride=stride, padding=padding),
                 f"conv2d_im2col on a (2, 3, 9, 7) input, {setting(stride, padding, b)}")
    assert_close(gemm_conv(student)(x, w, None, stride=stride, padding=padding),
                 F.conv2d(x, w, None, stride=stride, padding=padding),
                 f"conv2d_im2col on a (2, 3, 9, 7) input, {setting(stride, padding, None)}")
