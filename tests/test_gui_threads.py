"""Qt objects live and die on the GUI thread, whatever the training thread allocates."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QTimer

HERE = Path(__file__).resolve().parent


@pytest.fixture
def app_gc(qapp):
    """The application as ``backprop-studio`` sets it up (its garbage collection included)."""
    from app.main_window import make_app, stop_collecting_on_gui_thread

    gc.enable()
    gc.collect()
    app = make_app()
    yield app
    stop_collecting_on_gui_thread(app)


class _Holder:
    """A Qt timer caught in a reference cycle, like a widget held by a traceback's frame."""

    def __init__(self):
        self.timer = QTimer()
        self.me = self


def test_a_qt_object_in_a_cycle_is_collected_on_the_gui_thread_not_the_worker(app_gc, qtbot):
    """a Qt timer left in a reference cycle is destroyed on the GUI thread even when a busy
    worker thread allocates plenty (automatic GC would have run there)"""
    died_on = []
    h = _Holder()
    weakref.finalize(h, lambda: died_on.append(threading.get_ident()))
    del h

    def allocate():
        junk = []
        for i in range(50_000):
            pair = [i]
            pair.append(pair)  # cycles, as NumPy-free Python code makes them
            junk.append(pair)
            if i % 1000 == 0:
                junk = []

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert not died_on, "collected on the worker thread"
    assert not gc.isenabled()
    qtbot.waitUntil(lambda: bool(died_on), timeout=10_000)
    assert died_on == [threading.main_thread().ident]


def test_collection_keeps_running_while_the_app_runs(app_gc, qtbot):
    """garbage in cycles does not pile up: the GUI thread's timer collects it"""
    class Node(QObject):
        pass

    refs = []
    for _ in range(2000):
        n = Node()
        n.me = n
        refs.append(weakref.ref(n))
        del n
    qtbot.waitUntil(lambda: all(r() is None for r in refs), timeout=10_000)


def test_paste_save_open_lenet_then_ctrl_t_trains(tmp_path):
    """New, drop an Input, Ctrl+C, Ctrl+V, save, open LeNet-5 from Examples and Ctrl+T: it
    trains (the process does not die) — run in its own process"""
    proc = subprocess.run([sys.executable, str(HERE / "gui_paste_then_train.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=180,
                          cwd=HERE.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "trained" in proc.stdout
    assert "Traceback" not in proc.stderr and "QBasicTimer" not in proc.stderr, proc.stderr
    assert (tmp_path / "g.json").is_file()


class _FakeGC:
    """The parts of ``gc`` the collector reads and calls, with counts and sizes set here."""

    def __init__(self, counts, oldest):
        self.counts, self.oldest = counts, oldest
        self.collected, self.frozen, self.unfrozen = [], 0, 0

    def get_count(self):
        return self.counts

    def get_objects(self, generation=None):
        assert generation == 2
        return [None] * self.oldest

    def collect(self, generation=2):
        self.collected.append(generation)
        return 0

    def freeze(self):
        self.frozen += 1

    def get_freeze_count(self):
        return 100 * (self.frozen - self.unfrozen)

    def unfreeze(self):
        self.unfrozen += 1


def test_a_full_collection_waits_until_the_oldest_generation_grew_by_a_quarter(monkeypatch):
    """as Python's own collector: past its threshold the oldest generation is collected only
    once it holds a quarter more objects than after the last full collection"""
    from app import main_window

    was_enabled = gc.isenabled()
    collector = main_window.GuiThreadCollector(interval=3600)
    try:
        collector.threshold = (700, 10, 10)
        fake = _FakeGC((701, 11, 11), oldest=1000)
        monkeypatch.setattr(main_window, "gc", fake)
        collector.long_lived = 900  # grew by 100: under a quarter
        collector.check()
        assert fake.collected == [0, 1]
        fake.oldest = 1200  # grew by 300: over a quarter, but not looked at so soon again
        collector.check()
        assert fake.collected == [0, 1, 0, 1]
        fake.counts = (701, 11, 21)  # ten more collections of the middle generation
        collector.check()
        assert fake.collected == [0, 1, 0, 1, 0, 1, 2] and collector.long_lived == 1200
        fake.counts = (701, 3, 50)  # the middle generation under its threshold: no more
        collector.check()
        assert fake.collected[-1] == 0 and len(fake.collected) == 8
    finally:
        collector.timer.stop()
        if was_enabled:
            gc.enable()


def test_start_up_objects_are_frozen_once_start_up_is_over(monkeypatch):
    """the objects alive when start-up is over leave the collector's sight once (later
    windows freeze nothing, so what they leave is still collected), and come back when the
    first graph is replaced"""
    from app import main_window

    was_enabled = gc.isenabled()
    collector = main_window.GuiThreadCollector(interval=3600)
    try:
        fake = _FakeGC((0, 0, 0), oldest=0)
        monkeypatch.setattr(main_window, "gc", fake)
        settled = [False]
        collector.freeze_when = lambda: settled[0]
        collector.check()
        assert fake.frozen == 0
        settled[0] = True
        collector.check()
        collector.check()
        assert fake.frozen == 1
        collector.thaw()  # the first graph replaced: collectable again, and not frozen anew
        collector.thaw()
        collector.check()
        assert fake.unfrozen == 1 and fake.frozen == 1
    finally:
        collector.timer.stop()
        if was_enabled:
            gc.enable()
