"""Project-wide test settings.

tests/fixtures/ holds a toy assignment whose hidden suite (tests/fixtures/toy/suite/test_*.py) is run
by the grader against toy submissions; pytest must not collect it as one of the project's tests.
"""
collect_ignore = ["fixtures"]


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
