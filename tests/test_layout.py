"""The trust boundary in the layout (issue 8): code that runs inside the student's kernel or on the
sandbox side imports nothing but the standard library and torch (and, in the kernel, IPython,
which is the kernel).

Why it matters: that code runs where the student's code runs (or where the student's code could
have changed files), so it must not pull in the grader, the suites or anything of the course that
would put grader logic or hidden data within the kernel's reach. The grader side may import these
files; they must never import the grader.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

AUTOGRADER = Path(__file__).resolve().parents[1] / "autograder"
# file -> the third-party top-level packages it may import besides the standard library
KERNEL_OR_SANDBOX_SIDE = {
    # exec'd in the kernel as one source; IPython is the kernel itself (its user namespace)
    AUTOGRADER / "kernel_side" / "dispatcher.py": {"torch", "IPython"},
    AUTOGRADER / "sandbox_side" / "setup.py": set(),         # run as `python -I -S setup.py SPEC`
    # the kernels' parent: imports only the modules its CONFIG names (by name, at run time: torch,
    # IPython's kernel, matplotlib), never the autograder package, whose code its kernels would hold
    AUTOGRADER / "sandbox_side" / "zygote.py": set(),
}


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                    # relative: inside the autograder package
                names.add("." * node.level + (node.module or ""))
            else:
                names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__", "_import_module"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(KERNEL_OR_SANDBOX_SIDE), ids=lambda p: str(p.relative_to(AUTOGRADER)))
def test_only_the_standard_library_and_torch(path):
    allowed = set(sys.stdlib_module_names) | {"__future__"} | KERNEL_OR_SANDBOX_SIDE[path]
    assert top_level_imports(path) - allowed == set()


def test_the_check_sees_a_forbidden_import(tmp_path):
    """The oracle: a file importing the grader or a relative module is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom autograder import testing\nfrom . import kernel\nimport numpy as np\n")
    assert top_level_imports(bad) - set(sys.stdlib_module_names) == {"autograder", ".", "numpy"}


def test_the_sandbox_program_is_started_from_its_own_file():
    from autograder import sandbox, zygote
    assert sandbox.SETUP_PROGRAM == AUTOGRADER / "sandbox_side" / "setup.py" and sandbox.SETUP_PROGRAM.is_file()
    assert zygote.ZYGOTE_PROGRAM == AUTOGRADER / "sandbox_side" / "zygote.py" and zygote.ZYGOTE_PROGRAM.is_file()


def test_every_sandbox_and_kernel_side_file_is_checked():
    found = {*AUTOGRADER.glob("sandbox_side/*.py"), *AUTOGRADER.glob("kernel_side/*.py")}
    assert {p for p in found if p.name != "__init__.py"} == set(KERNEL_OR_SANDBOX_SIDE)


def test_suite_file_names_shadow_nothing():
    """pytest imports a suite file by its base name when a module of that name is importable: a suite
    named like one of the project's tests (07's first suite was test_training.py, as tests/ has one)
    was collected as that test module when tests run the suites in-process. Every name is unique."""
    suites = sorted(p.name for p in (AUTOGRADER / "suites").glob("*/test_*.py"))
    ours = {p.name for p in (AUTOGRADER.parent / "tests").glob("*.py")}
    assert len(suites) == len(set(suites)) and not set(suites) & ours
