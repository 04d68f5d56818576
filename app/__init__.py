"""Backprop Studio: the application (CLI, main window, undo commands)."""

__version__ = "0.1.0"
