"""A bank of submissions per assignment: the reference, equivalent rewrites, honest mistakes and cheats.

Import as `bank` with `tests/` on `sys.path` (pytest does this for files in tests/):
`from bank.common import load_bank, write_cases`. See common.py for the contract.
"""
