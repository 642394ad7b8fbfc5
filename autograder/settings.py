"""The grader's settings in one place: limits for each submission and options of a batch.

One object, `Settings`, with one set of defaults (the field defaults of `sandbox.Limits` and of
`Settings` below). Three layers, each overriding the one before:

1. the defaults;
2. the course's `nbgrader_config.py` (the same file nbgrader reads), section `c.Autograder`:

       c.Autograder.cell_timeout = 120      # seconds per notebook cell (nbgrader's Execute.timeout too)
       c.Autograder.memory_mb = 4096
       c.Autograder.run_size = "tiny"       # DLCOURSE_RUN_SIZE in the kernel: smoke-sized demonstrations

   Any field of `Limits` (cell_timeout, call_timeout, total_timeout, memory_mb, gpu, run_size,
   isolation, threads, ...) or of `Settings` (workers, submission_timeout) may be set there; an
   unknown name is an error, so a typo does not silently keep the default;
3. the command line: `--cell-timeout`, `--call-timeout`, `--total-timeout`, `--memory`, `--gpu`,
   `--run-size`, `--isolation`, `--workers`, `--timeout` (see `add_arguments`).

A batch passes its resolved settings to each grading subprocess (`--settings JSON`), so every
submission of a batch is graded under the same limits.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from autograder.sandbox import RUN_SIZES, Limits

CONFIG_FILE = "nbgrader_config.py"
SECTION = "Autograder"


class SettingsError(ValueError):
    """A setting has an unknown name or a value of the wrong kind (the message says which)."""


def _default_workers() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class Settings:
    """Everything a grading run can be told.

    limits: the per-submission limits (sandbox.Limits: times in seconds, sizes in MB)
    workers: submissions a batch grades at once (default: half the CPU cores)
    submission_timeout: seconds one grading subprocess of a batch may take in all (a backstop; the
        limits above are much tighter)
    """
    limits: Limits = field(default_factory=Limits)
    workers: int = field(default_factory=_default_workers)
    submission_timeout: float = 3600.0

    def __post_init__(self):
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise SettingsError(f"workers must be a whole number >= 1, not {self.workers!r}")
        if not self.submission_timeout > 0:
            raise SettingsError(f"submission_timeout must be positive, not {self.submission_timeout!r}")

    # ---- a flat view: the names used in the config file, on the command line and in JSON ------------
    def to_mapping(self) -> dict[str, Any]:
        """{name: value} for every setting (tuples as lists): JSON-ready."""
        flat = {f.name: getattr(self.limits, f.name) for f in dataclasses.fields(Limits)}
        flat.update(workers=self.workers, submission_timeout=self.submission_timeout)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}

    def replace(self, values: Mapping[str, Any] | None = None, **more) -> "Settings":
        """A copy with the named settings changed (flat names; see the module docstring)."""
        values = {**(values or {}), **more}
        limit_names = {f.name: f for f in dataclasses.fields(Limits)}
        own_names = {"workers", "submission_timeout"}
        unknown = sorted(set(values) - set(limit_names) - own_names)
        if unknown:
            known = ", ".join(sorted([*limit_names, *own_names]))
            raise SettingsError(f"unknown setting(s) {', '.join(unknown)} (known: {known})")
        limit_changes = {k: _coerce(k, v, getattr(self.limits, k)) for k, v in values.items() if k in limit_names}
        own = {k: _coerce(k, v, getattr(self, k)) for k, v in values.items() if k in own_names}
        try:
            limits = dataclasses.replace(self.limits, **limit_changes)
        except ValueError as e:
            raise SettingsError(str(e)) from None
        return dataclasses.replace(self, limits=limits, **own)

    def to_json(self) -> str:
        return json.dumps(self.to_mapping(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        try:
            values = json.loads(text)
        except ValueError as e:
            raise SettingsError(f"settings are not JSON: {e}") from None
        if not isinstance(values, dict):
            raise SettingsError("settings must be a JSON object")
        return cls().replace(values)

    # ---- where settings come from -----------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path | None = None, config_file: str | Path | None = None,
             overrides: Mapping[str, Any] | None = None) -> "Settings":
        """Defaults, then `c.Autograder` of the config file, then `overrides` (the command line).

        config_file: a path; default `<root>/nbgrader_config.py` when that file exists (root: the
        course root, default this repository); no file: defaults only.
        """
        settings = cls()
        path = Path(config_file) if config_file is not None else _default_config(root)
        if path is not None:
            try:
                settings = settings.replace(read_config(path))
            except SettingsError as e:
                raise SettingsError(f"{path}: {e}") from None
        return settings.replace(overrides or {})


def _default_config(root: str | Path | None) -> Path | None:
    from autograder.assignments import ROOT
    path = Path(root if root is not None else ROOT) / CONFIG_FILE
    return path if path.is_file() else None


def read_config(path: str | Path) -> dict[str, Any]:
    """The `c.Autograder` section of an nbgrader-style config file, as a plain dict."""
    from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader
    path = Path(path).resolve()
    try:
        config = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    except ConfigFileNotFound:
        raise SettingsError(f"no config file {path}") from None
    return dict(config[SECTION]) if SECTION in config else {}


def _coerce(name: str, value: Any, current: Any) -> Any:
    """`value` as the type of the setting's current value; SettingsError when it cannot be."""
    bad = SettingsError(f"setting {name} = {value!r}: expected {type(current).__name__ if current is not None else 'a value'}")
    if name == "run_size":
        if value is None or value in RUN_SIZES:
            return value
        raise SettingsError(f"setting run_size = {value!r}: expected one of {', '.join(RUN_SIZES)} or None")
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise bad
        return int(value)
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(current, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise bad
        return tuple(value)
    if isinstance(current, str) and not isinstance(value, str):
        raise bad
    return value


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
# option -> (setting name, argparse keywords)
OPTIONS: dict[str, tuple[str, dict]] = {
    "--cell-timeout": ("cell_timeout", dict(type=float, metavar="S", help="seconds per notebook cell")),
    "--call-timeout": ("call_timeout", dict(type=float, metavar="S",
                                            help="seconds per call of a student function by the hidden suite")),
    "--total-timeout": ("total_timeout", dict(type=float, metavar="S", help="seconds for the whole notebook")),
    "--memory": ("memory_mb", dict(type=int, metavar="MB", help="memory of all the submission's processes")),
    "--grader-memory": ("grader_memory_mb", dict(type=int, metavar="MB",
                                                 help="memory of the grading process itself (per submission)")),
    "--gpu": ("gpu", dict(action=argparse.BooleanOptionalAction, help="let the kernel see CUDA devices")),
    "--run-size": ("run_size", dict(choices=RUN_SIZES,
                                    help="DLCOURSE_RUN_SIZE in the kernel (tiny: smoke-sized demonstrations)")),
    "--isolation": ("isolation", dict(choices=("auto", "none"),
                                      help="'none' runs without namespaces (trusted code only)")),
    "--workers": ("workers", dict(type=int, metavar="N", help="folder: submissions graded at once")),
    "--timeout": ("submission_timeout", dict(type=float, metavar="S",
                                             help="folder: seconds one submission may take in all")),
}


def add_arguments(parser: argparse.ArgumentParser, batch: bool = True) -> None:
    """The settings options (defaults: nbgrader_config.py's c.Autograder, else Settings())."""
    group = parser.add_argument_group("settings (override c.Autograder in nbgrader_config.py)")
    group.add_argument("--config", metavar="FILE",
                       help="config file to read c.Autograder from (default: <root>/nbgrader_config.py)")
    for option, (name, kwargs) in OPTIONS.items():
        if not batch and name in ("workers", "submission_timeout"):
            continue
        group.add_argument(option, dest=f"setting_{name}", default=None, **kwargs)
    group.add_argument("--settings", metavar="JSON", help=argparse.SUPPRESS)   # a batch's resolved settings


def from_args(args: argparse.Namespace) -> Settings:
    """The settings a command line asks for (config file, then the options given)."""
    overrides = {k.removeprefix("setting_"): v for k, v in vars(args).items()
                 if k.startswith("setting_") and v is not None}
    if getattr(args, "settings", None):
        return Settings.from_json(args.settings).replace(overrides)
    return Settings.load(root=getattr(args, "root", None), config_file=getattr(args, "config", None),
                         overrides=overrides)
