"""What hidden suites import: points, comparisons that explain themselves, and the failures.

    from autograder.testing import points, assert_close, assert_equal, check, fail, Mistake

Every message describes what is wrong with the STUDENT's result (wrong type, wrong shape (got ...),
not finite, max abs error ...) and never prints the expected value: students read these messages,
and an expected value in a message would leak the hidden test. Values are compared in float64 so
that a student's `torch.set_default_dtype(torch.float64)` does not change a correct grade; dtype
is only checked when asked (`check_dtype=True`).

Known mistakes: beside the correct reference, a test may pass the outputs that the common wrong
answers give on the same input, computed here in the grader (`Mistake(output, explain)`). When the
student's result fails the reference but matches one of them, the message says what the student
most likely did (`explain`, written in the student's terms with the notebook section to re-read)
instead of only how far off the values are. The mistake's output is never sent to the kernel and
never shown as a value. A check that recognises a mistake by behaviour rather than by one output
(a mask drawn on the wrong device, a network without activations) names it with
`fail(message, mistake=explain)` or `check(condition, message, mistake=explain)`. Either way the
failure carries the explanation (`GradeFailure.mistake`), the result JSON has it as the test's
"mistake", and the feedback puts each named mistake first in its exercise, then the tests that
failed because of it.

Partial results: a wrong shape is reported before any value; for a small tensor (at most
SMALL_TENSOR elements) the message gives the index of the first element that differs
("first difference at [0, 1, 2, 3]"), an index only, never a value of the reference.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from autograder.proxy import (BadResult, ForbiddenCall, MissingName, RemoteRef, StudentCrash,  # noqa: F401
                              StudentError, StudentFailure, StudentTimeout)

__all__ = ["points", "assert_close", "assert_equal", "check", "fail", "GradeFailure", "StudentFailure",
           "StudentError", "StudentTimeout", "StudentCrash", "ForbiddenCall", "MissingName", "BadResult",
           "RemoteRef", "nonzero_input", "remote_generator", "student_nn", "Mistake", "named"]


SMALL_TENSOR = 10_000       # tensors up to this many elements get the first wrong element's index


class GradeFailure(AssertionError):
    """A check in the hidden suite failed; str(e) is the message the student sees.

    `mistake`: the explanation of the known mistake the result matched (a Mistake's `explain`), or None.
    """

    def __init__(self, message: str, mistake: str | None = None):
        super().__init__(message)
        self.mistake = mistake


def points(n: float, cell: str | None = None):
    """Decorator: this test is worth `n` points, for the notebook's test cell with grade_id `cell`."""
    if not isinstance(n, numbers.Real) or isinstance(n, bool) or n < 0:
        raise ValueError(f"points must be a non-negative number, not {n!r}")
    return pytest.mark.points(float(n), cell=cell)


def fail(message: str, mistake: str | None = None):
    """Fail with `message`; `mistake`: the explanation of the known mistake recognised (see GradeFailure)."""
    raise GradeFailure(message, mistake)


def check(condition, message: str, mistake: str | None = None) -> None:
    """Fail with `message` unless `condition` is true (`mistake` as in `fail`)."""
    if not condition:
        raise GradeFailure(message, mistake)


def named(what: str, explain: str):
    """Fail naming a known mistake: "<what>: <explain>", with `explain` as the failure's mistake."""
    raise GradeFailure(f"{what}: {explain}", explain)


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer for one test input.

    output:  what the mistaken computation returns for the test's input (computed in the grader)
    explain: what the student most likely did, e.g. "your result equals the convolution with a
             flipped kernel: deep learning's 'convolution' is cross-correlation (section 2)"
    """
    output: object
    explain: str


def _matching_mistake(actual, mistakes, rtol, atol):
    """The first mistake whose output `actual` matches (same rules as assert_close), or None."""
    for m in mistakes:
        try:
            assert_close(actual, m.output, "", rtol=rtol, atol=atol)
        except GradeFailure:
            continue
        except TypeError:       # a mistake output of a kind assert_close does not compare
            continue
        return m
    return None


def _describe_type(value) -> str:
    if isinstance(value, RemoteRef):
        return f"an object of type {value.type_name}"
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _as_float64(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t.to(torch.complex128) if t.is_complex() else t.to(torch.float64)


def assert_close(actual, expected, what: str, rtol: float = 1e-4, atol: float = 1e-5, check_dtype: bool = False,
                 mistakes=()):
    """Compare the student's `actual` with the grader's `expected` (tensor, number, or a tuple/list of them).

    Fails with e.g. "conv2d_naive with stride 2: wrong shape: got (2, 4, 3, 3)" or
    "... wrong values: max abs error 0.37 (12 of 72 elements differ)"; when `actual` matches one of
    `mistakes` (a sequence of Mistake) instead, with "<what>: <that mistake's explain>".
    """
    if mistakes:
        try:
            assert_close(actual, expected, what, rtol=rtol, atol=atol, check_dtype=check_dtype)
        except GradeFailure:
            m = _matching_mistake(actual, mistakes, rtol, atol)
            if m is None:
                raise
            named(what, m.explain)
        return
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)):
            fail(f"{what}: wrong type: got {_describe_type(actual)}, expected a {type(expected).__name__}")
        if len(actual) != len(expected):
            fail(f"{what}: wrong number of results: got {len(actual)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{what} (result {i})", rtol=rtol, atol=atol, check_dtype=check_dtype)
        return
    if isinstance(expected, numbers.Number) and not isinstance(expected, torch.Tensor):
        if isinstance(actual, torch.Tensor) and actual.numel() == 1 and actual.device.type != "meta":
            actual = actual.item()
        if isinstance(actual, bool) or not isinstance(actual, numbers.Number):
            fail(f"{what}: wrong type: got {_describe_type(actual)}, expected a number")
        if not math.isfinite(abs(actual)):
            if math.isfinite(abs(expected)):
                fail(f"{what}: the result is not finite (got {actual})")
            return
        err = abs(actual - expected)
        check(err <= atol + rtol * abs(expected), f"{what}: wrong value: got {actual:.6g} (abs error {err:.3g})")
        return
    expected = torch.as_tensor(expected) if isinstance(expected, np.ndarray) else expected
    if not isinstance(expected, torch.Tensor):
        raise TypeError(f"assert_close compares tensors and numbers, not {type(expected).__name__}")
    if not isinstance(actual, torch.Tensor):
        fail(f"{what}: wrong type: got {_describe_type(actual)}, expected a torch.Tensor")
    if tuple(actual.shape) != tuple(expected.shape):
        fail(f"{what}: wrong shape: got {tuple(actual.shape)}")
    if check_dtype and actual.dtype != expected.dtype:
        fail(f"{what}: wrong dtype: got {actual.dtype}")
    if actual.device.type == "meta" or expected.device.type == "meta":
        check(actual.device.type == expected.device.type,
              f"{what}: got a tensor on the {actual.device.type} device")
        return
    if actual.dtype == torch.bool or expected.dtype == torch.bool:
        _check_equal_tensors(actual, expected, what)
        return
    a, e = _as_float64(actual.cpu()), _as_float64(expected.cpu())
    bad_a, bad_e = ~torch.isfinite(a), ~torch.isfinite(e)
    if bool((bad_a & ~bad_e).any()):
        fail(f"{what}: the result is not finite ({int((bad_a & ~bad_e).sum())} elements are NaN or inf)")
    close = torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not bool(close.all()):
        diff = (a - e).abs()
        diff = diff[torch.isfinite(diff)]
        err = float(diff.max()) if diff.numel() else float("inf")
        n_bad = int((~close).sum())
        fail(f"{what}: wrong values: max abs error {err:.3g} ({n_bad} of {close.numel()} elements differ"
             f"{_first_difference(close)})")


def _check_equal_tensors(actual, expected, what):
    a, e = actual.cpu(), expected.cpu()
    if a.dtype != e.dtype:
        a, e = _as_float64(a), _as_float64(e)
    same = (a == e) | (torch.isnan(a) & torch.isnan(e)) if a.is_floating_point() else (a == e)
    if not bool(same.all()):
        fail(f"{what}: wrong values: {int((~same).sum())} of {same.numel()} elements differ{_first_difference(same)}")


def _first_difference(ok: torch.Tensor) -> str:
    """"; first difference at [0, 1, 2]" for a small tensor with a False in `ok` (an index, never a value)."""
    if ok.dim() == 0 or ok.numel() > SMALL_TENSOR:
        return ""
    index = (~ok).flatten().nonzero()
    if not index.numel():
        return ""
    position = torch.unravel_index(index[0, 0], ok.shape)
    return f"; first difference at [{', '.join(str(int(i)) for i in position)}]"


def assert_equal(actual, expected, what: str, mistakes=()):
    """Exact equality (tensors elementwise, after a shape check); the message shows only the student's value.
    With `mistakes`, as in assert_close (a mistake matches by exact equality)."""
    if mistakes:
        try:
            assert_equal(actual, expected, what)
        except GradeFailure:
            for m in mistakes:
                try:
                    assert_equal(actual, m.output, what)
                except GradeFailure:
                    continue
                named(what, m.explain)
            raise
        return
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            fail(f"{what}: wrong type: got {_describe_type(actual)}, expected a torch.Tensor")
        if tuple(actual.shape) != tuple(expected.shape):
            fail(f"{what}: wrong shape: got {tuple(actual.shape)}")
        _check_equal_tensors(actual, expected, what)
        return
    if isinstance(actual, torch.Tensor) and not isinstance(expected, torch.Tensor):
        fail(f"{what}: wrong type: got a torch.Tensor, expected {_describe_type(expected)}")
    if isinstance(actual, RemoteRef):
        fail(f"{what}: wrong type: got {_describe_type(actual)}")
    if type(actual) is not type(expected) and not (isinstance(actual, numbers.Number)
                                                  and isinstance(expected, numbers.Number)
                                                  and not isinstance(actual, bool)):
        fail(f"{what}: wrong type: got {_describe_type(actual)}")
    if isinstance(expected, (tuple, list)):
        if len(actual) != len(expected):
            fail(f"{what}: wrong length: got {len(actual)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_equal(a, e, f"{what} (item {i})")
        return
    if isinstance(expected, dict):
        if set(actual) != set(expected):
            fail(f"{what}: wrong keys: got {sorted(map(str, actual))[:20]}")
        for k in expected:
            assert_equal(actual[k], expected[k], f"{what} [{k!r}]")
        return
    if actual != expected:
        shown = repr(actual)
        fail(f"{what}: wrong value: got {shown if len(shown) <= 120 else shown[:117] + '...'}")


# ----------------------------------------------------------------------------------------------
# Inputs that make mistakes visible
# ----------------------------------------------------------------------------------------------
def nonzero_input(*shape, seed: int) -> torch.Tensor:
    """Values in [0.5, 1.5) with random signs, shape `shape`: never 0, so an element that the
    student's code zeroes (dropped, masked, clipped) is recognisable in the result."""
    g = torch.Generator().manual_seed(seed)
    magnitude = torch.rand(*shape, generator=g) + 0.5
    sign = torch.randint(0, 2, shape, generator=g) * 2 - 1
    return magnitude * sign


def remote_generator(student, seed: int) -> RemoteRef:
    """A torch.Generator seeded with `seed`, living in the student's kernel.

    A generator is not data, so it cannot cross to the kernel; it is built there from the notebook's
    own `import torch` and handed to student functions as a RemoteRef argument."""
    return student.get("torch").attr("Generator")().method("manual_seed")(seed)


def student_nn(student) -> RemoteRef:
    """The notebook's `nn` (torch.nn, imported in its read-only set-up cell), to build modules in the
    kernel with the student's own torch. Fails the test when the notebook rebound the name."""
    torch_nn = student.get("nn")
    check(isinstance(torch_nn, RemoteRef) and torch_nn.attr("__name__") == "torch.nn",
          "the notebook's `nn` is not torch.nn any more: do not reassign the names imported in the set-up cell")
    return torch_nn
