"""Instructions to open a large graph in the window: a count that the host's noise leaves alone.

    python benchmarks/count_open.py                       # this tree
    python benchmarks/count_open.py --compare /tmp/base   # and another checkout, with the ratio

On a shared host the time of one open scatters by tens of per cent between runs of the same
code, so a change of a few per cent cannot be seen in milliseconds. ``valgrind
--tool=callgrind`` counts the instructions a process runs instead, the same from run to
run. Each tree runs a child twice under it: once making the window and reading the
5,000-node mixed graph of ``bench_canvas.py``, once doing the same and then opening and
painting it. The difference is the open. Needs valgrind (Debian's ``valgrind``); a child
takes a few minutes. Prints the counts and, with ``--compare``, the ratio this / other.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(tree: Path, do_open: bool, nodes: int) -> None:
    """The measured process: a window, the graph read, and with ``do_open`` opened and painted."""
    sys.path[:0] = [str(tree), str(tree / "benchmarks")]
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from bench_canvas import mixed_graph
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow, make_app
    from core.serialize import load_graph, save_graph

    app = make_app()
    tmp = Path(tempfile.mkdtemp(prefix="count_open_"))
    save_graph(mixed_graph(nodes), tmp / "big.json")
    win = MainWindow(settings=QSettings(str(tmp / "s.ini"), QSettings.IniFormat),
                     recovery_dir=tmp / "recovery")
    win.resize(1600, 900)
    win.show()
    app.processEvents()
    graph = load_graph(tmp / "big.json")
    if do_open:
        win.set_graph(graph)
        win.view.viewport().repaint()
    shutil.rmtree(tmp, ignore_errors=True)
    os._exit(0)  # no teardown: it is the same with and without the open


def count(tree: Path, do_open: bool, nodes: int) -> int:
    """Instructions the child runs (callgrind's "Collected" total)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
               sys.executable, __file__, "--child", str(tree), str(int(do_open)), str(nodes)]
        out = subprocess.run(cmd, capture_output=True, text=True)
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if out.returncode != 0 or not found:
        raise SystemExit(f"valgrind failed for {tree}:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", type=Path, help="another checkout to count the same way")
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        tree, do_open, nodes = args.child
        child(Path(tree), do_open == "1", int(nodes))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)")
        return 1
    trees = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    opens = {}
    for tree in trees:
        base, full = count(tree, False, args.nodes), count(tree, True, args.nodes)
        opens[tree] = full - base
        print(f"{tree}: {full:,} instructions with the open, {base:,} without: "
              f"open and first paint {opens[tree] / 1e9:.3f} G", flush=True)
    if args.compare:
        print(f"this / other: {opens[ROOT] / opens[trees[1]]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
