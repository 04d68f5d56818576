"""The stepping panels as the user sees them: the chain rule, the tensor view, the digit pad."""

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from core.graph import Graph
from core.ops import get_op
from core.serialize import load_graph
from core.stepping import StepSession, check_gradient, digit_feeds, sample_digit
from examples import example_path
from widgets.chain_rule_panel import EMPTY_HINT, HIDDEN, ChainRulePanel
from widgets.digit_input import DigitInput
from widgets.tensor_view import TensorView
from widgets.theme import LIGHT

pytestmark = pytest.mark.gui


def session_at(example, node, phase="backward", **kw):
    s = StepSession(load_graph(example_path(example)), **kw)
    s.run_to(node, phase)
    return s


def panel(qtbot, session=None):
    p = ChainRulePanel(LIGHT)
    qtbot.addWidget(p)
    p.set_session(session)
    p.resize(420, 360)
    p.show()
    return p


def equation(row):
    """A term as the user reads it: 'upstream × local = downstream'."""
    return f"{row.upstream.text()} × {row.local.text()} = {row.downstream.text()}"


def visible_rows(p):
    return [r for r in p.rows if r.target.isVisible()]


def fan_out_session():
    g = Graph()
    x = g.add("input", value=1.5, name="x")
    sq = g.add("multiply", x, x, name="sq")
    y = g.add("add", sq, x, name="y")
    g.set_loss(y)
    s = StepSession(g)
    s.run_to("x", "backward")
    return s


def lenet_session(batch=1):
    g = load_graph(example_path("lenet5"))
    feeds = [digit_feeds(g, *sample_digit(i)) for i in range(batch)]
    s = StepSession(g, feeds={k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]})
    s.run_to("conv1", "forward")
    return s


# ------------------------------------------------------------------ chain rule
def test_empty_panel_says_how_to_see_the_chain_rule(qtbot):
    """Before any step the panel shows one hint: "Step to a node to see the chain rule"."""
    p = panel(qtbot, StepSession(load_graph(example_path("abc"))))
    assert p.hint.isVisible() and p.hint.text() == EMPTY_HINT
    assert not visible_rows(p) and not p.check_button.isVisible()


def test_multiply_node_shows_upstream_times_local_equals_downstream(qtbot):
    """At the backward step of e = a·b the panel reads 1 × 2 = 2 for a and 1 × 3 = 3 for b,
    with the op's formula and local derivative above them."""
    p = panel(qtbot, session_at("abc", "e"))
    rows = visible_rows(p)
    assert [r.target.text() for r in rows] == ["∂L/∂a  ← a", "∂L/∂b  ← b"]
    assert [equation(r) for r in rows] == ["1.000 × 2.000 = 2.000", "1.000 × 3.000 = 3.000"]
    assert "a · b" in p.formula.text() and "∂/∂a = b" in p.derivative.text()
    assert p.title.text().startswith("e") and "multiply" in p.title.text()


def test_hovering_a_number_shows_its_full_precision(qtbot):
    """The sigmoid's local derivative reads 0.1966; its tooltip holds every digit."""
    p = panel(qtbot, session_at("sigmoid_neuron", "f"))
    (row,) = visible_rows(p)
    assert equation(row) == "1.000 × 0.1966 = 0.1966"
    assert row.local.toolTip() == "0.19661193324148185"
    assert row.downstream.toolTip() == "0.19661193324148185"


def test_sigmoid_neuron_multiply_gate_shows_its_two_gradients(qtbot):
    """Back at w0·x0 the upstream 0.1966 is multiplied by x0 = −1 and w0 = 2."""
    p = panel(qtbot, session_at("sigmoid_neuron", "w0·x0"))
    assert "0.1966" in p.upstream_label.text()
    assert [equation(r) for r in visible_rows(p)] == ["0.1966 × -1.000 = -0.1966",
                                                      "0.1966 × 2.000 = 0.3932"]


def test_a_fan_out_shows_its_gradients_being_summed(qtbot):
    """x feeds x·x and x + …: the panel lists the three gradients and reads 1.5 + 1.5 + 1 = 4."""
    p = panel(qtbot, fan_out_session())
    assert p.fanout_label.isVisible() and "fans out to 3" in p.fanout_label.text()
    assert p.fanout_sum.text() == "∂L/∂x = 1.500 + 1.500 + 1.000 = 4.000"


def test_tensor_terms_show_shapes_and_norms(qtbot):
    """At conv1's backward step each term shows norms, shapes and the Jacobian."""
    s = lenet_session()
    s.run_to("conv1", "backward")
    p = panel(qtbot, s)
    rows = visible_rows(p)
    assert [r.target.text() for r in rows] == ["∂L/∂x  ← image", "∂L/∂W", "∂L/∂b"]
    w = s.weight_grad("conv1", "W")
    assert rows[1].downstream.text() == f"‖{float(np.linalg.norm(w)):#.4g}‖"
    assert "(1, 6, 28, 28) → (6, 1, 5, 5)" in rows[1].shapes.text()
    assert rows[1].local.text() == "Jacobianᵀ"


def test_a_narrow_panel_wraps_the_formulas_and_only_the_terms_scroll_sideways(qtbot):
    """In a dock 300 px wide, conv2's long formulas wrap inside the panel (nothing is cut
    at its right edge); the table of terms, wider than that, scrolls on its own and shows
    all its rows."""
    s = lenet_session()
    s.run_to("conv2", "backward")
    p = panel(qtbot, s)
    p.resize(300, 700)
    qtbot.waitUntil(lambda: p.width() == 300)
    QApplication.processEvents()
    body = p.formula.parentWidget()
    assert body.width() <= p.width()
    for label in (p.formula, p.derivative, p.title, p.step_label, p.values_label):
        assert label.geometry().right() <= body.width()
    assert p.formula.text().replace("\u200b", "").startswith("forward   y[o,i,j] = b[o]")
    assert p.formula.height() > 2 * p.formula.fontMetrics().height() * 0.9  # it wrapped
    bar = p.terms_scroll.horizontalScrollBar()
    assert bar.maximum() > 0
    rows = visible_rows(p)
    assert len(rows) == 3
    assert rows[-1].shapes.geometry().bottom() <= p.terms_scroll.viewport().height()
    p.resize(700, 700)
    qtbot.waitUntil(lambda: p.width() == 700)
    QApplication.processEvents()
    assert bar.maximum() == 0


def test_a_forward_step_says_where_the_chain_rule_is(qtbot):
    """At a forward step the formula is shown and the note points to the backward step."""
    p = panel(qtbot, session_at("abc", "e", "forward"))
    assert not visible_rows(p) and "backward step" in p.note.text()
    assert p.formula.isVisible() and p.check_button.isVisible()


def check_through_button(qtbot, p, s):
    """Click "Check gradient" and do what the controller does with the request."""
    with qtbot.waitSignal(p.check_gradient_requested) as blocker:
        qtbot.mouseClick(p.check_button, Qt.LeftButton)
    p.show_check(check_gradient(s, blocker.args[0]))


def test_check_gradient_is_green_for_a_correct_op(qtbot):
    """Clicking "Check gradient" on the sigmoid shows a tiny relative error in green: good."""
    s = session_at("sigmoid_neuron", "f")
    p = panel(qtbot, s)
    check_through_button(qtbot, p, s)
    assert p.check_label.isVisible() and "good (ok)" in p.check_label.text()
    assert LIGHT.ok in p.check_label.styleSheet()


def test_check_gradient_is_red_when_a_backward_is_wrong(qtbot, monkeypatch):
    """With the sigmoid's backward doubled, the check shows a large relative error in red."""
    sigmoid = get_op("sigmoid")
    right = sigmoid.backward
    monkeypatch.setattr(sigmoid, "backward", lambda self, ctx, g: tuple(
        2 * d for d in right(self, ctx, g)))
    s = session_at("sigmoid_neuron", "f")
    p = panel(qtbot, s)
    check_through_button(qtbot, p, s)
    assert "WRONG (wrong)" in p.check_label.text()
    assert LIGHT.error in p.check_label.styleSheet()


def test_predict_mode_hides_the_gradient_until_a_guess_then_scores_it(qtbot):
    """In predict mode the sigmoid's gradient reads '?'; typing 0.2 and Enter reveals 0.1966
    and says the guess was close (1.7% off)."""
    p = panel(qtbot, session_at("sigmoid_neuron", "f"))
    p.set_predict_mode(True)
    (row,) = visible_rows(p)
    assert row.downstream.text() == HIDDEN and row.local.text() == HIDDEN
    assert row.guess.isVisible() and not row.score.isVisible()
    qtbot.keyClicks(row.guess, "0.2")
    qtbot.keyClick(row.guess, Qt.Key_Return)
    assert equation(row) == "1.000 × 0.1966 = 0.1966"
    assert not row.guess.isVisible() and row.score.isVisible()
    assert "close" in row.score.text() and "1.7% off" in row.score.text()


def test_predict_mode_refuses_text_that_is_not_a_number(qtbot):
    """Typing 'two' keeps the gradient hidden and says a guess is a number."""
    p = panel(qtbot, session_at("sigmoid_neuron", "f"))
    p.set_predict_mode(True)
    (row,) = visible_rows(p)
    qtbot.keyClicks(row.guess, "two")
    qtbot.keyClick(row.guess, Qt.Key_Return)
    assert row.downstream.text() == HIDDEN and "number" in row.score.text()


def test_a_stale_session_shows_why_instead_of_numbers(qtbot):
    """After the graph is edited the panel shows the reset message, no stale numbers."""
    s = session_at("abc", "e")
    p = panel(qtbot, s)
    s.set_feed("a", 5.0)
    s.graph.add("input", value=1.0, name="extra")
    p.refresh()
    assert p.hint.isVisible() and "changed" in p.hint.text() and not visible_rows(p)


# ----------------------------------------------------------------- tensor view
def tensor_view(qtbot, session):
    v = TensorView(LIGHT)
    qtbot.addWidget(v)
    v.set_session(session)
    v.resize(520, 560)
    v.show()
    return v


def test_conv1_output_is_a_grid_of_six_feature_maps_with_a_histogram(qtbot):
    """LeNet-5's conv1 on one digit shows 6 maps in a 2 × 3 grid, a histogram and its
    min/max/mean/std; no example picker for a single digit."""
    s = lenet_session()
    v = tensor_view(qtbot, s)
    v.show_tensor(s.graph.node("conv1").id)
    t = v.view.thumbnail
    assert v.picture.isVisible() and (t.kind, t.shown, t.tiles) == ("grid", 6, (2, 3))
    assert v.picture.image.width() == 3 * 29 - 1  # whole 28-pixel maps, not a thumbnail
    assert v.hist.isVisible() and v.view.counts.sum() == 6 * 28 * 28
    conv1 = s.value("conv1").astype(np.float64)
    assert v.stat_labels["max"].text() == f"{conv1.max():#.4g}"
    assert v.stat_labels["min"].text() == f"{conv1.min():#.4g}"
    assert not v.example_spin.isVisible()


def test_a_batch_gets_an_example_picker(qtbot):
    """With two digits the picker appears; choosing example 1 draws the second digit's maps."""
    s = lenet_session(batch=2)
    v = tensor_view(qtbot, s)
    v.show_tensor(s.graph.node("conv1").id)
    first = v.view.thumbnail.data.copy()
    assert v.example_spin.isVisible() and v.example_spin.maximum() == 1
    v.example_spin.setValue(1)
    assert v.view.thumbnail.example == 1 and not np.array_equal(first, v.view.thumbnail.data)


def test_gradient_toggle_shows_the_gradient_on_a_diverging_scale(qtbot):
    """Clicking "Gradient" after the backward pass shows ∂L/∂conv1 centred on zero."""
    s = lenet_session()
    s.run_to("conv1", "backward")
    v = tensor_view(qtbot, s)
    v.show_tensor(s.graph.node("conv1").id)
    qtbot.mouseClick(v.grad_button, Qt.LeftButton)
    assert v.grad and "gradient" in v.title.text()
    g = s.grad("conv1").astype(np.float64)
    assert v.stat_labels["norm"].text() == f"{np.linalg.norm(g):#.4g}"
    assert v.colour_bar.lo == -v.colour_bar.hi and v.colour_bar.hi >= np.abs(g).max() * 0.999


def test_a_tensor_not_computed_yet_says_which_step_makes_it(qtbot):
    """Asking for conv1's gradient during the forward pass says to step backward past it."""
    s = lenet_session()
    v = tensor_view(qtbot, s)
    v.show_tensor(s.graph.node("conv1").id, grad=True)
    assert v.hint.isVisible() and "step backward" in v.hint.text()
    assert not v.picture.isVisible()


def test_kernels_are_a_filter_grid_and_logits_are_bars(qtbot):
    """conv2's weights are 16 rows of 6 kernels; fc3's ten outputs are ten bars."""
    s = lenet_session()
    s.run_forward()
    v = tensor_view(qtbot, s)
    v.show_tensor(s.graph.node("conv2").id, weight="W")
    assert v.view.thumbnail.tiles == (16, 6) and "16 × 6" in v.note.text()
    v.show_tensor(s.graph.node("fc3").id)
    assert v.bars.isVisible() and not v.picture.isVisible()
    heights = v.bar_item.opts["height"]
    np.testing.assert_allclose(heights, s.value("fc3")[0], rtol=1e-6)


def test_hovering_a_feature_map_pixel_shows_its_value(qtbot):
    """The tooltip under the cursor names the map and the pixel's value."""
    s = lenet_session()
    v = tensor_view(qtbot, s)
    v.show_tensor(s.graph.node("conv1").id)
    r = v.picture._target()
    scale = r.width() / v.picture.image.width()
    # map 4 is row 1, column 1: pixel (3, 5) of it
    pos = QPointF(r.left() + (29 + 5 + 0.5) * scale, r.top() + (29 + 3 + 0.5) * scale)
    text, value = v.picture.value_at(pos)
    assert text.startswith("map 4 · (3, 5)")
    assert value == pytest.approx(float(s.value("conv1")[0, 4, 3, 5]))


# ----------------------------------------------------------------- digit input
def send_mouse(widget, kind, pos, button, buttons):
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                     Qt.NoModifier)
    QApplication.sendEvent(widget, ev)


def drag(widget, a: QPoint, b: QPoint, steps=12):
    send_mouse(widget, QEvent.MouseButtonPress, a, Qt.LeftButton, Qt.LeftButton)
    for i in range(1, steps + 1):
        p = QPoint(a.x() + (b.x() - a.x()) * i // steps, a.y() + (b.y() - a.y()) * i // steps)
        send_mouse(widget, QEvent.MouseMove, p, Qt.NoButton, Qt.LeftButton)
    send_mouse(widget, QEvent.MouseButtonRelease, b, Qt.LeftButton, Qt.NoButton)


def digit_input(qtbot):
    d = DigitInput(LIGHT, seed=0)
    qtbot.addWidget(d)
    d.resize(480, 280)
    d.show()
    qtbot.waitExposed(d)
    return d


def test_dragging_across_the_pad_draws_a_stroke(qtbot):
    """Dragging from left to right across the middle inks the pixels along the stroke (a few
    pixels thick, soft at the edges) and emits the drawing with label −1."""
    d = digit_input(qtbot)
    pad = d.pad
    cell = min(pad.width(), pad.height()) / 28
    ox, oy = (pad.width() - 28 * cell) / 2, (pad.height() - 28 * cell) / 2
    y = int(oy + 14 * cell)
    with qtbot.waitSignal(d.digit_chosen) as blocker:
        drag(pad, QPoint(int(ox + 5 * cell), y), QPoint(int(ox + 23 * cell), y))
    image, label = blocker.args
    assert image.shape == (28, 28) and label == -1
    assert (image[14, 6:23] > 0.9).all()  # along the stroke
    assert image[:10].max() == 0 and image[19:].max() == 0  # nowhere else
    thickness = (image[:, 14] > 0.5).sum()
    assert 2 <= thickness <= 4 and 0 < image[:, 14][image[:, 14] < 0.5].max()


def test_clear_empties_the_pad(qtbot):
    """Clear wipes the drawing and emits the empty pad."""
    d = digit_input(qtbot)
    c = d.pad.rect().center()
    drag(d.pad, c - QPoint(30, 0), c + QPoint(30, 0))
    assert d.drawing().max() > 0
    with qtbot.waitSignal(d.digit_chosen) as blocker:
        qtbot.mouseClick(d.clear_button, Qt.LeftButton)
    assert d.drawing().max() == 0 and blocker.args[0].max() == 0


def test_picking_sample_digit_i_emits_that_image_and_label(qtbot):
    """Setting the index to 9 shows 'label 5' and emits digit 9 of the sample in 0..1."""
    d = digit_input(qtbot)
    image, label = sample_digit(9)
    with qtbot.waitSignal(d.digit_chosen) as blocker:
        d.index_spin.setValue(9)
    got, got_label = blocker.args
    assert got_label == label and d.label_shown.text() == f"label {label}"
    np.testing.assert_array_equal(got, image / 255.0)


def test_random_picks_a_sample_digit(qtbot):
    """Random moves the index and emits the digit it shows."""
    d = digit_input(qtbot)
    with qtbot.waitSignal(d.digit_chosen) as blocker:
        qtbot.mouseClick(d.random_button, Qt.LeftButton)
    i = d.index_spin.value()
    np.testing.assert_array_equal(blocker.args[0], sample_digit(i)[0] / 255.0)
    assert blocker.args[1] == sample_digit(i)[1]


def test_the_example_picked_before_the_view_is_shown_is_the_one_drawn(qtbot):
    """Picking example 1 while the dock is hidden still draws example 1 when it opens."""
    s = lenet_session(batch=2)
    v = TensorView(LIGHT)
    qtbot.addWidget(v)
    v.set_session(s)
    v.show_tensor(s.graph.node("conv1").id)
    v.example_spin.setValue(1)
    assert v.example == 1 and "example 1 of a batch of 2" in v.note.text()


def test_a_check_that_finishes_after_stepping_on_is_not_shown_on_the_next_node(qtbot):
    """Check e, step to c before the result comes back: c's panel shows no verdict for e."""
    s = session_at("abc", "e")
    p = panel(qtbot, s)
    with qtbot.waitSignal(p.check_gradient_requested) as blocker:
        qtbot.mouseClick(p.check_button, Qt.LeftButton)
    assert "checking" in p.check_label.text()
    s.step()
    p.refresh()
    p.show_check(check_gradient(s, blocker.args[0]))
    assert p.title.text().startswith("c") and not p.check_label.isVisible()


def test_statistics_of_a_batch_are_those_of_the_example_shown(qtbot):
    """With two digits, min/max/mean and the histogram describe the digit drawn."""
    s = lenet_session(batch=2)
    v = tensor_view(qtbot, s)
    v.show_tensor(s.graph.node("conv1").id)
    v.example_spin.setValue(1)
    second = s.value("conv1")[1].astype(np.float64)
    assert v.stat_labels["mean"].text() == f"{second.mean():#.4g}"
    assert v.stat_labels["max"].text() == f"{second.max():#.4g}"
    assert v.view.counts.sum() == second.size


def test_a_loaded_data_set_is_offered_with_its_name_index_and_label(qtbot):
    """A set offered beside the sample appears in "Pick a digit"; choosing it and image 5
    emits that image with its label, and the panel says which set, image and label it is."""
    from widgets.digit_input import DigitSet  # noqa: PLC0415

    d = digit_input(qtbot)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.uint8)
    d.set_data_sets([DigitSet("folder/test:x", "MNIST folder ‘x’ · test set", images, labels,
                              tuple(str(i) for i in range(10)))])
    titles = [d.set_combo.itemText(i) for i in range(d.set_combo.count())]
    assert titles[:2] == ["embedded sample · test set (1,000)",
                          "embedded sample · train set (5,000)"]
    assert titles[2] == "MNIST folder ‘x’ · test set (8)"
    d.set_combo.setCurrentIndex(2)
    assert d.index_spin.maximum() == 7
    with qtbot.waitSignal(d.digit_chosen) as blocker:
        d.index_spin.setValue(5)
    np.testing.assert_array_equal(blocker.args[0], images[5] / 255.0)
    assert blocker.args[1] == 9 and d.label_shown.text() == "label 9"
    assert d.where_label.text() == "MNIST folder ‘x’ · test set · image 5 of 8"
    assert d.description() == "image 5 of the MNIST folder ‘x’ · test set (label 9)"
    d.set_data_sets([])  # the set is gone: back to the sample
    assert d.current_set().key == "sample/test:sample"
