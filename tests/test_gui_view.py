"""Looking around the canvas: wheel zoom, the overview map, the inspector's editors."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

from collections import Counter

from gui_graphs import abc_graph, hub_graph, lenet5, skip_wired_graph
from gui_helpers import dialogs, make_window, mouse_drag, port_pos  # noqa: F401
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QSpinBox


def test_the_wheel_zooms_around_the_cursor(make_window):
    """scrolling the wheel over a card zooms in and keeps that card under the cursor"""
    win = make_window()
    win.set_graph(abc_graph())
    view = win.view
    view.set_zoom(1.0)
    target = win.scene.nodes[win.document.graph.node("x").id].scene_card_rect().center()
    at = QPointF(view.mapFromScene(target))
    ev = QWheelEvent(at, QPointF(view.viewport().mapToGlobal(at.toPoint())), QPoint(0, 0),
                     QPoint(0, 240), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), ev)
    assert view.zoom > 1.3
    after = view.mapToScene(at.toPoint())
    assert abs(after.x() - target.x()) < 2 and abs(after.y() - target.y()) < 2
    assert win.zoom_label.text() == f"{view.zoom * 100:.0f} %"


def test_fit_to_view_shows_every_card(make_window):
    """Fit to View (F) brings the whole of LeNet-5 into the window"""
    win = make_window()
    win.set_graph(lenet5())
    win.view.set_zoom(2.0)
    win.act_fit.trigger()
    visible = win.view.visible_rect()
    for item in win.scene.nodes.values():
        assert visible.contains(item.scene_card_rect())


def test_zoomed_far_out_the_canvas_draws_an_overview_and_stays_clickable(make_window):
    """far out, cards are drawn as one overview, and clicking a block still selects it"""
    win = make_window()
    win.set_graph(lenet5())
    win.view.set_zoom(0.15)
    assert not win.scene.detailed and win.scene.overview.isVisible()
    item = win.scene.nodes[win.document.graph.node("conv2").id]
    win.view.centerOn(item)
    QApplication.processEvents()
    p = win.view.mapFromScene(item.scene_card_rect().center())
    vp = win.view.viewport()
    for kind, buttons in ((QEvent.MouseButtonPress, Qt.LeftButton),
                          (QEvent.MouseButtonRelease, Qt.NoButton)):
        QApplication.sendEvent(vp, QMouseEvent(kind, QPointF(p), QPointF(vp.mapToGlobal(p)),
                                               Qt.LeftButton, buttons, Qt.NoModifier))
    assert win.editing.selected_node_ids() == [item.node_id]
    assert win.inspector.title.text() == "conv2"
    win.view.set_zoom(1.0)
    assert win.scene.detailed and not win.scene.overview.isVisible()


def test_while_the_zoom_changes_cards_are_scaled_then_sharp_again(make_window, qtbot):
    """a zoom gesture scales cached cards (no per-step repaint) and hides wire labels;
    when the view rests the cards are cached per pixel again and the labels return"""
    from PySide6.QtWidgets import QGraphicsItem

    win = make_window()
    win.set_graph(lenet5())
    win.show()
    view, scene = win.view, win.scene
    view._settled()
    assert not scene.scaling
    view.zoom_by(1.2)
    assert scene.scaling
    assert all(it.scaled and it.cacheMode() != QGraphicsItem.DeviceCoordinateCache
               for it in scene.nodes.values())
    qtbot.waitUntil(lambda: not scene.scaling, timeout=2000)
    qtbot.waitUntil(lambda: all(it.cacheMode() == QGraphicsItem.DeviceCoordinateCache
                                for it in scene.nodes.values()), timeout=2000)
    # a card added meanwhile follows the current mode
    view.zoom_by(1.1)
    win.document.graph.add("relu", name="late")
    late = scene.nodes[win.document.graph.node("late").id]
    assert late.scaled and late.cacheMode() != QGraphicsItem.DeviceCoordinateCache


def test_cards_coming_into_view_while_zooming_fill_in_a_few_per_frame(make_window, qtbot):
    """zooming in from the overview draws the cards that appear as blocks first and then
    in full a few per frame, instead of all of them in one long frame"""
    from gui_graphs import vgg16

    from widgets.canvas import REFINE_PER_FRAME

    win = make_window()
    win.set_graph(vgg16())
    QApplication.processEvents()  # the fit to view that opening schedules
    view, scene = win.view, win.scene
    view.set_zoom(0.2)
    view._settled()
    view.set_zoom(0.4)
    assert scene.scaling and scene.detailed
    view.viewport().repaint()
    queued = len(scene._refine)
    assert queued > REFINE_PER_FRAME  # many cards came into view at once
    scene._refine_some()
    assert len(scene._refine) == queued - REFINE_PER_FRAME
    qtbot.waitUntil(lambda: not scene._refine, timeout=3000)


def test_when_the_zoom_rests_the_cards_in_view_sharpen_a_few_per_frame(make_window, qtbot):
    """when the zoom comes to rest the cards in view are drawn sharp again a few per
    frame, not all in one long frame, and the cards out of view after them"""
    from gui_graphs import vgg16
    from PySide6.QtWidgets import QGraphicsItem

    from widgets.canvas import SHARPEN_PER_FRAME

    win = make_window()
    win.set_graph(vgg16())
    QApplication.processEvents()
    view, scene = win.view, win.scene
    view.set_zoom(0.5)
    view.viewport().repaint()
    view._settle.stop()
    view._settled()
    in_view = scene.cards_meeting(view._near_view())  # with those whose ports show
    assert len(in_view) > SHARPEN_PER_FRAME
    assert all(it.scaled for it in in_view)  # still the zoom's pictures
    out_of_view = [it for it in scene.nodes.values() if it not in in_view]
    assert out_of_view and all(it in scene._sharpen_later for it in out_of_view)
    view.viewport().repaint()  # the frame that shows the view at rest
    scene._sharpen_some()
    assert sum(not it.scaled for it in in_view) == SHARPEN_PER_FRAME
    assert all(it.scaled for it in out_of_view)  # not before those in view are done
    qtbot.waitUntil(lambda: all(it.cacheMode() == QGraphicsItem.DeviceCoordinateCache
                                for it in scene.nodes.values()), timeout=3000)


def test_zooming_across_the_overview_threshold_switches_the_cards_in_view_first(make_window,
                                                                              qtbot):
    """zooming across the overview threshold switches the cards and wires in view at
    once and the others over the next ticks, so that frame does not pay for all of them"""
    from gui_graphs import vgg16
    from PySide6.QtWidgets import QGraphicsItem

    from widgets.canvas import DETAIL_LOD, EdgeItem, NodeItem

    win = make_window()
    win.set_graph(vgg16())
    QApplication.processEvents()
    view, scene = win.view, win.scene
    view.set_zoom(1.5)
    view._settled()
    items = list(scene.nodes.values()) + list(scene.edges.values())
    view.set_zoom(DETAIL_LOD * 0.9)  # into the overview
    assert not scene.detailed and scene.overview.isVisible()
    shown = [it for it in scene.items(view.visible_rect())
             if isinstance(it, (NodeItem, EdgeItem))]
    assert shown and all(it.flags() & QGraphicsItem.ItemHasNoContents for it in shown)
    assert 0 < len(scene._detail_pending) < len(items)  # the rest follow
    qtbot.waitUntil(lambda: not scene._detail_pending, timeout=2000)
    assert all(it.flags() & QGraphicsItem.ItemHasNoContents for it in items)
    view.set_zoom(1.0)  # and back: every item draws itself again
    qtbot.waitUntil(lambda: not scene._detail_pending, timeout=2000)
    assert scene.detailed and not scene.overview.isVisible()
    assert not any(it.flags() & QGraphicsItem.ItemHasNoContents for it in items)


def test_cards_panned_into_view_before_their_switch_are_drawn_at_once(make_window):
    """after zooming in across the overview threshold, cards and wires panned into view
    while the switch is still under way draw themselves straight away"""
    from gui_graphs import wide_graph
    from PySide6.QtWidgets import QGraphicsItem

    win = make_window()
    win.set_graph(wide_graph())
    QApplication.processEvents()
    view, scene = win.view, win.scene
    view.set_zoom(0.1)
    view._settled()
    QApplication.processEvents()
    view.set_zoom(1.0)  # into detail: the cards in view now, the others a few per tick
    assert scene.detailed and scene._detail_pending
    waiting = next(it for it in scene._detail_pending if it in scene.nodes.values())
    view.centerOn(waiting)
    assert waiting not in scene._detail_pending
    assert not waiting.flags() & QGraphicsItem.ItemHasNoContents
    assert not any(e.flags() & QGraphicsItem.ItemHasNoContents for e in waiting.edges)


def test_zooming_with_many_cards_in_view_draws_the_overview_until_the_view_rests(
        make_window, qtbot):
    """while the zoom changes with more cards in view than can be drawn one by one in a
    frame, the overview picture draws them; when the view rests the cards return"""
    from gui_graphs import wide_graph

    from widgets.canvas import DETAIL_LOD, ZOOMING_CARDS

    win = make_window()
    win.resize(1400, 950)  # a canvas of a usual size, so many cards fit while still readable
    win.set_graph(wide_graph())
    QApplication.processEvents()
    view, scene = win.view, win.scene
    view.set_zoom(1.0)
    view.centerOn(scene.content_rect().center())  # the middle of the graph, full of cards
    view._settled()
    while scene.cards_in(view.visible_rect()) <= ZOOMING_CARDS:
        view.zoom_by(0.9)
    assert view.zoom >= DETAIL_LOD
    assert scene.scaling and not scene.detailed and scene.overview.isVisible()
    qtbot.waitUntil(lambda: not scene.scaling, timeout=2000)
    assert scene.detailed and not scene.overview.isVisible()


def test_a_picture_taken_right_after_a_zoom_shows_the_cards_in_full(make_window):
    """exporting a picture while the cards are still scaled from a zoom draws them in
    full, not as the blocks shown mid-zoom"""
    from widgets.canvas import render_scene

    win = make_window()
    win.set_graph(lenet5())
    view, scene = win.view, win.scene
    view.zoom_by(0.8)
    assert scene.scaling and all(it.scaled for it in scene.nodes.values())
    render_scene(scene, 800, 300)
    assert not scene.scaling and not any(it.scaled for it in scene.nodes.values())


def test_the_canvas_area_follows_the_cards_so_a_far_card_stays_clickable(make_window):
    """the scene's area hugs the cards (its item index stays fine-grained) and grows
    when a card is moved far away, which can still be clicked there"""
    from widgets.canvas import BOUNDS_STEP

    win = make_window()
    win.set_graph(lenet5())
    QApplication.processEvents()
    scene, view = win.scene, win.view
    content = scene.content_rect()
    area = scene.sceneRect()
    assert area.contains(content)
    assert area.width() <= content.width() + 4 * BOUNDS_STEP
    item = scene.nodes[win.document.graph.node("conv2").id]
    win.document.graph.move(item.node_id, (content.right() + 5 * BOUNDS_STEP, content.top()))
    QApplication.processEvents()
    assert scene.sceneRect().contains(item.scene_card_rect())
    view.set_zoom(1.0)
    view.centerOn(item)
    QApplication.processEvents()
    p = view.mapFromScene(item.scene_card_rect().center())
    assert item in view.items(p)


def test_dragging_a_card_updates_the_obstacle_map_in_place(make_window):
    """the wire router sees a moved card at its new place without a full rebuild"""
    win = make_window()
    win.set_graph(lenet5())
    scene = win.scene
    item = scene.nodes[win.document.graph.node("conv2").id]
    scene.obstacles(-1e9, 1e9, -1e9, 1e9, margin=0.0)  # builds the map
    cards = scene._cards
    item.setPos(item.pos() + QPointF(500, 300))
    assert scene._cards is cards  # updated, not dropped
    x, y = item.x(), item.y()
    rows = scene.obstacles(x - 1, x + 1, y - 1, y + 1, margin=0.0)
    assert any(abs(r[0] - x) < 1e-6 and abs(r[1] - y) < 1e-6 for r in rows)
    fresh = scene._cards[1].copy()
    scene.card_geometry_changed()  # a full rebuild gives the same map
    scene.obstacles(-1e9, 1e9, -1e9, 1e9)
    assert (scene._cards[1] == fresh).all()


def test_clicking_the_overview_map_pans_the_canvas(make_window):
    """a click in the Overview panel centres the canvas on that spot"""
    win = make_window()
    win.set_graph(lenet5())
    win.overview_dock.show()
    win.overview_dock.raise_()
    QApplication.processEvents()
    win.view.set_zoom(1.0)
    win.view.centerOn(win.scene.content_rect().left(), 0)
    mm = win.view.minimap
    world, s, ox, oy = mm._mapping()
    loss = win.scene.nodes[win.document.graph.node("loss").id].scene_card_rect().center()
    p = QPointF(ox + (loss.x() - world.x()) * s, oy + (loss.y() - world.y()) * s)
    QApplication.sendEvent(mm, QMouseEvent(QEvent.MouseButtonPress, p, QPointF(mm.mapToGlobal(
        p.toPoint())), Qt.LeftButton, Qt.LeftButton, Qt.NoModifier))
    centre = win.view.visible_rect().center()
    assert abs(centre.x() - loss.x()) < 30


def test_the_inspector_is_built_from_the_parameter_spec(make_window):
    """a Leaky ReLU gets a float box with its range, a batch norm spin boxes, a conv combos"""
    win = make_window()
    g = win.document.graph
    conv = win.editing.add_op("conv2d", QPointF(0, 0))
    win.editing.select_nodes([conv.id])
    ins = win.inspector
    out_ch = ins.editor("out_channels")
    assert isinstance(out_ch, QSpinBox) and out_ch.minimum() == 1
    kernel = ins.editor("kernel").findChildren(QSpinBox)
    assert [k.value() for k in kernel] == [3, 3]
    assert isinstance(ins.editor("mode"), QComboBox)
    assert ins.editor("mode").currentText() == g.nodes[conv.id].params["mode"]
    assert isinstance(ins.editor("bias"), QCheckBox) and ins.editor("bias").isChecked()
    leaky = win.editing.add_op("leaky_relu", QPointF(0, 300))
    win.editing.select_nodes([leaky.id])
    alpha = ins.editor("alpha")
    assert (alpha.minimum(), alpha.maximum(), alpha.value()) == (0.0, 1.0, 0.01)
    assert alpha.text() == "0.01"
    assert "max(0" in ins.findChild(type(ins.title), "inspectorFormula").text() or \
        "αx" in ins.findChild(type(ins.title), "inspectorFormula").text()


def test_dragging_from_an_input_port_to_an_output_connects_too(make_window):
    """wires can be drawn backwards, from a free input to an output"""
    win = make_window()
    g = win.document.graph
    a = win.editing.add_op("input", QPointF(0, 0))
    t = win.editing.add_op("tanh", QPointF(400, 0))
    mouse_drag(win, port_pos(win, t.name, "x", False), port_pos(win, a.name, "out", True))
    assert g.in_edges(t)["x"].src == a.id


def test_double_clicking_empty_canvas_opens_the_add_popup_there(make_window, qtbot):
    """a double-click on empty canvas offers every op and adds the chosen one there"""
    win = make_window()
    win.view.set_zoom(1.0)
    p = QPoint(300, 250)
    qtbot.mouseDClick(win.view.viewport(), Qt.LeftButton, pos=p)
    assert win.quick_add.isVisible()
    assert len(win.quick_add.ops()) == len(__import__("core.ops", fromlist=["REGISTRY"]).REGISTRY)
    win.quick_add.choose("exp")
    node = next(iter(win.document.graph.nodes.values()))
    assert win.scene.nodes[node.id].scene_card_rect().contains(win.view.mapToScene(p))


def test_standard_shortcuts_work_on_the_canvas(make_window, qtbot):
    """Delete removes the selected node, Ctrl+Z brings it back, Ctrl+D duplicates it"""
    win = make_window()
    n = win.editing.add_op("relu", QPointF(0, 0))
    win.activateWindow()
    win.view.setFocus()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    win.editing.select_nodes([n.id])
    qtbot.keyClick(win.view, Qt.Key_Delete)
    assert not win.document.graph.nodes
    qtbot.keyClick(win.view, Qt.Key_Z, Qt.ControlModifier)
    assert list(win.document.graph.nodes) == [n.id]
    win.editing.select_nodes([n.id])
    qtbot.keyClick(win.view, Qt.Key_D, Qt.ControlModifier)
    assert [x.name for x in win.document.graph.nodes.values()] == ["relu", "relu2"]
    # the menus show the shortcuts
    assert win.act_duplicate.shortcut().toString() == "Ctrl+D"
    assert win.act_add.shortcut().toString() == "Tab"
    assert win.act_fit.shortcut().toString() == "F"


def test_zooming_updates_the_zoom_readout_without_relaying_out_the_window(make_window,
                                                                         qtbot):
    """zooming changes the percentage in the status bar but does not make the window
    lay out its panels again (that cost about a millisecond of every zoom frame)"""
    from PySide6.QtCore import QObject

    class LayoutRequests(QObject):
        count = 0

        def eventFilter(self, obj, event):
            if event.type() == QEvent.LayoutRequest:
                self.count += 1
            return False

    win = make_window()
    win.set_graph(abc_graph())
    win.view.set_zoom(0.8)
    qtbot.wait(300)  # whatever opening and a first zoom leave to lay out happens here
    watch = LayoutRequests()
    widgets = [win, win.statusBar(), win.centralWidget()]
    for w in widgets:
        w.installEventFilter(watch)
    for z in (0.5, 0.75, 1.25, 2.0):
        win.view.set_zoom(z)
        QApplication.processEvents()
    assert win.zoom_label.text() == "200 %"
    assert watch.count == 0


def test_while_the_zoom_changes_the_scroll_bars_are_redrawn_only_when_it_rests(make_window,
                                                                               qtbot):
    """while the zoom changes the scroll bars keep working but are not redrawn at every
    wheel step; when the view rests they are drawn again at their new position"""
    win = make_window()
    win.set_graph(lenet5())
    QApplication.processEvents()
    view = win.view
    bars = (view.horizontalScrollBar(), view.verticalScrollBar())
    before = [b.maximum() for b in bars]
    view.zoom_by(1.25)
    assert [b.maximum() for b in bars] != before  # the range follows the zoom at once
    assert bars[0].isVisible() and bars[1].isVisible()
    assert not any(b.updatesEnabled() for b in bars)
    qtbot.waitUntil(lambda: all(b.updatesEnabled() for b in bars), timeout=2000)
    assert not win.scene.scaling


def test_a_card_panned_into_view_before_it_is_sharp_again_sharpens_with_those_in_view(
        make_window):
    """after a zoom comes to rest, a card panned into view while the cards out of view
    still wait to be sharpened is drawn sharp a few frames later, like the cards in view"""
    from gui_graphs import wide_graph

    win = make_window()
    win.set_graph(wide_graph())
    QApplication.processEvents()
    view, scene = win.view, win.scene
    view.set_zoom(0.8)
    view._settle.stop()
    view._settled()
    waiting = next(it for it in scene._sharpen_later)
    assert waiting.scaled
    view.centerOn(waiting)
    assert waiting not in scene._sharpen_later and waiting in scene._sharpen
    while scene._sharpen:
        scene._sharpen_some()
    assert not waiting.scaled


def test_the_canvas_keeps_room_for_a_few_screens_of_card_pictures(make_window):
    """opening the window makes Qt's picture cache big enough that cards panned away and
    back on a high-density screen are not drawn again (the default 10 MB held ~20)"""
    from PySide6.QtGui import QPixmapCache

    from widgets.canvas import PIXMAP_CACHE_KB

    make_window()
    assert QPixmapCache.cacheLimit() >= PIXMAP_CACHE_KB >= 64 * 1024


def test_a_wire_can_be_clicked_where_it_runs_after_its_card_moves(make_window):
    """after a card is moved, clicking its wire at the wire's new place hits it and
    clicking where the wire used to run does not"""
    from widgets.canvas import EdgeItem

    win = make_window()
    win.set_graph(abc_graph())
    QApplication.processEvents()
    scene = win.scene
    wire = next(iter(scene.edges.values()))
    old_mid = wire.path.pointAtPercent(0.5)
    assert wire.shape().contains(old_mid)  # asked once, so its hit area is kept
    card = wire.dst
    win.document.graph.move(card.node_id, (card.x(), card.y() + 300))
    scene.flush_edges()
    new_mid = wire.path.pointAtPercent(0.5)
    assert wire.shape().contains(new_mid)
    assert not wire.shape().contains(old_mid)
    assert wire in [it for it in scene.items(new_mid) if isinstance(it, EdgeItem)]


def test_a_long_graph_opens_with_its_first_cards_readable(make_window, tmp_path):
    """opening LeNet-5 in a small window shows its first cards at a readable zoom, from the
    input on the left, not the whole chain as tiny blocks; Fit to View still shows it all"""
    from core.serialize import save_graph
    from widgets.canvas import READABLE_ZOOM

    path = tmp_path / "lenet5.json"
    save_graph(lenet5(), path)
    win = make_window()
    win.resize(1000, 700)
    QApplication.processEvents()
    assert win.files.open_file(str(path))
    QApplication.processEvents()
    view, scene = win.view, win.scene
    assert view.zoom >= READABLE_ZOOM and scene.detailed
    first = min(scene.nodes.values(), key=lambda it: it.pos().x())
    assert view.visible_rect().contains(first.scene_card_rect())
    win.act_fit.trigger()
    assert view.zoom < READABLE_ZOOM  # the whole chain does not fit at a readable zoom


class _EveryCard:
    """Obstacles found by testing every card (what the router saw before the index)."""

    def __init__(self, scene):
        self.rects = [(it, it.x(), it.y(), it.x() + it.width, it.y() + it.height)
                      for it in scene.nodes.values()]

    def obstacles(self, x0, x1, y0, y1, exclude=(), margin=8.0):
        import numpy as np

        rows = [(l - margin, t - margin, r + margin, b + margin)
                for it, l, t, r, b in self.rects
                if it not in exclude and r + margin > x0 and l - margin < x1
                and b + margin > y0 and t - margin < y1]
        return np.array(rows, dtype=float).reshape(-1, 4)


def _elements(path):
    return [(e.type, e.x, e.y) for e in (path.elementAt(i) for i in range(path.elementCount()))]


def test_after_a_drag_every_wire_runs_as_routing_past_every_card_would_run_it(make_window):
    """wires routed with the card index come out as if every card had been tested"""
    from widgets.canvas.routing import route

    win = make_window()
    win.set_graph(skip_wired_graph(240, 4))
    scene = win.scene
    card = scene.nodes[win.document.graph.node("x0").id]
    win.view.set_zoom(1.0)
    win.view.centerOn(card)
    QApplication.processEvents()
    grab = card.scenePos() + QPointF(card.width / 2, 8)
    mouse_drag(win, grab, grab + QPointF(260, 170), steps=5)
    scene.flush_edges()
    every = _EveryCard(scene)
    detours = 0
    for wire in scene.edges.values():
        p1, p2 = wire.endpoints()
        want = route(every, p1, p2, exclude=(wire.src, wire.dst))
        assert _elements(wire.path) == _elements(want)
        detours += want.elementCount() > 4  # more than one curve: it went round cards
    assert detours > 0


def test_a_short_wire_is_routed_looking_only_at_the_cards_near_it(make_window):
    """routing one wire asks the card index for the cards around it, not all of them"""
    win = make_window()
    win.set_graph(skip_wired_graph(240, 4))
    scene = win.scene
    index = scene._card_map()[3]
    wire = next(w for w in scene.edges.values() if len(w.src.edges) == 2)
    before = index.examined
    wire.update_path()
    assert 0 < index.examined - before < len(scene.nodes) / 4


def test_dragging_two_connected_cards_routes_each_of_their_wires_once_per_move(make_window,
                                                                               monkeypatch):
    """while two selected cards are dragged, each wire they touch is re-routed once per
    mouse move (not once per moved end) and no other wire is"""
    from widgets.canvas import EdgeItem

    win = make_window()
    win.set_graph(lenet5())
    scene = win.scene
    g = win.document.graph
    a, b = scene.nodes[g.node("conv2").id], scene.nodes[g.node("relu2").id]
    a.setSelected(True)
    b.setSelected(True)
    win.view.set_zoom(1.0)
    win.view.centerOn(a)
    QApplication.processEvents()
    routed = []
    original = EdgeItem.update_path

    def counted(self, *args, **kwargs):
        routed.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(EdgeItem, "update_path", counted)
    moves = []
    grab = a.scenePos() + QPointF(a.width / 2, 8)
    start = a.pos()

    def look():
        moves.append(list(routed))

    mouse_drag(win, grab, grab + QPointF(0, 120), steps=4, after_move=look)
    assert a.pos() != start
    touched = set(a.edges) | set(b.edges)
    assert len(touched) < len(a.edges) + len(b.edges)  # one wire joins them
    per_wire = Counter(moves[0])
    assert set(per_wire) == touched
    assert set(per_wire.values()) == {4}  # 4 moves


def _routes_as_every_card_would(scene) -> bool:
    from widgets.canvas.routing import route

    every = _EveryCard(scene)
    return all(_elements(w.path) == _elements(route(every, *w.endpoints(), exclude=(w.src, w.dst)))
               for w in scene.edges.values())


def _centre_at_full_size(win, name):
    """The card of node ``name``, at 100 % zoom in the middle of the view."""
    card = win.scene.nodes[win.document.graph.node(name).id]
    win.view.keep_view()
    win.view.set_zoom(1.0)
    win.view.centerOn(card)
    QApplication.processEvents()
    return card


def test_dragging_a_card_with_many_wires_routes_its_nearest_and_the_rest_once_it_rests(
        make_window, qtbot):
    """while a card with more wires than a frame can route is dragged, its shortest wires
    go round the cards and the others are drawn as plain curves; when the mouse rests,
    still pressed, every wire takes the route it would take after the drag"""
    from widgets.canvas.routing import plain_path
    from widgets.canvas.scene import ROUTE_PER_MOVE

    win = make_window()
    win.set_graph(hub_graph())
    scene = win.scene
    hub = _centre_at_full_size(win, "hub")
    assert len(hub.edges) > ROUTE_PER_MOVE
    seen = {}

    def look():
        plain = [w for w in hub.edges if w.rough]
        seen["plain"] = len(plain)
        seen["drawn plain"] = all(_elements(w.path) == _elements(plain_path(*w.endpoints()))
                                  for w in plain)
        span = [abs(w.endpoints()[1].x() - w.endpoints()[0].x())
                + abs(w.endpoints()[1].y() - w.endpoints()[0].y()) for w in hub.edges]
        seen["shortest routed"] = max(s for s, w in zip(span, hub.edges) if not w.rough) <= \
            min(s for s, w in zip(span, hub.edges) if w.rough)
        qtbot.waitUntil(lambda: not any(w.rough for w in scene.edges.values()))
        seen["rested"] = _routes_as_every_card_would(scene)
        seen["detours"] = any(w.path.elementCount() > 4 for w in hub.edges)

    grab = hub.scenePos() + QPointF(hub.width / 2, 8)
    mouse_drag(win, grab, grab + QPointF(90, 240), steps=4, after_move=look)
    assert seen == {"plain": len(hub.edges) - ROUTE_PER_MOVE, "drawn plain": True,
                    "shortest routed": True, "rested": True, "detours": True}


def test_after_dragging_a_busy_card_and_undoing_every_wire_runs_as_before(make_window):
    """the moment a drag of a card with many wires ends, each wire runs as a full route runs
    it; undo puts every wire back exactly where it ran, and redo where it ran after"""
    win = make_window()
    win.set_graph(hub_graph())
    scene = win.scene
    hub = _centre_at_full_size(win, "hub")

    def paths():
        return {e: _elements(w.path) for e, w in scene.edges.items()}

    before = paths()
    grab = hub.scenePos() + QPointF(hub.width / 2, 8)
    mouse_drag(win, grab, grab + QPointF(90, 240), steps=4)
    assert _routes_as_every_card_would(scene)
    after = paths()
    assert after != before
    win.act_undo.trigger()
    assert paths() == before
    win.act_redo.trigger()
    assert paths() == after


def test_opening_a_graph_of_many_wires_routes_only_those_whose_plain_curve_meets_a_card(
        make_window, monkeypatch):
    """a graph just opened shows every wire as routing past every card would run it, and
    the router was asked only about the wires a plain curve could not draw"""
    import widgets.canvas.wires as wires
    from widgets.canvas.routing import _cubic_points, _hits, default_curve
    from widgets.canvas.scene import MANY_WIRES

    asked = []
    route = wires.route

    def counted(scene, p1, p2, exclude=()):
        asked.append((p1, p2))
        return route(scene, p1, p2, exclude)

    monkeypatch.setattr(wires, "route", counted)
    win = make_window()
    win.set_graph(skip_wired_graph(400, 5))
    scene = win.scene
    assert len(scene.edges) >= MANY_WIRES
    assert _routes_as_every_card_would(scene)
    every = _EveryCard(scene)

    def clear(w):
        p1, p2 = w.endpoints()
        rects = every.obstacles(p1.x() + 2, p2.x() - 2, min(p1.y(), p2.y()) - 60,
                                max(p1.y(), p2.y()) + 60, (w.src, w.dst))
        return p2.x() - p1.x() >= 60 and not _hits(_cubic_points(*default_curve(p1, p2)), rects)

    plain = [w.endpoints() for w in scene.edges.values() if clear(w)]
    assert len(plain) > len(scene.edges) / 4
    assert not [ends for ends in asked if ends in plain]


def _hover(win, scene_pos: QPointF):
    vp = win.view.viewport()
    p = win.view.mapFromScene(scene_pos)
    QApplication.sendEvent(vp, QMouseEvent(QEvent.MouseMove, QPointF(p), QPointF(
        vp.mapToGlobal(p)), Qt.NoButton, Qt.NoButton, Qt.NoModifier))


def test_hovering_a_port_grows_it_and_shows_the_connect_cursor(make_window):
    """moving the mouse onto a port's outer half grows the port and turns the cursor into a
    cross; moving on to the card's body puts both back"""
    win = make_window()
    win.set_graph(abc_graph())
    card = _centre_at_full_size(win, "x")
    port = card.out_ports["out"]
    _hover(win, card.scene_card_rect().center())
    _hover(win, port.scenePos() + QPointF(6, 0))  # beside the card, on the port's disc
    assert port.hover and win.view.viewport().cursor().shape() == Qt.CrossCursor
    _hover(win, card.scene_card_rect().center())
    assert not port.hover and win.view.viewport().cursor().shape() == Qt.ArrowCursor


def test_a_press_on_a_ports_outer_half_drags_a_wire_not_the_card(make_window):
    """pressing just outside a card on its output port and dragging to an input connects
    the two and leaves the card where it was"""
    win = make_window()
    win.set_graph(abc_graph())
    g = win.document.graph
    neg = win.editing.add_op("negate", QPointF(520, 300))
    card = _centre_at_full_size(win, "c")
    where = card.pos()
    mouse_drag(win, port_pos(win, "c", "out", True) + QPointF(6, 0),
               port_pos(win, neg.name, "x", False))
    assert card.pos() == where
    assert any(e.src == g.node("c").id and e.dst == neg.id for e in g.edges)


def test_a_cards_ports_are_drawn_by_the_card_not_items_of_their_own(make_window):
    """a graph shows one item per card and per wire: its ports add no items to the canvas"""
    from widgets.canvas import EdgeItem, NodeItem

    win = make_window()
    win.set_graph(lenet5())
    scene = win.scene
    cards = [it for it in scene.items() if isinstance(it, NodeItem)]
    under = [c for card in cards for c in card.childItems()]
    assert len(cards) == len(scene.nodes) and under == []
    assert len([it for it in scene.items() if isinstance(it, EdgeItem)]) == len(scene.edges)


def test_while_a_card_is_dragged_wires_are_drawn_the_fast_way_until_it_rests(make_window,
                                                                               qtbot):
    """during a card drag the canvas draws plain lines (as while panning), and smooth
    ones again once the mouse has stopped"""
    win = make_window()
    win.set_graph(lenet5())
    scene = win.scene
    card = scene.nodes[win.document.graph.node("conv2").id]
    win.view.set_zoom(1.0)
    win.view.centerOn(card)
    qtbot.waitUntil(lambda: not scene.interacting)
    during = []
    grab = card.scenePos() + QPointF(card.width / 2, 8)
    mouse_drag(win, grab, grab + QPointF(80, 40), steps=3,
               after_move=lambda: during.append(scene.interacting))
    assert during == [True]
    qtbot.waitUntil(lambda: not scene.interacting)


def test_a_scene_that_outlives_its_view_goes_on_changing_without_errors(qtbot):
    """closing a canvas whose scene lives on (a second view, a test) leaves no timer or
    callback of the closed view behind: the scene can still change and its items move"""
    from shiboken6 import isValid

    from widgets.canvas import GraphScene, GraphView

    scene = GraphScene(abc_graph())
    view = GraphView(scene)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_zoom(1.5)  # starts the settle timer
    view.horizontalScrollBar().setValue(view.horizontalScrollBar().value() + 5)
    view.deleteLater()
    qtbot.waitUntil(lambda: not isValid(view))
    card = next(iter(scene.nodes.values()))
    card.setPos(card.pos() + QPointF(40, 0))  # scene.changed fires with no view
    scene.update()
    qtbot.wait(250)  # past the settle and minimap timers
    assert scene.items()


def test_resting_the_mouse_on_a_card_shows_its_name_and_formula(make_window):
    """the tooltip a user gets on resting the mouse on a card names the node and its op and
    shows the formula"""
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QToolTip

    win = make_window()
    win.set_graph(abc_graph())
    card = _centre_at_full_size(win, "x")
    where = card.scene_card_rect().center()
    _hover(win, where)
    local = win.view.mapFromScene(where)
    vp = win.view.viewport()
    QApplication.sendEvent(vp, QHelpEvent(QEvent.ToolTip, local, vp.mapToGlobal(local)))
    assert "<b>x</b>" in QToolTip.text() and "Multiply" in QToolTip.text()
