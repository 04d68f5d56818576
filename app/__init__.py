"""Backprop Studio: the application (CLI, main window, undo commands)."""

import core  # noqa: F401 - first, before anything loads NumPy: sets up BLAS threading

__version__ = "0.1.0"
