"""Command line: ``backprop-studio [FILE]`` opens the app; subcommands work headless.

Subcommands
-----------
eval FILE [--json]          every node's value and gradient
gradcheck FILE              numerical check of every gradient
train FILE [...]            train on MNIST (see ``train --help``)
evaluate FILE --checkpoint  metrics of a trained checkpoint
render FILE -o OUT.png      draw the canvas to a picture

Qt is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from app import __version__, render_cli, train_cli
from core.errors import StudioError
from core.executor import Executor
from core.gradcheck import BAD, check_graph
from core.serialize import load_graph
from examples import resolve

SUBCOMMANDS = ("eval", "gradcheck", "train", "evaluate", "render")


def _fmt(arr) -> str:
    arr = np.asarray(arr)
    if arr.ndim == 0:
        return f"{float(arr):.6g}"
    if arr.size <= 12:
        text = np.array2string(arr, precision=6, separator=", ", max_line_width=10_000)
        return " ".join(text.split())
    return (f"{arr.dtype} array of shape {arr.shape} "
            f"(mean {float(arr.mean()):.4g}, min {float(arr.min()):.4g}, "
            f"max {float(arr.max()):.4g})")


def cmd_eval(args) -> int:
    g = load_graph(resolve(args.file))
    loss = args.loss or g.loss
    g.initialize(args.seed)
    ex = Executor(g, seed=args.seed)
    ex.run(loss=loss)
    rows = {}
    for node in g.order():
        k = (node.id, 0)
        entry = {"op": node.op_id, "value": np.asarray(ex.values[k]).tolist()}
        entry["grad"] = np.asarray(ex.grads[k]).tolist() if k in ex.grads else None
        if node.weights:
            entry["weight_grads"] = {w: np.asarray(ex.weight_grads[(node.id, w)]).tolist()
                                     for w in node.weights if (node.id, w) in ex.weight_grads}
        rows[node.name] = entry
    if args.json:
        print(json.dumps(rows))  # ASCII with escapes: safe on any terminal
        return 0
    if hasattr(sys.stdout, "reconfigure"):  # a name the terminal's encoding cannot show
        sys.stdout.reconfigure(errors="backslashreplace")
    width = max(len(n) for n in rows) if rows else 4
    title = g.name or args.file
    print(f"{title}: {len(rows)} nodes" + (f", loss = '{g.node(loss).name}'" if loss else ""))
    for name, e in rows.items():
        grad = "—" if e["grad"] is None else _fmt(e["grad"])
        print(f"  {name:<{width}}  {e['op']:<22} value {_fmt(e['value'])}   grad {grad}")
    return 0


def cmd_gradcheck(args) -> int:
    g = load_graph(resolve(args.file))
    rows = check_graph(g, loss=args.loss, max_elements=args.max_elements, seed=args.seed)
    if args.json:
        print(json.dumps([{"node": r.node, "target": r.target, "rel_error": r.rel_error,
                           "verdict": r.verdict} for r in rows]))
    else:
        print(f"gradient check (float64 central differences) of {g.name or args.file}")
        print("  relative error ≈1e-7 is good, ≥1e-3 is a bug")
        for r in rows:
            print(f"  {r.node:<20} {r.target:<8} rel. error {r.rel_error:.2e}  {r.verdict}"
                  f"  ({r.checked} elements)")
    worst = max((r.rel_error for r in rows), default=0.0)
    return 0 if worst < BAD else 3


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="backprop-studio",
        description="Backprop Studio: build computational graphs and watch backprop. "
                    "With no subcommand it opens the app (on FILE, or a preset).")
    sub = p.add_subparsers(dest="command")

    e = sub.add_parser("eval", help="print every node's value and gradient")
    e.add_argument("file")
    e.add_argument("--json", action="store_true", help="one JSON object: name -> value, grad")
    e.add_argument("--loss", help="node to start backward from (default: the file's loss)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_eval)

    c = sub.add_parser("gradcheck", help="compare every gradient with finite differences")
    c.add_argument("file")
    c.add_argument("--loss")
    c.add_argument("--json", action="store_true")
    c.add_argument("--max-elements", type=_positive_int, default=20,
                   help="elements compared per tensor (default 20)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_gradcheck)

    train_cli.add_parsers(sub)
    render_cli.add_parser(sub)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and not argv[0].startswith("-h")
                    and argv[0] not in ("--help", "--version")):
        return _open_app(argv)
    if argv[0] == "--version":
        print(f"backprop-studio {__version__}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StudioError as exc:
        print(f"backprop-studio {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file that cannot be read or written, a full disk…
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"backprop-studio {args.command}: error: {exc.strerror or exc}{where}",
              file=sys.stderr)
        return 2
    except MemoryError:
        print(f"backprop-studio {args.command}: error: not enough memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _open_app(argv) -> int:
    p = argparse.ArgumentParser(prog="backprop-studio",
                                description="Open Backprop Studio (on FILE, or a preset).",
                                epilog="Headless subcommands: " + ", ".join(SUBCOMMANDS))
    p.add_argument("file", nargs="?", help="graph file to open")
    # for benchmarks/bench_start.py: print the time to the first painted canvas, then quit
    p.add_argument("--startup-time", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        from app.main_window import run_app  # noqa: PLC0415 - Qt only on the GUI path
    except ImportError as exc:
        print(f"backprop-studio: the window cannot start: {exc}", file=sys.stderr)
        return 1
    return run_app(args.file, startup_time=args.startup_time)


if __name__ == "__main__":
    sys.exit(main())
