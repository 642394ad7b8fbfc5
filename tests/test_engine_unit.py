"""Grading engine parts that need no kernel: reading and merging submissions, the tamper scan,
the comparison helpers' messages, the pytest plugin's points and messages, the registry."""
from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "toy"))
import toy_kit  # noqa: E402
from toy_kit import insert_after, submission  # noqa: E402

from autograder import assignments  # noqa: E402
from autograder.notebook import SubmissionError, grade_id, merge, read_notebook  # noqa: E402
from autograder.tamper import scan_tampering  # noqa: E402
from autograder.plugin import INTERNAL_ERROR, GradingPlugin  # noqa: E402
from autograder.proxy import (REF, BadResult, RemoteRef, StudentError, check_result, decode_result,  # noqa: E402
                              encode_args)
from autograder.runner import GraderError, _run_suite  # noqa: E402
from autograder.testing import GradeFailure, Mistake, assert_close, assert_equal, check, fail, points  # noqa: E402

RELEASE = toy_kit.release_notebook()


def _by_gid(nb):
    return {grade_id(c): c for c in nb.cells if grade_id(c)}


# ------------------------------------------------------------------------------ reading
@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"\xff\xfe\x00garbage", "not a text file"),
    (b'{"cells": [', "truncated or damaged"),
    (b'"just a string"', "not a Jupyter notebook"),
    (b'{"metadata": {}}', "not a Jupyter notebook"),
    (b'{"cells": [{"cell_type": "code", "source": 3}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
     "not"),
])
def test_unreadable_submissions_say_why(tmp_path, content, reason):
    path = tmp_path / "s.ipynb"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=reason):
        read_notebook(path)


def test_reads_a_real_notebook_and_tolerates_duplicate_ids(tmp_path):
    nb = submission()
    nb.cells[1]["id"] = nb.cells[0]["id"]
    path = tmp_path / "s.ipynb"
    path.write_text(json.dumps(nb))
    assert [c.source for c in read_notebook(path).cells] == [c.source for c in nb.cells]


# ------------------------------------------------------------------------------ merging
def test_answers_come_from_the_submission_everything_else_from_the_release():
    nb = submission()
    _by_gid(nb)["test_add"].source = "pass"                       # a visible test made to pass
    nb.cells.remove(_by_gid(nb)["test_double"])                   # a read-only cell deleted
    nb.cells[0].source = "# my own title"                         # a plain cell edited
    merged = merge(RELEASE, nb, "toy")
    got = _by_gid(merged.nb)
    assert got["add"].source == toy_kit.ANSWERS["add"]
    assert got["test_add"].source == _by_gid(RELEASE)["test_add"].source
    assert got["test_double"].source == _by_gid(RELEASE)["test_double"].source
    assert [grade_id(c) for c in merged.nb.cells if grade_id(c)] == [grade_id(c) for c in RELEASE.cells if grade_id(c)]
    # the edited plain cell is kept as the student's own, right after the release's version
    assert merged.nb.cells[0].source == RELEASE.cells[0].source and merged.nb.cells[1].source == "# my own title"
    assert any("edited: 'test_add'" in n and "deleted: 'test_double'" in n for n in merged.notes)
    assert merged.answered == 4


def test_reordered_cells_are_put_back_and_student_cells_follow_their_neighbour():
    nb = submission()
    conv = _by_gid(nb)["my_conv"]
    nb.cells.remove(conv)
    nb.cells.insert(0, conv)
    insert_after(nb, "double", "helper = 42")
    merged = merge(RELEASE, nb)
    sources = [c.source for c in merged.nb.cells]
    assert sources.index("helper = 42") == sources.index(toy_kit.ANSWERS["double"]) + 1
    assert [grade_id(c) for c in merged.nb.cells if grade_id(c)] == [grade_id(c) for c in RELEASE.cells if grade_id(c)]
    assert any("moved" in n for n in merged.notes)
    label = merged.labels[sources.index("helper = 42")]
    assert label == f"cell {sources.index('helper = 42') + 1} (your cell after 'double')"
    assert "nbgrader" not in merged.nb.cells[sources.index("helper = 42")].metadata


def test_duplicated_answers_take_the_last_copy_and_missing_ones_keep_the_stub():
    nb = submission()
    add = _by_gid(nb)["add"]
    later = copy.deepcopy(add)
    later.source = "def add(a, b):\n    return 'last'"
    nb.cells.append(later)
    nb.cells.remove(_by_gid(nb)["double"])
    merged = merge(RELEASE, nb)
    got = _by_gid(merged.nb)
    assert got["add"].source == later.source
    assert got["double"].source == _by_gid(RELEASE)["double"].source
    assert any("'add' appears 2 times" in n for n in merged.notes)
    assert any("'double'" in n and "stubs from the release" in n for n in merged.notes)


def test_outputs_are_stripped_and_ids_unique():
    nb = submission()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output")]
            cell.execution_count = 3
    nb.cells.append(copy.deepcopy(nb.cells[1]))
    nb.cells[-1].source = "print('a copy of the imports cell, edited')"
    merged = merge(RELEASE, nb)
    assert all(c.outputs == [] and c.execution_count is None for c in merged.nb.cells if c.cell_type == "code")
    ids = [c["id"] for c in merged.nb.cells]
    assert len(ids) == len(set(ids))
    nbformat.validate(merged.nb)


def test_another_assignment_and_an_empty_submission_are_refused():
    other = submission()
    for cell in other.cells:
        if cell.metadata.get("nbgrader"):
            cell.metadata.nbgrader.grade_id = "hw9-" + cell.metadata.nbgrader.grade_id
    with pytest.raises(SubmissionError, match="none of this notebook's answer cells belong to assignment 'toy'"):
        merge(RELEASE, other, "toy")
    with pytest.raises(SubmissionError, match="empty submission"):
        merge(RELEASE, copy.deepcopy(RELEASE), "toy")
    stubs_but_own_code = insert_after(copy.deepcopy(RELEASE), "add", "def add(a, b):\n    return a + b")
    assert merge(RELEASE, stubs_but_own_code).answered == 0                 # graded: the code is there


def test_tamper_scan_finds_dispatch_internals_even_in_strings_and_imports():
    assert scan_tampering(["def f(x):\n    return x * 2", "%time y = 1\n!ls"]) == []
    assert scan_tampering(["from torch.utils._python_dispatch import _pop_mode_temporarily"]) == \
        ["_pop_mode", "_python_dispatch"]
    assert scan_tampering(["g = getattr(torch._C, '_DisableTorchDispatch')"]) == ["_DisableTorchDispatch"]
    assert scan_tampering(["class T(torch.Tensor):\n    def __torch_function__(cls, *a): ..."]) == \
        ["__torch_function__"]
    assert scan_tampering(["this is not python ( _python_dispatch"]) == ["_python_dispatch"]


# ------------------------------------------------------------------------------ comparisons
def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(GradeFailure) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_assert_close_explains_without_the_expected_value():
    expected = torch.full((2, 3), 123.456)
    assert _message(assert_close, torch.zeros(2, 4), expected, "f(X)") == "f(X): wrong shape: got (2, 4)"
    msg = _message(assert_close, expected + 0.37, expected, "f(X)")
    assert msg == "f(X): wrong values: max abs error 0.37 (6 of 6 elements differ; first difference at [0, 0])"
    assert "123" not in msg
    assert "not finite" in _message(assert_close, torch.full((2, 3), float("nan")), expected, "f(X)")
    assert _message(assert_close, [1.0], expected, "f(X)") == "f(X): wrong type: got list, expected a torch.Tensor"
    assert "wrong type: got numpy.ndarray" in _message(assert_close, np.zeros((2, 3)), expected, "f(X)")
    assert _message(assert_close, expected.double(), expected, "f", check_dtype=True) == \
        "f: wrong dtype: got torch.float64"
    assert _message(assert_close, 4.5, 123.456, "g()") == "g(): wrong value: got 4.5 (abs error 119)"
    assert "wrong number of results: got 1" in _message(assert_close, (expected,), (expected, expected), "h")


def test_assert_close_compares_in_float64_and_accepts_what_is_close():
    X = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    assert_close(X.double(), X, "float64 result for a float32 expectation")
    assert_close(X + 1e-7, X, "tiny error")
    assert_close((X, 3.0), (X, 3.0 + 1e-9), "a tuple of results")
    assert_close(torch.tensor(2.0), 2.0, "a 0-d tensor for a number")
    assert_close(torch.empty(2, 3, device="meta"), torch.empty(2, 3, device="meta"), "meta shapes")


def test_a_known_mistake_is_named_and_other_errors_stay_precise():
    X = torch.arange(6.0).reshape(2, 3)
    flipped = Mistake(X.flip(-1), "your result equals the flipped kernel's (section 2)")
    doubled = Mistake(2 * X, "you doubled it")
    assert _message(assert_close, X.flip(-1), X, "f(X)", mistakes=[doubled, flipped]) == \
        "f(X): your result equals the flipped kernel's (section 2)"
    assert _message(assert_close, X + 1, X, "f(X)", mistakes=[flipped]) == \
        "f(X): wrong values: max abs error 1 (6 of 6 elements differ; first difference at [0, 0])"
    assert_close(X, X, "f(X)", mistakes=[Mistake(X, "never named: the answer is right")])
    assert _message(assert_equal, 10, 5, "n", mistakes=[Mistake(10, "counted twice")]) == "n: counted twice"
    assert _message(assert_equal, 11, 5, "n", mistakes=[Mistake(10, "counted twice")]) == "n: wrong value: got 11"


def test_partial_results_and_named_failures():
    """The first wrong element's index for small tensors only; a named mistake travels on the failure."""
    X = torch.zeros(2, 3, 4)
    Y = X.clone()
    Y[1, 2, 3] = 1.0
    assert _message(assert_close, Y, X, "f").endswith("(1 of 24 elements differ; first difference at [1, 2, 3])")
    big = torch.zeros(200, 200)
    assert _message(assert_close, big + 1, big, "f").endswith("(40000 of 40000 elements differ)")
    with pytest.raises(GradeFailure) as e:
        assert_close(X.flip(-1) + 1, X, "f", mistakes=[Mistake(X + 1, "one added (section 1)")])
    assert str(e.value) == "f: one added (section 1)" and e.value.mistake == "one added (section 1)"
    with pytest.raises(GradeFailure) as e:
        assert_close(X + 2, X, "f", mistakes=[Mistake(X + 1, "one added")])
    assert e.value.mistake is None
    with pytest.raises(GradeFailure) as e:
        check(False, "the mask is on the CPU", mistake="drawn on the CPU (section 1)")
    assert e.value.mistake == "drawn on the CPU (section 1)"


def test_assert_equal_check_and_fail():
    assert_equal([1, (2, "a")], [1, (2, "a")], "nested")
    assert _message(assert_equal, 4, 5, "add(2, 3)") == "add(2, 3): wrong value: got 4"
    assert _message(assert_equal, "5", 5, "add(2, 3)") == "add(2, 3): wrong type: got str"
    assert "1 of 3 elements differ; first difference at [2]" in _message(assert_equal, torch.tensor([1, 2, 4]),
                                                                         torch.tensor([1, 2, 3]), "t")
    assert _message(check, False, "the loss must decrease") == "the loss must decrease"
    assert _message(fail, "nope") == "nope"
    with pytest.raises(ValueError):
        points(-1)


def test_remote_refs_refuse_to_be_used_as_data():
    ref = RemoteRef(session=None, ref_id=3, type_name="Always", origin="add")
    for use in (lambda: ref.shape, lambda: torch.allclose(ref, torch.ones(1)), lambda: ref + 1,
                lambda: np.asarray(ref), lambda: len(ref)):
        with pytest.raises(Exception, match="add returned an object of type Always; expected a tensor"):
            use()
    assert "Always" in _message(assert_close, ref, torch.ones(1), "add(a, b)")
    assert encode_args([ref, {"k": ref}]) == [{REF: 3}, {"k": {REF: 3}}]
    assert isinstance(decode_result({REF: 3, "type": "Net"}, None, "net"), RemoteRef)
    with pytest.raises(TypeError, match="cannot send an object of type object"):
        encode_args(object())


def test_arguments_cross_as_plain_data():
    X = torch.nn.Parameter(torch.ones(2))
    sent = encode_args((X, np.arange(3), np.float32(2.5), {"a": [1, None, "s"]}))
    assert type(sent[0]) is torch.Tensor and sent[0].requires_grad
    assert torch.equal(sent[1]["__dlcourse_ndarray__"], torch.arange(3))
    assert sent[2] == 2.5 and type(sent[2]) is float
    assert sent[3] == {"a": [1, None, "s"]}


# ------------------------------------------------------------------------------ the plugin
SUITE = '''
import pytest
from autograder.testing import points, assert_close, check, fail
from autograder.proxy import StudentError

@points(2, cell="test_a")
def test_passes(student):
    """passes"""
    assert student.f(1) == 2

@points(1.5, cell="test_a")
def test_grade_failure(student):
    """a grade failure"""
    check(student.f(1) == 3, "f(1) should be odd")

@points(1)
def test_plain_assert(student):
    """the docstring is the message"""
    assert student.f(1) == 5

@points(1)
def test_student_error(student):
    """calls g"""
    student.g()

@points(1)
def test_suite_bug(student):
    """never shown"""
    {}["SECRET-SUITE-KEY"]

def test_without_points(student):
    pass
'''


class FakeSession:
    """Answers the proxy like a kernel would: f(x) = 2x, g raises."""

    def check_forbid(self, forbid):
        pass

    def request(self, request, *, label, timeout=None, forbid=()):
        if request["target"] == ["name", "g"]:
            raise StudentError("g raised ValueError: bad input")
        return 2 * request["args"][0]


def test_plugin_records_points_and_student_safe_messages(tmp_path):
    (tmp_path / "test_s.py").write_text(textwrap.dedent(SUITE))
    plugin = GradingPlugin(FakeSession())
    _run_suite(tmp_path, plugin)
    records = {r.name: r for r in plugin.records.values()}
    assert list(records) == ["test_passes", "test_grade_failure", "test_plain_assert", "test_student_error",
                             "test_suite_bug", "test_without_points"]
    assert records["test_passes"].as_json() == {"name": "test_passes", "points": 2.0, "max_points": 2.0,
                                                "passed": True, "message": "", "cell": "test_a"}
    assert records["test_grade_failure"].message == "f(1) should be odd"
    assert records["test_plain_assert"].message == "the docstring is the message — not passed"
    assert records["test_student_error"].message == "calls g: g raised ValueError: bad input"
    assert records["test_suite_bug"].message == INTERNAL_ERROR
    assert records["test_without_points"].max_points == 1.0 and records["test_without_points"].passed
    log = "\n".join(plugin.instructor_log)
    assert "SECRET-SUITE-KEY" in log and "test_without_points has no @points" in log
    assert all("SECRET" not in r.message for r in records.values())


def test_plugin_records_the_named_mistake(tmp_path):
    (tmp_path / "test_m.py").write_text(textwrap.dedent('''
        from autograder.testing import Mistake, assert_equal, check, points

        @points(1, cell="test_a")
        def test_named(student):
            assert_equal(student.f(2), 5, "f(2)", mistakes=[Mistake(4, "you doubled x (section 1)")])

        @points(1, cell="test_a")
        def test_unnamed(student):
            check(student.f(2) == 5, "f(2) is wrong")
    '''))
    plugin = GradingPlugin(FakeSession())
    _run_suite(tmp_path, plugin)
    records = {r.name: r.as_json() for r in plugin.records.values()}
    assert records["test_named"]["message"] == "f(2): you doubled x (section 1)"
    assert records["test_named"]["mistake"] == "you doubled x (section 1)"
    assert "mistake" not in records["test_unnamed"]


def test_the_suite_runs_torch_on_one_thread_and_the_caller_keeps_its_own(tmp_path):
    # Two graders on two cores: OpenMP threads spinning in one grader take the other's CPU.
    import torch
    (tmp_path / "test_t.py").write_text(textwrap.dedent('''
        import torch
        from autograder.testing import check, points

        @points(1, cell="test_a")
        def test_threads(student):
            check(torch.get_num_threads() == 1, f"{torch.get_num_threads()} threads")
    '''))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        plugin = GradingPlugin(FakeSession())
        _run_suite(tmp_path, plugin)
        (record,) = plugin.records.values()
        assert record.passed, record.message
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_plugin_collects_without_running_for_broken_submissions(tmp_path):
    (tmp_path / "test_s.py").write_text(textwrap.dedent(SUITE))
    plugin = GradingPlugin(None, not_graded="the submitted file is empty")
    _run_suite(tmp_path, plugin, collect_only=True)
    assert len(plugin.records) == 6
    assert all(r.message == "not graded: the submitted file is empty" and not r.passed
               for r in plugin.records.values())


def test_a_suite_that_does_not_import_is_a_grader_error(tmp_path):
    (tmp_path / "test_broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(GraderError, match="could not run"):
        _run_suite(tmp_path, GradingPlugin(None, not_graded="x"), collect_only=True)


# ------------------------------------------------------------------------------ the registry
def test_assignment_registry(tmp_path):
    (tmp_path / "autograder" / "suites" / "a1").mkdir(parents=True)
    (tmp_path / "autograder" / "suites" / "a1" / "test_a1.py").write_text("")
    (tmp_path / "autograder" / "suites" / "empty").mkdir()
    assert [a.name for a in assignments.list_assignments(tmp_path)] == ["a1"]
    with pytest.raises(assignments.UnknownAssignment, match=r"unknown assignment 'zz' \(known: a1\)"):
        assignments.find_assignment("zz", tmp_path)
    with pytest.raises(FileNotFoundError, match="generate_assignment a1"):
        assignments.find_assignment("a1", tmp_path)
    (tmp_path / "course" / "a1").mkdir(parents=True)
    (tmp_path / "course" / "a1" / "a1.ipynb").write_text("{}")
    found = assignments.find_assignment("a1", tmp_path)
    assert found.release_notebook == tmp_path / "course" / "a1" / "a1.ipynb"
    assert found.suite_dir == tmp_path / "autograder" / "suites" / "a1"


def test_the_toy_release_matches_its_definition():
    on_disk = nbformat.read(toy_kit.HERE / "release" / "toy.ipynb", as_version=4)
    assert [(c.cell_type, c.source, c.metadata) for c in on_disk.cells] == \
        [(c.cell_type, c.source, c.metadata) for c in RELEASE.cells]


# ------------------------------------------------------------------------------ bounded grader resources
def _through_file(value):
    """What the grader gets back when the kernel saves `value` (torch.save, then weights_only load)."""
    import io
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _hostile_file(pickle_bytes: bytes):
    """A torch.save file whose pickle is `pickle_bytes` (what a kernel that writes its own bytes
    can send), read back as the grader reads results."""
    import io
    import zipfile
    buffer, out = io.BytesIO(), io.BytesIO()
    torch.save([0], buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, pickle_bytes if info.filename.endswith("data.pkl") else src.read(info))
    out.seek(0)
    return torch.load(out, weights_only=True)


def test_results_nested_too_deeply_or_too_many_are_refused_without_recursion():
    n = 100_000                         # 100,000 levels of lists in a 200 kB file
    deep = _hostile_file(b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b".")      # EMPTY_LIST x n, APPEND x n-1
    assert isinstance(deep, list)
    with pytest.raises(BadResult, match="nested more than 32 levels"):
        check_result({"status": "ok", "value": deep}, "f")
    with pytest.raises(BadResult, match="too many values"):
        check_result({"status": "ok", "value": list(range(300_000))}, "f")
    ok = {"status": "ok", "value": [(1, "a", None), {"k": [torch.ones(2)]}]}
    back = check_result(ok, "f")
    assert back["value"][0] == (1, "a", None) and torch.equal(back["value"][1]["k"][0], torch.ones(2))


def test_tensors_whose_storage_is_smaller_than_their_size_are_refused_or_compacted():
    huge = _through_file(torch.zeros(1).expand(2**20, 2**20))          # 4 bytes on disk, 4 TiB as a tensor
    assert huge.untyped_storage().nbytes() == 4
    with pytest.raises(BadResult, match="too large"):
        check_result({"status": "ok", "value": huge}, "f", max_bytes=2**30)
    many = [_through_file(torch.zeros(1).expand(2**18))] * 2000        # each small, together 2 GiB
    with pytest.raises(BadResult, match="too large"):
        check_result({"status": "ok", "value": many}, "f", max_bytes=2**30)
    expanded = _through_file(torch.arange(3.0).expand(1000, 3))
    overlapping = _through_file(torch.arange(10.0).as_strided((5, 5), (1, 1)))
    got = check_result({"status": "ok", "value": [expanded, overlapping]}, "f")["value"]
    for t, expected in zip(got, [torch.arange(3.0).expand(1000, 3), torch.arange(10.0).as_strided((5, 5), (1, 1))]):
        assert t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * 4 and torch.equal(t, expected)
    with pytest.raises(BadResult, match="sparse"):
        check_result({"status": "ok", "value": _through_file(torch.eye(3).to_sparse())}, "f")


@pytest.mark.parametrize("depth", [200, 500, 100_000])
def test_a_deeply_nested_notebook_is_a_submission_error(tmp_path, depth):
    path = tmp_path / "deep.ipynb"
    path.write_text('{"cells": [], "metadata": {"x": ' + "[" * depth + "]" * depth + "}, "
                    '"nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(SubmissionError, match="nested"):
        read_notebook(path)


def test_the_tamper_scan_is_bounded(monkeypatch):
    import autograder.tamper as tamper_module
    long_cell = "x = 1\n" * 100_000 + "torch._C._pop_torch_dispatch_stack()\n"     # over SCAN_PARSE_CHARS
    assert scan_tampering([long_cell]) == ["_pop_torch_dispatch_stack"]           # scanned as text
    monkeypatch.setattr(tamper_module.ast, "parse", lambda *a, **k: pytest.fail("parsed after the deadline"))
    assert scan_tampering(["y = TorchDispatchMode"], seconds=-1) == ["TorchDispatchMode"]


def test_autograd_group_catches_every_route_in_process():
    """The 'autograd' op group, without a kernel: backward, autograd.grad, the engine itself, forward-mode
    duals (torch.func.jvp/jacfwd) are forbidden; a gradient written by hand is not."""
    import torch.autograd.forward_ad as fwAD

    from autograder.kernel_side import dispatcher as kernel_side

    x = torch.ones(3)

    def backward():
        leaf = x.clone().requires_grad_()
        (leaf * leaf).sum().backward()
        return leaf.grad

    def engine():
        leaf = x.clone().requires_grad_()
        out = (leaf * leaf).sum()
        torch.autograd.Variable._execution_engine.run_backward((out,), (torch.ones(()),), False, False, (), False,
                                                               True)
        return leaf.grad

    def forward_ad():
        with fwAD.dual_level():
            return fwAD.unpack_dual(fwAD.make_dual(x, torch.ones_like(x)) ** 2).tangent

    for fn in (backward, engine, forward_ad):
        value, problem = kernel_side._guarded_call(fn, (), {}, ("autograd",))
        assert problem and problem["status"] == "forbidden" and problem["ops"][0][1] == "autograd", fn.__name__
    value, problem = kernel_side._guarded_call(lambda: 2 * x, (), {}, ("autograd", "convolution"))
    assert problem is None and torch.equal(value, 2 * x)


# ------------------------------------------------------------------------------ time bounds of the call phase
def test_a_hung_function_costs_one_timeout_and_the_suite_has_a_total_bound():
    """KernelSession.request without a kernel: the calls' `_request` (the round trip to the kernel) is faked."""
    import asyncio
    import time

    from autograder.kernel import KernelSession
    from autograder.proxy import StudentTimeout
    from autograder.sandbox import Limits

    session = KernelSession(sandbox=None, limits=Limits(call_timeout=5, suite_timeout=1.5))
    sent = []

    async def fake_request(request, label, timeout):
        sent.append((request["target"][1], timeout))
        if request["target"][1] == "hangs":
            error = StudentTimeout(f"{label} did not finish within {timeout:g} s and was stopped")
            error.timed_out = True
            raise error
        await asyncio.sleep(0.3)
        return {"status": "ok", "value": 1}

    session.calls._request = fake_request
    call = {"op": "call", "method": None, "args": [], "kwargs": {}, "forbid": []}
    try:
        assert session.request({**call, "target": ["name", "ok"]}, label="ok") == 1
        with pytest.raises(StudentTimeout) as first:
            session.request({**call, "target": ["name", "hangs"]}, label="hangs")
        with pytest.raises(StudentTimeout) as again:                  # not sent again: same message
            session.request({**call, "target": ["name", "hangs"]}, label="hangs", timeout=30)
        assert str(again.value) == str(first.value)
        assert [name for name, _ in sent] == ["ok", "hangs"]
        assert all(t <= 1.5 for _, t in sent)                  # no call may outlast the suite's budget
        time.sleep(0.7)
        with pytest.raises(StudentTimeout, match=r"calls to your notebook \(1.5 s\) ran out"):
            session.request({**call, "target": ["name", "ok"]}, label="ok")
        assert len(sent) == 2
    finally:
        session.process._zmq.destroy(linger=0)


def test_the_memory_check_reads_page_tables_only_above_the_resident_size(monkeypatch):
    """Sandbox.exceeds_memory answers as memory_bytes() > limit (PSS: shared pages counted once) but
    reads PSS only when the resident sizes add up to more than the limit. Oracle: the PSS the kernel
    reports, for a parent and a forked child that share 200 MB, so that their summed RSS is far above
    their PSS."""
    import os
    import signal
    import subprocess

    from autograder import sandbox as sandbox_module
    script = ("import os, sys, time\nb = bytearray(200 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
              "os.fork()\nos.write(1, b'%d\\n' % os.getpid())\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [proc.pid]
    try:
        # Each process writes its pid after the fork (one write each, so the lines cannot mix): both
        # have done their work when both lines came.
        pids = sorted({int(proc.stdout.readline()) for _ in range(2)} | {proc.pid})
        assert len(pids) == 2
        box = sandbox_module.Sandbox(sandbox_module.Limits(isolation="none"))
        monkeypatch.setattr(box, "processes", lambda: pids)
        rss = sum(map(sandbox_module._resident_bytes, pids))
        pss = box.memory_bytes()
        assert pss < rss - 50 * 2**20                        # the shared 200 MB count once in PSS
        read = []
        monkeypatch.setattr(box, "memory_bytes", lambda p=None: read.append(1) or pss)
        # A little above the resident sizes read above: a process's resident size can still move by
        # a few pages (once, under a loaded CI machine, by more than 1 MB).
        assert box.exceeds_memory(rss + 16 * 2**20) is False and read == []    # resident sizes suffice
        assert box.exceeds_memory((pss + rss) // 2) is False and read == [1]
        assert box.exceeds_memory(pss - 2**20) is True
    finally:
        for pid in pids[::-1]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
