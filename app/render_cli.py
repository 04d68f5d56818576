"""``backprop-studio render FILE -o OUT.png``: draw a graph's canvas to a picture, headless."""

from __future__ import annotations

import os
import re
import sys

from core.errors import FileFormatError
from examples import resolve


def _size(text: str):
    m = re.fullmatch(r"\s*(\d+)\s*[x×X*]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"size must look like 1600x1000, not {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise ValueError("width and height must be between 16 and 16384 pixels")
    return w, h


def cmd_render(args) -> int:
    try:
        width, height = _size(args.size)
    except ValueError as exc:
        print(f"backprop-studio render: error: {exc}", file=sys.stderr)
        return 2
    # no display needed: draw offscreen unless a platform was chosen explicitly
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415 - after QT_QPA_PLATFORM

    from app.examples_dialog import preset_scene  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM
    from widgets.canvas import render_scene  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM
    from widgets.theme import get_theme  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    try:
        path = resolve(args.file)  # a file, or a preset name as the train command accepts
    except FileFormatError as exc:
        print(f"backprop-studio render: error: {exc}", file=sys.stderr)
        return 2
    scene = preset_scene(path, get_theme(args.theme))
    img = render_scene(scene, width, height, dpr=args.scale)
    if not img.save(args.output):
        print(f"backprop-studio render: error: cannot write {args.output}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({int(width * args.scale)}×{int(height * args.scale)} px, "
          f"{len(scene.nodes)} nodes, {args.theme} theme)")
    return 0


def add_parser(subparsers):
    """Add the ``render`` subcommand."""
    p = subparsers.add_parser("render", help="draw the canvas of a graph file to a PNG")
    p.add_argument("file", help="graph file, or the name of a preset (e.g. lenet5)")
    p.add_argument("-o", "--output", required=True, help="picture to write (PNG)")
    p.add_argument("--size", default="1600x1000", help="W×H in pixels (default 1600x1000)")
    p.add_argument("--theme", choices=("light", "dark"), default="light")
    p.add_argument("--scale", type=float, default=1.0,
                   help="pixel density, e.g. 2 for a HiDPI picture (default 1)")
    p.set_defaults(func=cmd_render)
