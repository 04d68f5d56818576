"""Files in the editor: save and open, bad files, recent files, autosave and recovery."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import subprocess
import sys

from gui_graphs import abc_graph, lenet5
from gui_helpers import dialogs, make_window, snapshot  # noqa: F401
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QFileDialog, QMessageBox

from core.serialize import load_graph, save_graph

DEAD_PID = 4_000_000  # above Linux's pid_max: no process can have it


def test_save_then_open_gives_the_same_graph(make_window, tmp_path, monkeypatch):
    """saving LeNet-5 after edits and opening the file in a new window shows the same graph"""
    win = make_window()
    win.set_graph(lenet5())
    win.editing.set_params(win.document.graph.node("fc1").id, {"units": 100})
    win.editing.add_op("tanh", QPointF(0, 500))
    path = tmp_path / "net.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    assert win.files.save()
    assert win.document.path == path and not win.isWindowModified()
    other = make_window()
    assert other.files.open_file(str(path))
    assert snapshot(other.document.graph) == snapshot(win.document.graph)
    assert set(other.scene.nodes) == set(win.document.graph.nodes)
    for nid, item in other.scene.nodes.items():
        assert (item.pos().x(), item.pos().y()) == pytest_approx(win.document.graph.layout[nid])
    assert str(path.resolve()) == other.document.recent_files()[0]


def pytest_approx(pos):
    return tuple(round(v, 3) for v in pos)


def test_a_corrupt_file_shows_an_error_and_keeps_the_current_graph(make_window, tmp_path,
                                                                   dialogs):
    """opening a file with a broken node shows an error naming the place; the graph stays"""
    win = make_window()
    win.set_graph(abc_graph())
    win.editing.add_op("relu", QPointF(0, 400))
    before = snapshot(win.document.graph)
    bad = tmp_path / "bad.json"
    data = json.loads(json.dumps(snapshot(lenet5())))
    data["nodes"][3]["params"]["out_channels"] = -4
    bad.write_text(json.dumps(data), encoding="utf-8")
    assert not win.files.open_file(str(bad))
    kind, _title, text = dialogs.calls[-1]
    assert kind == "critical"
    assert "nodes[3].params" in text and "unchanged" in text
    assert snapshot(win.document.graph) == before
    assert win.document.undo_stack.canUndo()  # the history is kept too


def test_a_file_that_is_not_json_shows_an_error(make_window, tmp_path, dialogs):
    """opening a truncated JSON file reports the line and column and keeps the graph"""
    win = make_window()
    win.set_graph(abc_graph())
    before = snapshot(win.document.graph)
    bad = tmp_path / "cut.json"
    bad.write_text('{"format_version": 1, "nodes": [', encoding="utf-8")
    assert not win.files.open_file(str(bad))
    assert "line 1" in dialogs.calls[-1][2]
    assert snapshot(win.document.graph) == before


def test_unsaved_changes_are_asked_about_before_opening(make_window, tmp_path, dialogs):
    """with unsaved edits, Open asks first, and Cancel keeps everything"""
    path = tmp_path / "abc.json"
    save_graph(abc_graph(), path)
    win = make_window()
    win.editing.add_op("relu", QPointF(0, 0))
    before = snapshot(win.document.graph)
    dialogs.answer = QMessageBox.Cancel
    assert not win.files.open_file(str(path))
    assert dialogs.kinds() == ["question"]
    assert snapshot(win.document.graph) == before
    dialogs.answer = QMessageBox.Discard
    assert win.files.open_file(str(path))
    assert win.document.graph.name == "f = a·b + c"


def test_closing_with_unsaved_changes_can_be_cancelled(make_window, dialogs):
    """closing the window with unsaved edits asks, and Cancel keeps the window open"""
    win = make_window()
    win.editing.add_op("relu", QPointF(0, 0))
    dialogs.answer = QMessageBox.Cancel
    assert not win.close()
    assert win.isVisible()
    dialogs.answer = QMessageBox.Discard
    assert win.close()


def test_autosave_recovery_restores_unsaved_work_after_a_crash(make_window, tmp_path,
                                                               dialogs):
    """work autosaved by a session that died is offered, and restored, at the next start"""
    crashed = make_window(pid=DEAD_PID, show=False)
    crashed.set_graph(lenet5())
    crashed.editing.set_params(crashed.document.graph.node("conv1").id, {"out_channels": 12})
    crashed.editing.add_op("sigmoid", QPointF(100, 400))
    expected = snapshot(crashed.document.graph)
    crashed.document.autosave_now()
    assert crashed.document.recovery_file().exists()
    # the crash: the process is gone without closing the window (no cleanup ran)
    crashed.scene.detach()
    crashed.document._autosave_timer.stop()

    dialogs.answer = QMessageBox.Yes
    fresh = make_window()
    assert fresh.files.offer_recovery()
    assert dialogs.calls[-1][0] == "question" and "Restore" in dialogs.calls[-1][1]
    assert snapshot(fresh.document.graph) == expected
    assert fresh.isWindowModified()              # still unsaved: saving is the user's call
    assert not (tmp_path / "recovery" / f"autosave-{DEAD_PID}.json").exists()
    assert fresh.document.recovery_file().exists()        # and protected again by this session


def test_declining_recovery_discards_the_autosave(make_window, dialogs):
    """answering No to the restore question deletes the old autosave"""
    crashed = make_window(pid=DEAD_PID, show=False)
    crashed.editing.add_op("relu", QPointF(0, 0))
    crashed.document.autosave_now()
    crashed.scene.detach()
    dialogs.answer = QMessageBox.No
    fresh = make_window()
    assert not fresh.files.offer_recovery()
    assert len(fresh.document.graph.nodes) == 0
    assert not crashed.document.recovery_file().exists()


def test_a_clean_close_leaves_no_recovery_file(make_window, tmp_path, monkeypatch, dialogs):
    """after saving and closing, the next start has nothing to restore"""
    win = make_window()
    win.editing.add_op("relu", QPointF(0, 0))
    win.document.autosave_now()
    assert win.document.recovery_file().exists()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "g.json"), ""))
    win.files.save()
    assert not win.document.recovery_file().exists()
    assert win.close()
    assert make_window().document.orphaned_recovery_files() == []


def test_theme_and_snap_preferences_persist(make_window):
    """the dark theme and snap to grid come back in the next window"""
    win = make_window()
    win.set_theme("dark")
    win.set_snap(True)
    win.close()
    again = make_window()
    assert again.theme.name == "dark" and again.act_dark.isChecked()
    assert again.scene.snap_to_grid


def test_a_long_session_of_repaints_does_not_abort(make_window):
    """tens of thousands of Qt calls (a long session) do not exhaust None's reference count"""
    win = make_window()
    win.set_graph(lenet5())
    before = sys.getrefcount(None)
    for _ in range(60):
        win.view.viewport().repaint()
    # a PySide6 build that forgets to reference None (6.12.0 on CPython 3.11) loses
    # thousands of references here and aborts soon after; a sound one keeps them
    assert sys.getrefcount(None) >= before - 100


def test_render_command_writes_a_picture(tmp_path):
    """`backprop-studio render` draws a graph file to a PNG of the requested size"""
    src = tmp_path / "lenet.json"
    save_graph(lenet5(), src)
    out = tmp_path / "lenet.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-m", "app", "render", str(src), "-o", str(out),
                        "--size", "900x300", "--theme", "dark"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    from PySide6.QtGui import QImage

    img = QImage(str(out))
    assert (img.width(), img.height()) == (900, 300)
    # dark canvas, and something drawn on it
    assert img.pixelColor(2, 2).lightness() < 60
    colours = {img.pixel(x, y) for x in range(0, 900, 7) for y in range(0, 300, 7)}
    assert len(colours) > 20


def test_render_command_rejects_a_bad_file(tmp_path):
    """rendering a file that is not a graph exits non-zero with a clear message"""
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-m", "app", "render", str(bad), "-o",
                        str(tmp_path / "x.png")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 2
    assert "x.json" in r.stderr and "JSON object" in r.stderr


def test_saved_files_are_loadable_by_the_core(make_window, tmp_path, monkeypatch):
    """a graph built in the editor loads headless with core.serialize"""
    win = make_window()
    a = win.editing.add_op("input", QPointF(0, 0))
    b = win.editing.add_op("input", QPointF(0, 150))
    m = win.editing.add_op("multiply", QPointF(300, 50))
    win.editing.set_value(a.id, 3.0)
    win.editing.set_value(b.id, 2.0)
    assert win.editing.connect_ports(a, m, "a") and win.editing.connect_ports(b, m, "b")
    path = tmp_path / "m.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    win.files.save()
    g = load_graph(path)
    from core.executor import Executor

    assert float(Executor(g).run(loss=g.node(m.name).id).value(m.name)) == 6.0


EDIT_EVERY_MS = 500


def test_steady_editing_is_autosaved_within_seconds(make_window, qtbot):
    """editing every half second for five seconds: a crash at the end would lose at most the
    last three seconds of edits (the recovery file holds the edits before them)"""
    import time

    from PySide6.QtCore import QTimer

    win = make_window()
    made = []  # (time, node count after the edit)

    def edit():
        win.editing.add_op("relu", QPointF(40 * len(made), 0))
        made.append((time.monotonic(), len(win.document.graph.nodes)))

    ticker = QTimer()
    ticker.setInterval(EDIT_EVERY_MS)
    ticker.timeout.connect(edit)
    ticker.start()
    qtbot.waitUntil(lambda: len(made) >= 10, timeout=20_000)
    ticker.stop()
    crash = time.monotonic()  # what is on disk now is all a kill -9 would leave
    path = win.document.recovery_file()
    assert path.exists(), "nothing was autosaved"
    saved = len(json.loads(path.read_text(encoding="utf-8"))["nodes"])
    newest_kept = max(t for t, n in made if n <= saved)
    lost = crash - newest_kept
    assert saved >= 4 and lost <= 3.0, f"{saved} of {len(made)} nodes kept, {lost:.1f} s lost"


def test_the_autosave_writes_the_file_off_the_gui_thread(make_window, monkeypatch):
    """the timer's autosave reads the graph on the GUI thread and writes the file on another
    one (a slow disk cannot freeze the window)"""
    import threading

    import core.serialize

    win = make_window()
    win.editing.add_op("relu", QPointF(0, 0))
    where = []
    real = core.serialize.atomic_write

    def spy(path, data):
        where.append(threading.current_thread() is threading.main_thread())
        real(path, data)

    monkeypatch.setattr(core.serialize, "atomic_write", spy)
    thread = win.document._autosave_in_background()
    thread.join(10)
    assert where == [False] and win.document.recovery_file().exists()


def test_a_save_right_after_an_autosave_leaves_no_recovery_file(make_window, tmp_path,
                                                                 monkeypatch):
    """saving while a background autosave is under way: the recovery file is gone after"""
    win = make_window()
    win.editing.add_op("relu", QPointF(0, 0))
    thread = win.document._autosave_in_background()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "g.json"), ""))
    assert win.files.save()
    thread.join(10)
    assert not win.document.recovery_file().exists()


def test_a_start_removes_temporary_files_a_killed_session_left(make_window, tmp_path):
    """half-written autosaves of a dead session (.autosave-PID.json.XXXX.tmp) are deleted when
    the app starts; a live session's are kept"""
    folder = tmp_path / "recovery"
    folder.mkdir()
    dead = folder / f".autosave-{DEAD_PID}.json.abc123.tmp"
    live = folder / f".autosave-{os.getpid()}.json.def456.tmp"
    old = folder / ".other.json.x.tmp"
    for f in (dead, live, old):
        f.write_text("{")
    os.utime(old, (1, 1))
    make_window()
    assert not dead.exists() and not old.exists()
    assert live.exists()


def test_export_picture_writes_a_png_and_a_failed_export_keeps_the_old_one(
        make_window, tmp_path, monkeypatch, dialogs):
    """File ▸ Export Picture writes the graph as a PNG (adding the suffix) and says where;
    when the write fails half-way, an error names the file and the earlier picture there
    stays whole, with no temporary file left behind"""
    from PySide6.QtGui import QImage

    win = make_window()
    win.set_graph(abc_graph())
    chosen = tmp_path / "graph"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(chosen), ""))
    messages = []
    win.files.message.connect(lambda text, _ms: messages.append(text))
    win.act_export.trigger()
    out = tmp_path / "graph.png"
    img = QImage(str(out))
    assert not img.isNull() and img.width() >= 400
    assert messages and str(out) in messages[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.png"]

    before = out.read_bytes()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))

    def disk_full(self, name, *args):  # a write that stops half-way, as on a full disk
        with open(name, "wb") as fh:
            fh.write(b"\x89PNG half")
        return False

    monkeypatch.setattr(QImage, "save", disk_full)
    win.act_export.trigger()
    kind, _title, text = dialogs.calls[-1]
    assert kind == "critical" and str(out) in text
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.png"]


def test_the_command_line_opens_a_preset_by_name_or_a_file(make_window, tmp_path, dialogs):
    """`backprop-studio net_222` opens that preset as a new untitled graph; a graph file
    opens as itself; a name that is neither says the file is missing and leaves the
    window open on the graph it has"""
    from app.main_window import open_at_start

    win = make_window()
    open_at_start(win, "net_222")
    assert win.document.path is None and len(win.document.graph.nodes) > 5
    assert "W1" in {n.name for n in win.document.graph.nodes.values()}
    path = tmp_path / "mine.json"
    save_graph(abc_graph(), path)
    open_at_start(win, str(path))
    assert win.document.path == path and snapshot(win.document.graph) == snapshot(abc_graph())
    open_at_start(win, "no_such_net")
    kind, _title, text = dialogs.calls[-1]
    assert kind == "critical" and "no_such_net" in text
    assert win.document.path == path
