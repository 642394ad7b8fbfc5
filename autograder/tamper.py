"""The tampering scan: names in the student's code that only code which fiddles with torch's
dispatch machinery (the forbidden-operation guard's footing) or with the grader's own objects uses.

A finding does not change the grade by itself: the guard enforces the rules at run time. It is
recorded in the result's instructor notes (never shown to the student), so that an instructor sees
who tried. The scan's cost is bounded by size and time, whatever the notebook holds.
"""
from __future__ import annotations

import ast
import re

SUSPICIOUS = (
    "_python_dispatch", "TorchDispatchMode", "TorchFunctionMode", "__torch_dispatch__", "__torch_function__",
    "_pop_mode", "_push_mode", "_pop_torch_dispatch_stack", "_push_on_torch_dispatch_stack",
    "_pop_torch_function_stack", "_push_on_torch_function_stack", "_set_dispatch_mode", "_unset_dispatch_mode",
    "_get_current_dispatch_mode_stack", "_get_current_function_mode_stack", "_len_torch_dispatch_stack",
    "_len_torch_function_stack", "_DisableTorchDispatch", "DisableTorchFunction", "DisableTorchFunctionSubclass",
    "_disable_current_modes", "_ExcludeDispatchKeyGuard", "_IncludeDispatchKeyGuard", "_dispatch_tls_set_dispatch_key_excluded",
    "_dispatch_tls_set_dispatch_key_included", "_set_torch_function_mode", "_is_torch_function_mode_enabled",
    "_dlcourse_grader", "ForbiddenOperation",
)
_SUSPICIOUS_RE = re.compile("|".join(re.escape(s) for s in SUSPICIOUS))


SCAN_PARSE_CHARS = 200_000     # cells longer than this are scanned as text (a regex: linear time)
SCAN_TOTAL_CHARS = 8_000_000   # all student code; beyond it the rest is scanned as text too
SCAN_SECONDS = 20.0            # parsing stops after this; the rest is scanned as text


def parse_cell(source: str) -> ast.Module | None:
    """A code cell's syntax tree after IPython's transforms (a magic becomes a get_ipython() call,
    so a cell magic's body stays a string), or None when it is not Python even then."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return ast.parse(TransformerManager().transform_cell(source))
    except (Exception, RecursionError, MemoryError):
        return None


def scan_tampering(sources: list[str], *, seconds: float = SCAN_SECONDS) -> list[str]:
    """Suspicious names used by the student's code (identifiers, attributes, imports and strings).

    Bounded: a cell is parsed (ast) only while it is short, the code parsed so far is under
    SCAN_TOTAL_CHARS and less than `seconds` have passed; anything else is scanned as plain text,
    which finds every name the parse would and a few more (in comments)."""
    import time
    hits: list[str] = []
    deadline, parsed = time.monotonic() + seconds, 0
    for source in sources:
        parsed += len(source)
        if len(source) > SCAN_PARSE_CHARS or parsed > SCAN_TOTAL_CHARS or time.monotonic() > deadline:
            hits += _SUSPICIOUS_RE.findall(source)
            continue
        tree = parse_cell(source)
        if tree is None:
            hits += _SUSPICIOUS_RE.findall(source)
            continue
        for node in ast.walk(tree):
            words = []
            if isinstance(node, ast.Name):
                words = [node.id]
            elif isinstance(node, ast.Attribute):
                words = [node.attr]
            elif isinstance(node, ast.alias):
                words = [node.name, node.asname or ""]
            elif isinstance(node, ast.ImportFrom):
                words = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                words = [node.value]
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                words = [node.name]
            for word in words:
                hits += _SUSPICIOUS_RE.findall(word)
    return sorted(set(hits))
