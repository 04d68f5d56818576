"""The stepping overlay on the canvas: values above wires, gradients below, states, breakpoints."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor

from core.layout import layered_layout
from core.serialize import load_graph
from core.stepping import StepSession
from examples import example_path
from widgets.canvas import GraphScene, GraphView

pytestmark = pytest.mark.gui


def stepped(qtbot, name):
    graph = load_graph(example_path(name))
    scene = GraphScene(graph)
    view = GraphView(scene)
    scene.setParent(view)  # the view's settle timer may fire after the test: scene and all
    qtbot.addWidget(view)
    view.resize(1000, 700)
    session = StepSession(graph)
    return scene, view, session


def by_name(scene, name):
    return next(nid for nid, n in scene.graph.nodes.items() if n.name == name)


def wire(scene, src, dst):
    s, d = by_name(scene, src), by_name(scene, dst)
    edge = next(e for e in scene.graph.edges if e.src == s and e.dst == d)
    return scene.stepping.wire_label(edge)


def texts(scene):
    return ({e: (lab.value_text, lab.grad_text) for e in scene.edges
             if (lab := scene.stepping.wire_label(e)) is not None},
            {k: (lab.value_text, lab.grad_text) for k, lab in scene.stepping._outs.items()
             if lab.isVisible()})


def test_after_evaluate_abc_reads_f_is_2_and_gradients_2_3_1(qtbot):
    """After Evaluate on f = a·b + c the canvas reads f = 2 beside the loss, and the
    gradients 2, 3 and 1 below the wires from a, b and c."""
    scene, _view, s = stepped(qtbot, "abc")
    s.evaluate()
    scene.stepping.show(s)
    f = scene.stepping.output_label(by_name(scene, "f"))
    assert f.value_text == "f = 2.000"
    assert f.grad_text == "1.000"
    assert wire(scene, "a", "e").grad_text == "2.000"
    assert wire(scene, "b", "e").grad_text == "3.000"
    assert wire(scene, "c", "f").grad_text == "1.000"
    assert wire(scene, "a", "e").value_text == "3.000"


def test_the_sigmoid_neuron_shows_0_7311_after_its_forward_pass(qtbot):
    """After the forward pass the sigmoid neuron's output reads f = 0.7311, and the
    nodes are drawn as evaluated, none pending."""
    scene, _view, s = stepped(qtbot, "sigmoid_neuron")
    s.run_forward()
    scene.stepping.show(s)
    f = scene.stepping.output_label(by_name(scene, "f"))
    assert f.value_text == "f = 0.7311"
    assert f.grad_text == ""
    assert "pending" not in {scene.stepping.node_state(n) for n in scene.nodes}


def test_the_222_network_reads_e_to_4_digits_with_full_precision_on_hover(qtbot):
    """The 2-2-2 network's loss reads E = 0.2984; hovering shows 0.298371109…"""
    scene, _view, s = stepped(qtbot, "net_222")
    s.evaluate()
    scene.stepping.show(s)
    e = scene.stepping.output_label(by_name(scene, "E"))
    assert e.value_text == "E = 0.2984"
    full = e.toolTip().splitlines()[0].removeprefix("value: ")
    assert len(full) > 12  # every digit, not the 4 on the canvas
    assert float(full) == pytest.approx(0.298371109, abs=5e-10)


def test_tensor_wires_show_shape_and_a_statistic_and_hide_the_shape_pill(qtbot):
    """A tensor wire reads its shape with mean and std (value) and norm (gradient);
    the plain shape pill is hidden while the value is shown."""
    scene, _view, s = stepped(qtbot, "net_222")
    s.evaluate()
    scene.stepping.show(s)
    lab = wire(scene, "x", "x·W1")
    # shortened to the room between the cards; the tooltip has the whole statistics
    assert lab.value_text.startswith(("1×2  μ ", "μ "))
    assert lab.grad_text.startswith(("1×2  ‖·‖ ", "‖·‖ "))
    assert "(1, 2) mean" in lab.toolTip()
    assert lab.edge_item.pill_hidden
    assert lab.zValue() > scene.nodes[by_name(scene, "x")].zValue()


def test_step_back_restores_the_previous_labels_exactly(qtbot):
    """Step back after a backward step shows exactly the labels seen before it."""
    scene, _view, s = stepped(qtbot, "sigmoid_neuron")
    s.go_to(12)
    scene.stepping.show(s)
    before = texts(scene)
    states = {n: scene.stepping.node_state(n) for n in scene.nodes}
    s.step()
    scene.stepping.show(s)
    assert texts(scene) != before
    s.step_back()
    scene.stepping.show(s)
    assert texts(scene) == before
    assert {n: scene.stepping.node_state(n) for n in scene.nodes} == states


def test_the_current_node_is_highlighted_and_pending_nodes_dimmed(qtbot):
    """Mid-forward the node just run is current, those after it pending."""
    scene, _view, s = stepped(qtbot, "abc")
    s.go_to(1)
    scene.stepping.show(s)
    cur = s.current.node_id
    assert scene.stepping.node_state(cur) == "current"
    assert scene.stepping.node_state(by_name(scene, "f")) == "pending"


def test_clear_restores_the_editor_look(qtbot):
    """Clearing the stepping view hides every value, state and gradient and brings the
    shape pills back."""
    scene, _view, s = stepped(qtbot, "abc")
    s.evaluate()
    scene.stepping.show(s)
    scene.stepping.clear()
    assert texts(scene) == ({}, {})
    assert all(scene.stepping.node_state(n) is None for n in scene.nodes)
    assert not any(item.pill_hidden for item in scene.edges.values())
    assert not scene.stepping.shown


def test_a_wire_with_little_room_shows_a_shorter_label(qtbot):
    """Moving two cards close together shortens the tensor label to fit between them."""
    scene, _view, s = stepped(qtbot, "net_222")
    s.evaluate()
    scene.stepping.show(s)
    lab = wire(scene, "x·W1", "net_h")
    src = scene.graph.layout[by_name(scene, "x·W1")]
    w = scene.nodes[by_name(scene, "x·W1")].width
    scene.graph.move(by_name(scene, "net_h"), (src[0] + w + 400, src[1]))
    scene.flush_edges()
    wide = lab.value_text
    scene.graph.move(by_name(scene, "net_h"), (src[0] + w + 60, src[1]))
    scene.flush_edges()
    assert wide.startswith("1×2  μ ")
    assert len(lab.value_text) < len(wide)


def test_items_are_made_once_and_updated_per_step(qtbot):
    """Stepping on reuses the same label items (no rebuild per step)."""
    scene, _view, s = stepped(qtbot, "abc")
    s.step()
    scene.stepping.show(s)
    before = {e: scene.stepping.wire_label(e) for e in scene.edges}
    s.evaluate()
    scene.stepping.show(s)
    assert {e: scene.stepping.wire_label(e) for e in scene.edges} == before


def click(qtbot, view, scene_pos):
    qtbot.mouseClick(view.viewport(), Qt.LeftButton,
                     pos=view.mapFromScene(scene_pos))


def test_clicking_the_breakpoint_dot_asks_to_toggle_the_breakpoint(qtbot):
    """Clicking the dot left of a card's header emits breakpoint_toggled with the node;
    a set breakpoint shows its dot."""
    scene, view, _s = stepped(qtbot, "abc")
    view.show()
    nid = by_name(scene, "e")
    dot = scene.nodes[nid].breakpoint_dot
    view.centerOn(dot.scenePos())
    with qtbot.waitSignal(scene.breakpoint_toggled) as sig:
        click(qtbot, view, dot.scenePos())
    assert sig.args == [nid]
    scene.set_breakpoints({nid})
    assert dot.set
    scene.set_breakpoints(set())
    assert not dot.set


def test_a_wire_click_reports_the_edge_only_while_stepping_is_shown(qtbot):
    """Clicking a wire while stepping emits wire_clicked with its edge; in the editor
    the same click only selects the wire."""
    scene, view, s = stepped(qtbot, "abc")
    view.show()
    edge = next(e for e in scene.graph.edges if e.src == by_name(scene, "c"))
    at = scene.edges[edge].path.pointAtPercent(0.3)
    view.centerOn(at)
    got = []
    scene.wire_clicked.connect(got.append)
    click(qtbot, view, at)
    assert got == []
    s.evaluate()
    scene.stepping.show(s)
    click(qtbot, view, at)
    assert got == [edge]


def test_a_port_click_reports_the_port_while_stepping(qtbot):
    """Clicking a card's output port while stepping emits port_clicked (no new wire)."""
    scene, view, s = stepped(qtbot, "abc")
    view.show()
    s.evaluate()
    scene.stepping.show(s)
    nid = by_name(scene, "e")
    port = scene.nodes[nid].out_ports["out"]
    view.centerOn(port.scenePos())
    with qtbot.waitSignal(scene.port_clicked) as sig:
        click(qtbot, view, port.scenePos())
    assert sig.args == [nid, "out", True]
    assert not scene.connecting


def test_a_backward_step_pulses_along_its_wires_and_can_be_turned_off(qtbot):
    """A backward step sends a pulse along the wires its gradient just reached; with the
    animation off, none runs."""
    scene, view, s = stepped(qtbot, "abc")
    view.show()
    s.go_to(s.n_forward)  # the first backward step (the loss node)
    scene.stepping.show(s)
    s.step()
    scene.stepping.show(s)
    assert scene.stepping.animating
    qtbot.waitUntil(lambda: not scene.stepping.animating, timeout=3000)
    assert scene.stepping.frame_times
    scene.stepping.set_animation(False)
    s.step()
    scene.stepping.show(s)
    assert not scene.stepping.animating


def test_nan_is_marked_on_the_wire(qtbot):
    """A NaN value is shown with a warning mark in the error style."""
    from core.graph import Graph  # noqa: PLC0415

    g = Graph()
    x = g.add("parameter", value=-1.0, name="x")
    g.add("log", x, name="y")
    scene = GraphScene(g)
    s = StepSession(g, loss=None)
    s.run_forward()
    scene.stepping.show(s)
    lab = scene.stepping.output_label(by_name(scene, "y"))
    assert "NaN" in lab.value_text and lab.value_text.startswith("y = ⚠")
    assert lab.labels.bad


def test_legend_is_drawn_only_while_stepping(qtbot):
    """The gradient legend appears in the picture's corner while stepping."""
    from widgets.canvas import render_scene  # noqa: PLC0415

    scene, _view, s = stepped(qtbot, "abc")
    plain = render_scene(scene, 600, 400)
    s.evaluate()
    scene.stepping.show(s)
    shown = render_scene(scene, 600, 400)
    corner = QPointF(40, 380).toPoint()
    assert plain.pixelColor(corner) != shown.pixelColor(corner)


# ------------------------------------------------------------ wire pictures
def lenet(qtbot, zoom=1.0):
    from core.stepping import digit_feeds, sample_digit  # noqa: PLC0415

    graph = load_graph(example_path("lenet5"))
    scene = GraphScene(graph)
    # as the window opens it: laid out for the cards' real sizes
    items = scene.nodes
    placed = layered_layout(graph, {nid: (it.width, it.height) for nid, it in items.items()},
                            lambda nid, port, out: items[nid].port_y(port, out))
    for nid, p in placed.items():
        graph.move(nid, p)
    scene.flush_edges()
    view = GraphView(scene)
    scene.setParent(view)  # the view's settle timer may fire after the test: scene and all
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    qtbot.waitExposed(view)
    view.set_zoom(zoom)
    s = StepSession(graph, feeds=digit_feeds(graph, *sample_digit(0)))
    return scene, view, s


def picture_pixels(scene, view, lab, name):
    """The colours drawn where ``lab``'s ``name`` picture sits, as the user sees them."""
    view.centerOn(lab.labels.picture_rect(name).center())
    scene.finish_sharpening()
    image = view.viewport().grab().toImage()
    box = view.mapFromScene(lab.labels.picture_rect(name)).boundingRect().adjusted(2, 2, -2, -2)
    return {image.pixelColor(x, y).rgb() for x in range(box.left(), box.right())
            for y in range(box.top(), box.bottom())}


def test_a_forward_step_puts_a_heat_map_of_the_feature_maps_on_the_wire(qtbot):
    """After the forward step of conv1 the wire out of it reads μ and σ under a small heat
    map of its 6 feature maps (their mean, 28×28) in the value colour map; hovering says so."""
    scene, view, s = lenet(qtbot)
    s.run_to("conv1", "forward")
    scene.stepping.show(s)
    lab = wire(scene, "conv1", "relu1")
    pic = lab.pictures["value"]
    assert pic is not None and pic.kind == "map" and pic.data.shape == (28, 28)
    assert lab.pictures["grad"] is None  # no gradient has flowed yet
    value = s.value("conv1")[0].mean(axis=0)
    np.testing.assert_allclose(pic.data, value, rtol=1e-5, atol=1e-6)
    assert "heat map of mean over the 6 channels" in lab.toolTip()
    seen = picture_pixels(scene, view, lab, "value")
    table = {QColor(int(r), int(g), int(b)).rgb() for r, g, b in scene.theme.heat_table(False)}
    assert len(seen & table) > 20  # many shades of the map, not a flat box
    assert wire(scene, "relu1", "pool1") is not None
    assert wire(scene, "relu1", "pool1").pictures["value"] is None  # not computed yet


def test_scalars_get_no_picture_and_vectors_get_bars(qtbot):
    """On f = a·b + c every wire carries a number only; on LeNet-5 the logits wire shows
    bars of its 10 values, and after backward a diverging heat map of the gradient below."""
    scene, _view, s = stepped(qtbot, "abc")
    s.evaluate()
    scene.stepping.show(s)
    assert all(lab.pictures == {"value": None, "grad": None}
               for e in scene.edges if (lab := scene.stepping.wire_label(e)) is not None)
    scene, _view, s = lenet(qtbot)
    s.evaluate()
    scene.stepping.show(s)
    logits = wire(scene, "fc3", "loss").pictures["value"]
    assert logits.kind == "bars" and logits.data.shape == (10,)
    grad = wire(scene, "pool1", "conv2").pictures["grad"]
    assert grad.kind == "map" and grad.signed and grad.lo == -grad.hi


def test_a_wire_picture_is_made_once_per_step_and_not_on_repaint(qtbot, monkeypatch):
    """Repainting and stepping on elsewhere reuse a wire's picture and its image; step back
    and forward again computes it once more."""
    import widgets.canvas.stepping as overlay_module  # noqa: PLC0415

    made = []
    real = overlay_module.heat_image
    monkeypatch.setattr(overlay_module, "heat_image", lambda *a: made.append(a[0]) or real(*a))
    scene, view, s = lenet(qtbot)
    s.run_to("conv1", "forward")
    scene.stepping.show(s)
    lab = wire(scene, "conv1", "relu1")
    first = lab.pictures["value"]
    for _ in range(3):
        picture_pixels(scene, view, lab, "value")
    assert made.count(first) == 1
    s.step()
    scene.stepping.show(s)
    picture_pixels(scene, view, lab, "value")
    assert lab.pictures["value"] is first and made.count(first) == 1
    s.step_back()
    s.step_back()
    s.step()
    scene.stepping.show(s)
    again = lab.pictures["value"]
    picture_pixels(scene, view, lab, "value")
    assert again is not first and made.count(again) == 1


def test_wire_pictures_hide_when_zoomed_out_and_can_be_turned_off(qtbot, monkeypatch):
    """Far out (where the numbers go too) no picture is painted; turned off, the labels
    are numbers only and shrink back to one line."""
    from widgets.canvas.stepping import LABEL_LOD, _Labels  # noqa: PLC0415

    painted = []
    real = _Labels._paint_picture
    monkeypatch.setattr(_Labels, "_paint_picture",
                        lambda self, *a: painted.append(1) or real(self, *a))
    scene, view, s = lenet(qtbot, zoom=LABEL_LOD * 0.8)
    s.run_forward()
    scene.stepping.show(s)
    scene.finish_sharpening()
    view.viewport().grab()
    assert not painted
    lab = wire(scene, "conv1", "relu1")
    view.set_zoom(1.0)
    view.centerOn(lab.labels.value_rect.center())
    qtbot.waitUntil(lambda: not scene.scaling)
    scene.finish_sharpening()
    view.viewport().grab()
    assert painted
    tall = lab.labels.value_rect.height()
    scene.stepping.set_pictures(False)
    assert lab.pictures["value"] is None and lab.labels.value_rect.height() < tall / 2
    scene.stepping.set_pictures(True)
    assert lab.pictures["value"] is not None


def test_the_picture_goes_when_the_wire_has_no_room_for_it(qtbot):
    """Two cards pushed together leave a wire too short for a picture: only its number."""
    scene, _view, s = lenet(qtbot)
    s.run_to("relu1", "forward")
    scene.stepping.show(s)
    lab = wire(scene, "conv1", "relu1")
    assert lab.pictures["value"] is not None
    src = scene.graph.layout[by_name(scene, "conv1")]
    w = scene.nodes[by_name(scene, "conv1")].width
    scene.graph.move(by_name(scene, "relu1"), (src[0] + w + 30, src[1]))
    scene.flush_edges()
    assert lab.pictures["value"] is None and lab.value_text


# ------------------------------------------------------------------ themes
def _luminance(c: QColor) -> float:
    def f(v):
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * f(c.redF()) + 0.7152 * f(c.greenF()) + 0.0722 * f(c.blueF())


def contrast(a: QColor, b: QColor) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def distance(a: QColor, b: QColor) -> int:
    return max(abs(a.red() - b.red()), abs(a.green() - b.green()), abs(a.blue() - b.blue()))


def pill_colours(scene, view, rect):
    scene.finish_sharpening()
    image = view.viewport().grab().toImage()
    box = view.mapFromScene(rect).boundingRect()
    return [image.pixelColor(x, y) for x in range(box.left(), box.right())
            for y in range(box.top(), box.bottom())]


@pytest.mark.parametrize("name", ["light", "dark"])
def test_overlay_colours_follow_the_theme_and_stay_readable(qtbot, name):
    """In the light and in the dark theme the value is written in that theme's value colour
    and the gradient in its gradient colour, each clearly readable on the canvas; the two
    themes draw them differently."""
    from widgets.theme import get_theme  # noqa: PLC0415

    theme = get_theme(name)
    other = get_theme("dark" if name == "light" else "light")
    scene, view, s = stepped(qtbot, "abc")
    scene.set_theme(theme)
    view.show()
    qtbot.waitExposed(view)
    s.evaluate()
    scene.stepping.show(s)
    lab = wire(scene, "a", "e")
    view.centerOn(lab.labels.value_rect.center())
    canvas = theme.color("canvas")
    for rect, role in ((lab.labels.text_rect("value"), "value"),
                       (lab.labels.text_rect("grad"), None)):
        ink = max(pill_colours(scene, view, rect), key=lambda c: contrast(c, canvas))
        assert contrast(ink, canvas) >= 3.0  # the text reads on the canvas
        if role == "value":  # antialiased glyphs: their darkest pixels near the colour
            assert distance(ink, theme.color("value")) < 40
            assert distance(ink, other.color("value")) > 60
    assert theme.heat_table(True).tolist() != other.heat_table(True).tolist()


def test_a_vanishing_gradients_number_stays_readable_though_its_wire_is_faint(qtbot):
    """A gradient at the bottom of the magnitude scale has a faint wire but its number is
    drawn at least in the plain gradient colour, in both themes."""
    from widgets.canvas.stepping import ramp, text_ramp  # noqa: PLC0415
    from widgets.theme import DARK, LIGHT  # noqa: PLC0415

    for theme in (LIGHT, DARK):
        canvas = theme.color("canvas")
        assert contrast(ramp(theme, 0.0), canvas) < 2.5  # the wire: faint on purpose
        assert contrast(text_ramp(theme, 0.0), canvas) >= 4.5
        assert text_ramp(theme, 1.0).rgb() == ramp(theme, 1.0).rgb()  # exploding still glows
