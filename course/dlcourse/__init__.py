"""dlcourse: the helper library of the dlcourse notebooks."""
__version__ = "0.1.0"
