"""The examples browser and the preset opened at start."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from gui_graphs import abc_graph, lenet5
from gui_helpers import dialogs, make_window  # noqa: F401

import examples
from core.serialize import save_graph


@pytest.fixture
def presets(tmp_path, monkeypatch):
    """Two presets in a private folder: LeNet-5 (no positions) and f = a·b + c."""
    g = lenet5()
    g.description = "The classic convolutional network for digits."
    save_graph(g, tmp_path / "lenet5.json")
    save_graph(abc_graph(), tmp_path / "abc.json")
    monkeypatch.setattr(examples, "HERE", tmp_path)
    return tmp_path


def test_the_examples_browser_previews_each_preset_with_its_description(make_window, presets,
                                                                        qtbot):
    """choosing LeNet-5 in the browser shows its picture and description, Open opens it"""
    from app.examples_dialog import ExamplesDialog

    win = make_window()
    dlg = ExamplesDialog(win.theme, win)
    qtbot.addWidget(dlg)
    titles = [dlg.list.item(i).text() for i in range(dlg.list.count())]
    assert titles == ["f = a·b + c", "LeNet-5"]
    dlg.list.setCurrentRow(1)
    assert dlg.description.text() == "The classic convolutional network for digits."
    pm = dlg.preview.pixmap()
    img = pm.toImage()
    assert not pm.isNull() and pm.width() >= 500
    colours = {img.pixelColor(x, y).rgb() for x in range(img.width())
               for y in range(0, img.height(), 3)}
    # a drawing of the network: its layer cards show in the layers colour
    assert win.theme.category_color("layers").rgb() in colours
    dlg._accept()
    assert dlg.chosen_path == presets / "lenet5.json"
    assert win.files.open_example(dlg.chosen_path)
    assert win.document.graph.name == "LeNet-5"
    assert win.document.path is None  # a preset opens as a new document: Save asks for a name


def test_the_preset_opened_at_start_is_lenet5(presets):
    """with no file given the app opens LeNet-5 when it is installed"""
    from app.main_window import default_preset

    assert default_preset() == presets / "lenet5.json"


@pytest.mark.parametrize("name", [stem for stem, _, _ in examples.list_examples()])
def test_every_preset_opens_where_it_was_placed_without_being_arranged_again(qtbot, name):
    """a preset's cards do not overlap at today's card sizes, so opening it (LeNet-5 at every
    start) shows the positions in the file and lays nothing out"""
    from core.serialize import load_graph
    from widgets.canvas import GraphScene

    graph = load_graph(examples.example_path(name))
    scene = GraphScene(graph)
    assert all(nid in graph.layout for nid in graph.nodes)
    assert scene.overlapping_cards() == 0
