"""dl.numerical_gradient and dl.rel_error against autograd (the independent oracle)."""
import pytest
import torch
import torch.nn.functional as F

import dlcourse as dl


def test_numerical_gradient_matches_autograd_for_a_convolution():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2, 2, 5, 4, dtype=torch.float64, generator=g)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64, generator=g)
    grad_out = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=g)
    numeric = dl.numerical_gradient(lambda x: F.conv2d(x, w, stride=2, padding=(0, 1))[..., :2, :2], X, grad_out)
    Xr = X.clone().requires_grad_()
    F.conv2d(Xr, w, stride=2, padding=(0, 1))[..., :2, :2].backward(grad_out)
    assert dl.rel_error(numeric, Xr.grad) < 1e-7
    assert torch.equal(X, X.clone())            # x left as it was


def test_a_wrong_backward_pass_is_far_off():
    X = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grad_out = torch.ones(6, dtype=torch.float64)
    numeric = dl.numerical_gradient(torch.tanh, X, grad_out)
    assert dl.rel_error(1 - torch.tanh(X) ** 2, numeric) < 1e-8
    assert dl.rel_error(1 - torch.tanh(X), numeric) > 1e-2        # a classic slip: missing the square


def test_rel_error_is_scale_free_and_checks_shapes():
    a = torch.tensor([1e6, 1.0])
    assert dl.rel_error(a, a * (1 + 1e-9)) < 1e-8
    assert dl.rel_error(torch.zeros(3), torch.zeros(3)) == 0.0
    with pytest.raises(ValueError, match=r"\(3,\) and \(1, 3\)"):
        dl.rel_error(torch.zeros(3), torch.zeros(1, 3))
