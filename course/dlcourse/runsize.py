"""How long a notebook trains: one choice per notebook, which the grader and CI can shrink.

Every notebook's set-up cell names its run sizes and asks this module which one to use:

    RUNS = {"tiny": {...}, "small": {...}, "large": {...}}
    RUN_SIZE = dl.run_size("small")          # the student's choice; "large" is the GPU setting

- ``"small"`` is the default a student runs on a laptop CPU (about two minutes at most);
- ``"large"`` is the labelled setting for a GPU, which reproduces the longer run quoted in the text;
- ``"tiny"`` is a smoke run (a batch or two): the grader and the project's tests use it, because the
  hidden suite never grades the notebook's own demonstrations. It calls the student's functions
  with its own inputs and checks what comes back. Shrinking the demonstrations changes no grade.

Why an environment variable: the set-up cell is read-only in the released notebook (nbgrader
restores it), so a grader cannot edit it; ``DLCOURSE_RUN_SIZE=tiny`` in the kernel's environment
overrides the notebook's own choice without touching the notebook.
"""
from __future__ import annotations

import os

ENV_VAR = "DLCOURSE_RUN_SIZE"
SIZES = ("tiny", "small", "large")


def run_size(default: str = "small") -> str:
    """The run size to use: ``$DLCOURSE_RUN_SIZE`` when set, else `default`.

    Inputs:
    - default: the notebook's own choice, one of SIZES

    Returns: one of SIZES. Raises ValueError naming the choices for anything else (a typo in the
    notebook or in the environment variable should stop the run, not train for an hour).
    """
    if default not in SIZES:
        raise ValueError(f"run size {default!r} is not one of {', '.join(SIZES)}")
    chosen = os.environ.get(ENV_VAR, "").strip().lower() or default
    if chosen not in SIZES:
        raise ValueError(f"{ENV_VAR}={chosen!r} is not one of {', '.join(SIZES)}")
    return chosen
