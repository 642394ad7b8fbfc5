"""Write the demo's shipped samples (autograder/samples/<a>.json) from the banks' DEMO cases.

    python tests/bank/samples.py            # every bank with DEMO "mistakes" and "cheat"

The demo and the bench (autograder/demo.py, bench.py) never import the tests: they read the answer
cells kept in the package. Run this after changing a bank's DEMO cases or the reference answers
they edit; tests/test_samples.py checks that the shipped samples still fit the release.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from autograder import samples  # noqa: E402
from bank import common  # noqa: E402


def extract(bank) -> dict[str, dict]:
    """kind -> {"note", "answers"}: the DEMO case's answer cells that differ from the reference."""
    reference = common.solution_answers(bank.ASSIGNMENT)
    cases = {c.name: c for c in bank.CASES}
    out = {}
    for kind in samples.SHIPPED_KINDS:
        case = cases[bank.DEMO[kind]]
        built = case.build()
        if isinstance(built, (bytes, bytearray)):
            continue                                  # a malformed file is no demo of a mistake
        answers = {gid: cell.source for gid, cell in samples.answer_cells(built).items()
                   if cell.source != reference.get(gid)}
        out[kind] = {"note": case.note or kind, "answers": answers}
    return out


def main() -> int:
    for path in sorted((TESTS / "bank").glob("b[0-9][0-9]_*.py")):
        bank = importlib.import_module(f"bank.{path.stem}")
        written = samples.write_samples(bank.ASSIGNMENT, extract(bank))
        print(f"wrote {written.relative_to(TESTS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
