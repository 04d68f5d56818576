"""``backprop-studio --startup-time``: print how long the start took, then quit.

The flag is hidden from ``--help``; ``benchmarks/bench_start.py`` uses it. When
the canvas has finished its first paint, the window prints one JSON line to
standard output and closes:

    {"first_paint_s": 0.43, "wall_time": 1718000000.123, "not_loaded": ["pyqtgraph", …]}

``first_paint_s`` counts from the creation of the process (Linux: its start
time in ``/proc/self/stat``, read against the boot-time clock, to 1/100 s);
where that is unknown, from the import of this module, just before the window
is made (then ``"from": "window"`` says so). ``wall_time`` is ``time.time()`` at that moment,
so a caller can measure from its own launch of the process too. ``not_loaded``
names the slow imports that could wait (:data:`DEFERRABLE`) and had not been
imported by then.
"""

from __future__ import annotations

import json
import os
import sys
import time

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

_IMPORTED_AT = time.perf_counter()
DEFERRABLE = ("pyqtgraph", "networkx", "urllib.request",
              "widgets.chain_rule_panel", "widgets.tensor_view", "widgets.digit_input",
              "core.stepping.session")


def process_age() -> tuple[float, str]:
    """Seconds since this process was created, and what they count from."""
    try:
        with open("/proc/self/stat") as f:
            # the command name (field 2) may hold spaces: count fields after its ')'
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started, "process start"
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED_AT, "window"


class _FirstPaint(QObject):
    """Lets the canvas paint once, then reports and closes the window."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.viewport = window.view.viewport()
        self.viewport.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt override
        if obj is self.viewport and event.type() == QEvent.Paint:
            self.viewport.removeEventFilter(self)
            # paint now (the other filters and the view), so the time counts the painting
            QApplication.sendEvent(obj, event)
            age, origin = process_age()
            line = {"first_paint_s": round(age, 4), "wall_time": time.time(),
                    "not_loaded": [m for m in DEFERRABLE if m not in sys.modules]}
            if origin != "process start":
                line["from"] = origin
            print(json.dumps(line), flush=True)
            QTimer.singleShot(0, self._quit)
            return True
        return False

    def _quit(self):
        self.window.close()
        QApplication.instance().quit()


def report_first_paint(window):
    """Print the start-up time when ``window``'s canvas has first been painted, then quit."""
    sys.stdout.reconfigure(line_buffering=True)
    return _FirstPaint(window)
