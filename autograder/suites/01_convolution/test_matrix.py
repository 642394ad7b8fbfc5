"""Hidden tests of 01_convolution: conv_matrix, the matrix of a stride-1, unpadded convolution.

Oracle: the matrix built column by column from F.conv2d of the basis images (column p is the
convolution of the image that is 1 at pixel p and 0 elsewhere), and F.conv2d of random inputs.
Torch's convolution and unfold are forbidden while the student's function runs (the notebook says
so): building the matrix with F.conv2d on one-hot images is the grader's oracle, not an answer. The
student's own conv2d_naive on those images is accepted.
"""
import torch
import torch.nn.functional as F

from autograder.testing import assert_close, check, named, points

TRANSPOSED = ("your matrix is the transpose of M: it has one row per input pixel and one column per output; M has "
              "one row per output position (H_out * W_out rows) and one column per input pixel (H * W columns), so "
              "that M @ x.flatten() is the flattened output (section 7)")


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def oracle_matrix(kernel, H, W):
    basis = torch.eye(H * W, dtype=kernel.dtype).reshape(H * W, 1, H, W)     # one image per input pixel
    return F.conv2d(basis, kernel[None, None]).reshape(H * W, -1).T          # (H_out*W_out, H*W)


def student_matrix(student, kernel, H, W):
    M = student.function("conv_matrix", forbid=("convolution", "unfold"), timeout=30)(kernel, (H, W))
    what = f"conv_matrix of a {tuple(kernel.shape)} kernel for a {(H, W)} input"
    check(isinstance(M, torch.Tensor), f"{what}: expected a tensor, got {type(M).__name__}")
    expected_shape = ((H - kernel.shape[0] + 1) * (W - kernel.shape[1] + 1), H * W)
    if tuple(M.shape) == expected_shape[::-1] and expected_shape[0] != expected_shape[1]:
        oracle = oracle_matrix(kernel, H, W)
        if torch.allclose(M.detach().double().T, oracle.double(), rtol=1e-4, atol=1e-5):
            named(f"{what}: wrong shape: got {tuple(M.shape)}", TRANSPOSED)
    check(tuple(M.shape) == expected_shape,
          f"{what}: wrong shape: got {tuple(M.shape)} (rows are outputs, columns are input pixels)")
    return M, what


@points(1, cell="test_conv_matrix")
def test_matrix_lecture_case(student):
    """conv_matrix: the lecture's 3x3 input and 2x2 kernel (a 4x9 matrix)"""
    kernel = randn(2, 2, seed=0)
    M, what = student_matrix(student, kernel, 3, 3)
    assert_close(M, oracle_matrix(kernel, 3, 3), what)


@points(1, cell="test_conv_matrix")
def test_matrix_acts_like_convolution(student):
    """conv_matrix: a non-square input and kernel; M @ x.flatten() must equal the convolution for random inputs"""
    kernel = randn(2, 3, seed=1)
    M, what = student_matrix(student, kernel, 5, 7)
    for seed in range(2, 6):
        x = randn(5, 7, seed=seed)
        assert_close(M @ x.flatten(), F.conv2d(x[None, None], kernel[None, None]).flatten(),
                     f"{what}, multiplied by a random flattened input")


@points(1, cell="test_conv_matrix")
def test_matrix_tall_kernel_float64(student):
    """conv_matrix: a tall 3x2 kernel on a wide input, in float64"""
    kernel = randn(3, 2, seed=6, dtype=torch.float64)
    M, what = student_matrix(student, kernel, 4, 6)
    assert_close(M, oracle_matrix(kernel, 4, 6), what, rtol=1e-7, atol=1e-9)
