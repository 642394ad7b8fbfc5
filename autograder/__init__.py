"""The dlcourse autograder: hidden pytest suites graded outside the student's process."""
import sys


def _skip_slow_optional_imports() -> None:
    """Keep jsonschema from importing rfc3987_syntax, which builds a parser at import (1.2 s of CPU
    measured here; jsonschema issue #1428).

    nbformat validates notebooks with jsonschema; jsonschema imports rfc3987_syntax only to check
    the "iri" string formats, which neither the notebook schema nor ours uses. Every process of the
    grader (the batch, the graders' fork server, each `grade`) would pay that import, so importing
    this package blocks it: an import of a module set to None raises ImportError, which jsonschema
    expects when the optional package is absent. A process that imported jsonschema already is
    left as it is.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)


_skip_slow_optional_imports()
