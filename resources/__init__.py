"""Icons, styles and the embedded MNIST sample (package data)."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
