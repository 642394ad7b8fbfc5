"""Project-wide test settings.

tests/fixtures/ holds a toy assignment whose hidden suite (tests/fixtures/toy/suite/test_*.py) is run
by the grader against toy submissions; pytest must not collect it as one of the project's tests.
"""
import pytest

collect_ignore = ["fixtures"]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake assignment graded by the fake grader of tests/autograder_fakes.py (no kernels)."""
    import autograder_fakes as fakes
    fakes.install(tmp_path, monkeypatch)
    return fakes.make_assignment(tmp_path)


def pytest_terminal_summary(terminalreporter):
    """The naming rate of each bank graded in this run (issue 9), in pytest's summary."""
    try:
        from bank.common import NAMING_RATES
    except ImportError:
        return
    if not NAMING_RATES:
        return
    terminalreporter.section("honest mistakes named by the hidden suites")
    for assignment in sorted(NAMING_RATES):
        rate = NAMING_RATES[assignment]
        if rate is None:
            terminalreporter.write_line(f"{assignment}: not measured (its bank names no mistake: Case(..., names=...))")
            continue
        terminalreporter.write_line(rate.line())
        for missed in rate.missed:
            terminalreporter.write_line(f"    not named: {missed}")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The banks' grading starts in the background now, and the tests that read it run last
    (tests/test_banks.py: the banks then use the cores the other tests leave idle). Last of the
    hooks, so that only the banks of tests that -k and -m kept are graded."""
    waiting = [item for item in items if item.path.name == "test_banks.py"
               and "graded" in getattr(item, "fixturenames", ())]
    if not waiting or config.option.collectonly:
        return
    chosen = {id(item) for item in waiting}
    items[:] = [item for item in items if id(item) not in chosen] + waiting
    waiting[0].module.start_grading({item.callspec.params["bank"].ASSIGNMENT for item in waiting})
