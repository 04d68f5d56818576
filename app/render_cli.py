"""``backprop-studio render FILE [--steps N|all] -o OUT.png|OUT.svg``: draw a graph's canvas,
headless, optionally after stepping it (values on the wires, gradients below them)."""

from __future__ import annotations

import os
import re
import sys

from core.errors import FileFormatError, StudioError
from examples import resolve


def _size(text: str):
    m = re.fullmatch(r"\s*(\d+)\s*[x×X*]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"size must look like 1600x1000, not {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise ValueError("width and height must be between 16 and 16384 pixels")
    return w, h


def _steps(text: str | None):
    """``None`` (no stepping), ``"all"`` or a count of steps (checked against the plan later)."""
    if text is None or text.strip().lower() == "all":
        return None if text is None else "all"
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--steps must be a number of steps or 'all', not {text!r}") from None
    if n < 0:
        raise ValueError(f"--steps must be 0 or more, not {n}")
    return n


def _step(scene, steps, digit):
    """A stepping session on the scene's graph after ``steps``, shown on the scene."""
    from core.stepping import StepSession, digit_feeds, sample_digit  # noqa: PLC0415 - only here

    feeds = None
    if digit is not None:
        feeds = digit_feeds(scene.graph, *sample_digit(digit))
    session = StepSession(scene.graph, feeds=feeds)
    total = len(session.steps)
    if steps == "all":
        session.evaluate()
    elif steps > total:
        raise ValueError(f"--steps {steps} is past the end: this graph has {total} steps")
    else:
        session.go_to(steps - 1)
    scene.stepping.set_animation(False)  # a picture shows the state, not a pulse
    scene.stepping.show(session)
    return session


def _write_svg(scene, path, width, height):
    from PySide6.QtCore import QRect, QSize  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM
    from PySide6.QtGui import QPainter  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM
    from PySide6.QtSvg import QSvgGenerator  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM
    from PySide6.QtWidgets import QGraphicsItem  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM

    from widgets.canvas import paint_scene  # noqa: PLC0415 - Qt, after QT_QPA_PLATFORM

    gen = QSvgGenerator()
    gen.setFileName(path)
    gen.setSize(QSize(width, height))
    gen.setViewBox(QRect(0, 0, width, height))
    gen.setTitle("Backprop Studio canvas")
    # cards drawn from their cached pictures would be bitmaps: draw them afresh as text
    modes = {item: item.cacheMode() for item in scene.nodes.values()}
    for item in modes:
        item.setCacheMode(QGraphicsItem.NoCache)
    painter = QPainter(gen)
    painter.fillRect(0, 0, width, height, scene.theme.color("canvas"))
    paint_scene(scene, painter, width, height)
    ok = painter.end()
    for item, mode in modes.items():
        item.setCacheMode(mode)
    return ok


def cmd_render(args) -> int:
    try:
        width, height = _size(args.size)
        steps = _steps(args.steps)
        if args.digit is not None and args.digit < 0:
            raise ValueError(f"--digit must be 0 or more, not {args.digit}")
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
    stepped = ""
    if steps is not None:
        try:
            session = _step(scene, steps, args.digit)
        except (ValueError, StudioError) as exc:
            print(f"backprop-studio render: error: {exc}", file=sys.stderr)
            return 2
        cur = session.current
        stepped = f", after {session.position} steps ({cur.label if cur else 'none run'})"
    if args.output.lower().endswith(".svg"):
        ok = _write_svg(scene, args.output, width, height)
    else:
        ok = render_scene(scene, width, height, dpr=args.scale).save(args.output)
    if not ok:
        print(f"backprop-studio render: error: cannot write {args.output}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({int(width * args.scale)}×{int(height * args.scale)} px, "
          f"{len(scene.nodes)} nodes, {args.theme} theme{stepped})")
    return 0


def add_parser(subparsers):
    """Add the ``render`` subcommand."""
    p = subparsers.add_parser("render", help="draw the canvas of a graph file to a PNG or SVG")
    p.add_argument("file", help="graph file, or the name of a preset (e.g. lenet5)")
    p.add_argument("-o", "--output", required=True,
                   help="picture to write (.png, or .svg with text kept as text)")
    p.add_argument("--steps", default=None, metavar="N|all",
                   help="step the graph first: N steps, or all (forward and backward)")
    p.add_argument("--digit", type=int, default=None, metavar="K",
                   help="with --steps: feed test digit K of the embedded MNIST sample")
    p.add_argument("--size", default="1600x1000", help="W×H in pixels (default 1600x1000)")
    p.add_argument("--theme", choices=("light", "dark"), default="light")
    p.add_argument("--scale", type=float, default=1.0,
                   help="pixel density, e.g. 2 for a HiDPI picture (default 1)")
    p.set_defaults(func=cmd_render)
