"""``backprop-studio render FILE --steps N|all``: the canvas after stepping, as PNG or SVG."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage

from app.cli import main

pytestmark = pytest.mark.gui


def test_render_after_all_steps_writes_a_png_and_an_svg_with_the_numbers(tmp_path, qapp):
    """After the full forward and backward pass the PNG is written, and the SVG keeps
    the values and gradients as text (f = 2 and 2, 3, 1) for slides and papers."""
    png, svg = tmp_path / "abc.png", tmp_path / "abc.svg"
    assert main(["render", "abc", "--steps", "all", "-o", str(png), "--size", "800x500"]) == 0
    img = QImage(str(png))
    assert (img.width(), img.height()) == (800, 500)
    assert main(["render", "abc", "--steps", "all", "-o", str(svg), "--size", "800x500"]) == 0
    words = re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text("utf-8"), re.S)
    words = [w.strip() for w in words]
    assert "f = 2.000" in words
    for g in ("2.000", "3.000", "1.000"):
        assert g in words
    assert "e" in words and "Multiply" in words  # the cards' own text too


def test_render_after_n_steps_shows_only_what_has_run(tmp_path, qapp, capsys):
    """After 2 forward steps of f = a·b + c the message says so and no loss is drawn yet."""
    svg = tmp_path / "two.svg"
    assert main(["render", "abc", "--steps", "2", "-o", str(svg)]) == 0
    assert "after 2 steps" in capsys.readouterr().out
    words = re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text("utf-8"), re.S)
    assert not any(w.startswith("f = ") for w in words)


@pytest.mark.parametrize("bad, says", [("-1", "0 or more"), ("99", "past the end"),
                                       ("two", "number of steps")])
def test_a_bad_step_count_is_one_line_naming_the_option(tmp_path, bad, says):
    """A negative, too large or non-numeric --steps is one error line naming --steps."""
    out = tmp_path / "x.png"
    r = subprocess.run([sys.executable, "-m", "app", "render", "abc", "--steps", bad,
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--steps" in lines[0] and says in lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()
