"""The document without a window: clean state, autosave and recovery, recent files."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QSettings

from app.commands import AddNodeCommand, RenameCommand
from app.document import MAX_RECENT, Document
from core.graph import Graph

DEAD_PID = 4_000_000  # above Linux's pid_max: no process can have it


@pytest.fixture
def make_document(qapp, tmp_path):
    """A factory of documents sharing one settings file and one recovery folder."""
    made = []

    def make(pid=None):
        settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
        doc = Document(settings, tmp_path / "recovery", pid)
        made.append(doc)
        return doc

    yield make
    for doc in made:
        doc.stop_autosave()
        doc.analysis.close()


def add_relu(doc):
    doc.undo_stack.push(AddNodeCommand(doc.graph, "relu", (0, 0)))


def test_an_edit_makes_the_document_modified_and_says_so(make_document):
    """the first edit turns the document modified, and modified_changed(True) is emitted"""
    doc = make_document()
    seen = []
    doc.modified_changed.connect(seen.append)
    assert not doc.is_modified()
    add_relu(doc)
    assert doc.is_modified() and seen == [True]


def test_a_modified_document_autosaves_a_recovery_file_with_its_pid(make_document):
    """autosave_now writes the graph and the session's pid to autosave-PID.json"""
    doc = make_document(pid=DEAD_PID)
    add_relu(doc)
    doc.autosave_now()
    path = doc.recovery_file()
    assert path.name == f"autosave-{DEAD_PID}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["recovery"]["pid"] == DEAD_PID
    assert [n["op"] for n in data["nodes"]] == ["relu"]


def test_an_unmodified_document_removes_its_recovery_file(make_document):
    """autosave_now with nothing unsaved leaves no recovery file"""
    doc = make_document()
    add_relu(doc)
    doc.autosave_now()
    doc.undo_stack.undo()
    doc.autosave_now()
    assert not doc.recovery_file().exists()


def test_a_dead_sessions_file_is_orphaned_and_read_back(make_document):
    """the recovery file of a pid that is gone is offered to the next session, same graph"""
    crashed = make_document(pid=DEAD_PID)
    add_relu(crashed)
    crashed.autosave_now()
    fresh = make_document()
    assert fresh.orphaned_recovery_files() == [crashed.recovery_file()]
    graph, meta, files = fresh.read_recovery()
    assert [n.op_id for n in graph.nodes.values()] == ["relu"]
    assert meta["pid"] == DEAD_PID and files == [crashed.recovery_file()]
    fresh.discard_recovery(files)
    assert fresh.orphaned_recovery_files() == []


def test_a_live_sessions_file_is_not_orphaned(make_document):
    """this process's own recovery file is never offered for restore"""
    doc = make_document()
    add_relu(doc)
    doc.autosave_now()
    assert doc.recovery_file().exists()
    assert make_document(pid=DEAD_PID).orphaned_recovery_files() == []


def test_an_unreadable_orphan_is_deleted(make_document, tmp_path):
    """a damaged recovery file is not offered and does not stay behind"""
    folder = tmp_path / "recovery"
    folder.mkdir()
    bad = folder / f"autosave-{DEAD_PID}.json"
    bad.write_text("{", encoding="utf-8")
    doc = make_document()
    assert doc.read_recovery() is None
    assert not bad.exists()


def test_the_recent_list_holds_at_most_eight_newest_first(make_document, tmp_path):
    """adding ten files keeps the last eight, the newest first; re-adding one moves it up"""
    doc = make_document()
    paths = [tmp_path / f"g{i}.json" for i in range(10)]
    for p in paths:
        doc.add_recent(p)
    assert MAX_RECENT == 8
    assert doc.recent_files() == [str(p) for p in reversed(paths)][:8]
    doc.add_recent(paths[5])
    assert doc.recent_files()[:2] == [str(paths[5]), str(paths[9])]
    assert len(doc.recent_files()) == 8
    doc.clear_recent()
    assert doc.recent_files() == []


def test_write_makes_the_document_clean_and_names_it(make_document, tmp_path):
    """saving: clean, the path set, first in the recent list, no recovery file left"""
    doc = make_document()
    add_relu(doc)
    doc.autosave_now()
    titles = []
    doc.title_changed.connect(lambda: titles.append(doc.path))
    path = tmp_path / "saved.json"
    doc.write(path)
    assert not doc.is_modified() and doc.path == path
    assert doc.recent_files()[0] == str(path.resolve())
    assert not doc.recovery_file().exists()
    assert titles == [path]


def test_a_failed_write_leaves_the_document_as_it_was(make_document, tmp_path):
    """a save into a missing folder raises and keeps the document modified and untitled"""
    doc = make_document()
    add_relu(doc)
    with pytest.raises(OSError):
        doc.write(tmp_path / "no" / "such" / "folder" / "g.json")
    assert doc.is_modified() and doc.path is None


def test_restored_work_counts_as_modified_until_saved(make_document, tmp_path):
    """a recovered graph is unsaved even with an empty history"""
    doc = make_document()
    doc.set_graph(Graph())
    doc.recovered = True
    assert doc.is_modified()
    doc.write(tmp_path / "g.json")
    assert not doc.is_modified()


def test_set_graph_gives_a_clean_history_and_a_new_analysis(make_document):
    """a new graph: empty undo stack, clean, and the analysis follows the new graph"""
    doc = make_document()
    add_relu(doc)
    old = doc.analysis
    g = Graph()
    node = g.add("input", shape=(None, 3), name="x")
    doc.set_graph(g)
    assert doc.undo_stack.count() == 0 and not doc.is_modified()
    assert doc.analysis is not old and doc.analysis.graph is g
    assert doc.analysis.output_shape(node.id, "out") == (None, 3)
    doc.undo_stack.push(RenameCommand(g, node.id, "y"))
    assert doc.is_modified()
