"""Preset graphs shipped with the studio, as graph files beside this module."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.errors import FileFormatError

HERE = Path(__file__).resolve().parent


def example_path(name: str) -> Path:
    """Path of the preset ``name`` (file stem, e.g. ``"abc"`` or ``"lenet5"``)."""
    path = HERE / f"{name}.json"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(HERE.glob("*.json")))
        raise FileNotFoundError(f"no preset named '{name}'; presets: {known}")
    return path


def list_examples() -> list:
    """``(stem, title, description)`` for every preset, in file-name order."""
    out = []
    for p in sorted(HERE.glob("*.json")):
        with p.open(encoding="utf-8") as f:
            data = json.load(f)
        out.append((p.stem, data.get("name") or p.stem, data.get("description", "")))
    return out


def resolve(name_or_path) -> Path:
    """The path given, or the preset of that name when no such file exists.

    Raises
    ------
    core.errors.FileFormatError
        When it is neither a file nor a preset (the message lists the presets).
    """
    text = str(name_or_path)
    path = Path(text)
    if path.exists() or path.suffix or os.sep in text:
        return path
    try:
        return example_path(text)
    except FileNotFoundError as exc:
        raise FileFormatError(text, "", f"no such file, and {exc}") from None
