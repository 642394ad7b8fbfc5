"""dl.run_size: the notebook's choice unless DLCOURSE_RUN_SIZE overrides it; typos stop the run."""
import pytest

import dlcourse as dl


def test_default_is_the_notebooks_choice(monkeypatch):
    monkeypatch.delenv("DLCOURSE_RUN_SIZE", raising=False)
    assert dl.run_size() == "small"
    assert dl.run_size("large") == "large"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("DLCOURSE_RUN_SIZE", " Tiny ")
    assert dl.run_size("large") == "tiny"


def test_unknown_sizes_are_refused(monkeypatch):
    monkeypatch.delenv("DLCOURSE_RUN_SIZE", raising=False)
    with pytest.raises(ValueError, match="tiny, small, large"):
        dl.run_size("medium")
    monkeypatch.setenv("DLCOURSE_RUN_SIZE", "huge")
    with pytest.raises(ValueError, match="DLCOURSE_RUN_SIZE='huge'"):
        dl.run_size()
