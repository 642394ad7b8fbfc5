"""`import dlcourse as dl` gives every public name the notebooks use, each the submodule's own object."""
import importlib

import dlcourse as dl


def test_every_public_name_is_the_submodules_object():
    for name in dl.__all__:
        obj = getattr(dl, name)
        module = importlib.import_module(obj.__module__) if hasattr(obj, "__module__") else None
        if module is not None and module.__name__.startswith("dlcourse."):
            assert getattr(module, name) is obj, name


def test_public_functions_have_docstrings_for_students():
    missing = [n for n in dl.__all__ if callable(getattr(dl, n)) and not (getattr(dl, n).__doc__ or "").strip()]
    assert not missing, f"public names without a docstring: {missing}"
