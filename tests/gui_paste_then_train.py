"""The user's path to a crash, as a program: New, drop an Input, Ctrl+C, Ctrl+V, save, open
LeNet-5 from Examples, Ctrl+T; it trains for a while and quits.

Run by tests/test_gui_threads.py in its own process (a crash there must not take pytest
down). Prints ``trained N batches`` and exits 0 when all went well. Usage::

    python tests/gui_paste_then_train.py FOLDER
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QPointF, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QMessageBox  # noqa: E402

from app.examples_dialog import ExamplesDialog  # noqa: E402
from app.main_window import MainWindow, make_app  # noqa: E402
from examples import example_path  # noqa: E402

BATCHES = 40  # plotted steps before it stops (well past the data loading)


def main(folder: Path) -> int:
    app = make_app()
    win = MainWindow(settings=QSettings(str(folder / "settings.ini"), QSettings.IniFormat),
                     recovery_dir=folder / "recovery")
    QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.Discard)
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(folder / "g.json"), ""))

    def choose_lenet(dlg):
        dlg.chosen_path = example_path("lenet5")
        return 1

    ExamplesDialog.exec = choose_lenet
    win.show()
    result = {"code": 3}

    def steps():
        win.act_new.trigger()
        win.editing.add_op("input", QPointF(200, 200))
        win.view.setFocus()
        win.act_copy.trigger()
        win.act_paste.trigger()
        win.act_save.trigger()
        win.act_examples.trigger()
        if win.document.graph.name.lower().replace("-", "") != "lenet5" and "conv1" not in [
                n.name for n in win.document.graph.nodes.values()]:
            print("LeNet-5 did not open", file=sys.stderr)
            app.exit(4)
            return
        win.act_train.trigger()
        watch.start()

    def check():
        if win.train_panel.plots.batch_count() >= BATCHES or not win.training.is_training():
            watch.stop()
            n = win.train_panel.plots.batch_count()
            win.training.stop_training(wait=True)
            print(f"trained {n} batches")
            result["code"] = 0 if n else 5
            win.close()
            app.quit()

    watch = QTimer()
    watch.setInterval(50)
    watch.timeout.connect(check)
    QTimer.singleShot(0, steps)
    QTimer.singleShot(120_000, lambda: app.exit(6))
    app.exec()
    return result["code"]


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
