"""Project-wide test settings.

tests/fixtures/ holds a toy assignment whose hidden suite (tests/fixtures/toy/suite/test_*.py) is run
by the grader against toy submissions; pytest must not collect it as one of the project's tests.
"""
collect_ignore = ["fixtures"]
