"""The stepping session: textbook numbers, moving back and forth, breakpoints, invalidation."""

import math

import numpy as np
import pytest

from core.errors import GraphError
from core.graph import Graph
from core.serialize import load_graph
from core.stepping import StepSession, chain_rule
from examples import example_path


def session(name, **kw):
    return StepSession(load_graph(example_path(name)), **kw)


def num(s, node, grad=False):
    arr = s.grad(node) if grad else s.value(node)
    return float(np.asarray(arr).reshape(-1)[0])


def snapshot(s):
    ex = s.stepper.executor
    return ({k: v.copy() for k, v in ex.values.items()},
            {k: v.copy() for k, v in ex.grads.items()},
            {k: v.copy() for k, v in ex.weight_grads.items()})


def same(a, b):
    return all(d1.keys() == d2.keys() and all(np.array_equal(d1[k], d2[k]) for k in d1)
               for d1, d2 in zip(a, b))


# ------------------------------------------------------------- golden numbers
def test_abc_values_gradients_and_chain_rule():
    s = session("abc")
    assert s.evaluate().kind == "end"
    assert num(s, "f") == 2.0
    assert [num(s, n, grad=True) for n in "abc"] == [2.0, 3.0, 1.0]
    assert s.value_summary("f").text == "2.000"
    assert s.run_to("e", "backward").kind == "target"
    cr = chain_rule(s)
    assert cr.node == "e" and cr.formula and cr.derivative
    assert [t.numbers for t in cr.terms] == [(1.0, 2.0, 2.0), (1.0, 3.0, 3.0)]
    assert [t.source for t in cr.terms] == ["a", "b"]
    assert [t.text for t in cr.terms] == ["1.000 × 2.000 = 2.000", "1.000 × 3.000 = 3.000"]
    s.run_to("f", "backward")
    cr = chain_rule(s)
    assert cr.seeded and [t.numbers for t in cr.terms] == [(1.0, 1.0, 1.0), (1.0, 1.0, 1.0)]


def test_sigmoid_neuron_output_and_its_five_gradients():
    s = session("sigmoid_neuron")
    s.evaluate()
    sig = 1 / (1 + math.exp(-1.0))  # w0·x0 + w1·x1 + w2 = 1
    d = sig * (1 - sig)
    assert num(s, "f") == pytest.approx(sig, abs=1e-15)
    assert s.value_summary("f").text == "0.7311"
    want = {"w0": -1 * d, "x0": 2 * d, "w1": -2 * d, "x1": -3 * d, "w2": d}
    for node, g in want.items():
        assert num(s, node, grad=True) == pytest.approx(g, abs=1e-15), node
    # the description's rounded figures
    assert [round(num(s, n, grad=True), 3) for n in want] == [-0.197, 0.393, -0.393, -0.590,
                                                              0.197]
    s.run_to("f", "backward")
    (term,) = chain_rule(s).terms
    assert term.numbers == pytest.approx((1.0, d, d), abs=1e-15)
    assert term.text == "1.000 × 0.1966 = 0.1966"


def test_net_222_total_error():
    s = session("net_222")
    s.run_forward()
    assert num(s, "E") == pytest.approx(0.298371109, abs=1e-9)
    assert s.value_summary("E").full_text.startswith("0.29837110")


# --------------------------------------------------------------- movement
def test_step_list_is_forward_then_backward_with_labels():
    s = session("abc")
    labels = [e.label for e in s.steps]
    assert labels[:5] == ["forward a", "forward b", "forward c", "forward e", "forward f"]
    assert labels[5:] == ["backward f", "backward e", "backward c", "backward b", "backward a"]
    assert s.n_forward == 5 and s.current is None and s.position == 0


def test_step_back_and_go_to_restore_every_state_exactly():
    s = session("net_222")
    states = [snapshot(s)]
    while not s.done:
        s.step()
        states.append(snapshot(s))
    for i in range(len(states) - 2, -1, -1):
        assert s.step_back().kind in ("step", "start")
        assert same(states[i], snapshot(s))
    for i in (7, 2, len(states) - 2, 0, -1):
        s.go_to(i)
        assert s.position == i + 1 and same(states[i + 1], snapshot(s))


def test_run_forward_run_backward_and_run_to():
    s = session("abc")
    r = s.run_forward()
    assert r.kind == "forward_done" and r.index == 4 and s.grad("a") is None
    assert s.run_forward().kind == "forward_done"
    assert s.run_backward().kind == "end" and s.done
    r = s.run_to("e", "forward")
    assert (r.kind, r.node, r.phase, r.index) == ("target", "e", "forward", 3)
    assert s.value("f") is None and s.value("e") is not None
    with pytest.raises(GraphError, match="no sideways step"):
        s.step_index("e", "sideways")
    assert s.step().index == 4 and s.step().phase == "backward"
    assert s.reset().kind == "start" and s.position == 0 and not s.stepper.executor.values


def test_node_and_wire_states_follow_the_steps():
    s = session("abc")
    s.run_to("e", "forward")
    states = s.node_states()
    names = {s.graph.nodes[k].name: v for k, v in states.items()}
    assert names == {"a": "evaluated", "b": "evaluated", "c": "evaluated", "e": "current",
                     "f": "pending"}
    wires = {(s.graph.nodes[w.edge.src].name, s.graph.nodes[w.edge.dst].name): w
             for w in s.wires()}
    assert wires[("a", "e")].state == "value" and wires[("e", "f")].state == "value"
    assert wires[("a", "e")].value.text == "3.000" and wires[("a", "e")].grad is None
    s.run_to("b", "forward")
    assert [w.state for w in s.wires() if s.graph.nodes[w.edge.src].name == "c"] == ["pending"]
    s.run_to("e", "forward")
    s.run_to("e", "backward")
    wires = {(s.graph.nodes[w.edge.src].name, s.graph.nodes[w.edge.dst].name): w
             for w in s.wires()}
    assert wires[("a", "e")].state == "gradient" and wires[("a", "e")].grad.text == "2.000"
    assert wires[("e", "f")].level == pytest.approx(s.scale.level(1.0))
    assert s.node_state("f") == "backpropagated" and s.node_state("a") == "evaluated"


def fan_out_graph():
    g = Graph()
    x = g.add("input", value=1.5, name="x")
    sq = g.add("multiply", x, x, name="sq")
    y = g.add("add", sq, x, name="y")
    g.set_loss(y)
    return g


def test_fan_out_shows_the_contributions_being_summed():
    s = StepSession(fan_out_graph())
    s.run_to("x", "backward")
    cr = chain_rule(s)
    parts = [(c.reader, c.port, c.grad.text) for c in cr.contributions[0]]
    assert sorted(parts) == [("sq", "a", "1.500"), ("sq", "b", "1.500"), ("y", "b", "1.000")]
    assert cr.sum_text[0].endswith("= 4.000") and cr.upstream[0].text == "4.000"
    assert float(s.grad("x")) == 4.0  # d(x·x + x)/dx = 2x + 1


def test_chain_rule_refuses_a_step_not_run_yet():
    s = session("abc")
    s.run_forward()
    with pytest.raises(GraphError, match="backward"):
        chain_rule(s)
    with pytest.raises(GraphError, match="has not run yet"):
        chain_rule(s, "e")


# ------------------------------------------------------------- breakpoints
def test_node_breakpoint_stops_on_its_steps_and_continue_moves_on():
    s = session("abc")
    s.set_breakpoint("e")
    r = s.continue_()
    assert (r.kind, r.node, r.phase, r.index) == ("breakpoint", "e", "forward", 3)
    assert r.triggered and s.value("e") is not None
    r = s.continue_()
    assert (r.kind, r.node, r.phase, r.index) == ("breakpoint", "e", "backward", 6)
    assert s.continue_().kind == "end"
    assert s.toggle_breakpoint("e") is False and not s.has_breakpoint("e")
    s.reset()
    assert s.continue_().kind == "end"


def test_breakpoint_on_one_phase_only():
    s = session("abc")
    s.set_breakpoint("e", phases=("backward",))
    assert s.continue_().index == 6


def test_nan_stops_on_the_step_that_makes_it():
    g = Graph()
    x = g.add("input", value=[-1.0, 4.0], name="x")
    r = g.add("sqrt", x, name="root")
    g.set_loss(g.add("sum", r, name="s"))
    s = StepSession(g)
    reason = s.continue_()
    assert (reason.kind, reason.node, reason.phase) == ("nonfinite", "root", "forward")
    assert reason.target == "output 0" and "1 NaN" in reason.message
    assert np.isnan(s.value("root")[0])  # the step ran: the view shows the NaN
    s.break_on_nonfinite(False)
    s.reset()
    assert s.continue_().kind == "end"


def test_inf_in_a_gradient_stops_on_that_backward_step():
    g = Graph()
    x = g.add("input", value=[0.0, 4.0], name="x")
    g.set_loss(g.add("sum", g.add("sqrt", x, name="root"), name="s"))
    s = StepSession(g)
    reason = s.continue_()
    assert (reason.kind, reason.node, reason.phase) == ("nonfinite", "root", "backward")
    assert reason.target == "gradient to input 'x'"


def scaled(c):
    g = Graph()
    x = g.add("input", value=[1.0, 1.0], name="x")
    k = g.add("constant", value=c, name="k")
    g.set_loss(g.add("sum", g.add("multiply", x, k, name="kx"), name="s"))
    return g


def test_exploding_and_vanishing_gradient_norms_stop_with_the_norm():
    s = StepSession(scaled(1e4))
    s.break_on_grad_norm(above=100.0)
    r = s.continue_()
    assert (r.kind, r.node, r.target) == ("exploding", "kx", "gradient to input 'a'")
    assert r.value == pytest.approx(1e4 * math.sqrt(2)) and r.threshold == 100.0
    s = StepSession(scaled(1e-9))
    s.break_on_grad_norm(below=1e-6)
    r = s.continue_()
    assert (r.kind, r.node) == ("vanishing", "kx") and r.value < 1e-6
    s.break_on_grad_norm()
    assert s.continue_().kind == "end"


def test_a_failing_step_is_reported_and_changes_nothing():
    g = Graph()
    x = g.add("input", name="x", shape=[2])
    g.set_loss(g.add("sum", x, name="s"))
    s = StepSession(g)
    r = s.step()
    assert r.kind == "error" and r.node == "x" and "has no value" in r.message
    assert s.position == 0 and not s.stepper.executor.values


# ------------------------------------------------------------ invalidation
def test_editing_an_input_marks_the_session_stale_until_reset():
    g = load_graph(example_path("abc"))
    s = StepSession(g)
    seen = []
    s.stale_changed.subscribe(seen.append)
    s.evaluate()
    g.set_value("a", 5.0)
    assert s.stale and seen == [s.stale_message]
    assert s.stale_message == "the graph changed ('a' was edited): stepping was reset"
    assert s.step().kind == "stale" and s.continue_().kind == "stale"
    g.set_value("b", 1.0)
    assert len(seen) == 1  # told once
    assert s.reset().kind == "start" and not s.stale
    s.evaluate()
    assert num(s, "f") == 1.0 and num(s, "b", grad=True) == 5.0


@pytest.mark.parametrize("edit", [
    lambda g: g.add("input", value=1.0, name="d"),
    lambda g: g.remove_node("f"),
    lambda g: g.disconnect(g.edges[0]),
    lambda g: g.set_loss("e"),
    lambda g: g.set_params("f", **dict(g.node("f").params)),
])
def test_graph_edits_make_the_session_stale(edit):
    g = load_graph(example_path("abc"))
    s = StepSession(g)
    s.step()
    edit(g)
    assert s.stale


def test_rename_move_and_title_do_not_reset_but_close_stops_listening():
    g = load_graph(example_path("abc"))
    s = StepSession(g)
    s.evaluate()
    g.rename("a", "alpha")
    g.move("b", (10, 20))
    g.name = "renamed"
    g.meta_changed.emit()
    assert not s.stale and s.steps[0].label == "forward alpha"
    s.close()
    g.set_value("b", 7.0)
    assert not s.stale


def test_feeding_an_input_resets_with_the_new_value():
    s = session("abc")
    s.evaluate()
    assert s.set_feed("a", 10.0).kind == "start" and s.position == 0
    s.evaluate()
    assert num(s, "f") == 16.0 and not s.stale
    s.set_feed("a", None)
    s.evaluate()
    assert num(s, "f") == 2.0
    with pytest.raises(GraphError, match="only inputs"):
        s.set_feed("e", 1.0)


def test_a_reset_after_a_breaking_edit_reports_the_error_and_stays_stale():
    g = load_graph(example_path("abc"))
    s = StepSession(g)
    g.disconnect(g.edges[0])
    r = s.reset()
    assert r.kind == "error" and "is not connected" in r.message and s.stale


def test_renaming_a_fed_input_keeps_its_feed():
    g = load_graph(example_path("abc"))
    s = StepSession(g, feeds={"a": 10.0})
    s.step()
    g.rename("b", "beta")
    g.rename("a", "alpha")  # before its value is read again
    s.go_to(-1)
    s.evaluate()
    assert not s.stale and num(s, "f") == 16.0
    s.reset()
    s.evaluate()
    assert num(s, "f") == 16.0


def test_run_forward_stops_at_a_breakpoint_but_evaluate_and_go_to_do_not():
    s = session("abc")
    s.set_breakpoint("c")
    r = s.run_forward()
    assert (r.kind, r.node, r.index) == ("breakpoint", "c", 2)
    assert s.run_forward().kind == "forward_done"
    s.reset()
    assert s.evaluate().kind == "end"
    s.reset()
    assert s.go_to(8).kind == "target" and s.position == 9
    r = s.run_to("c", "forward")  # backwards: nothing on the way can trigger
    assert (r.kind, r.index) == ("target", 2)


# ------------------------------------------------------- moves run apart (worker threads)
def test_a_move_run_on_another_thread_gives_the_direct_moves_bits():
    """begin() → run() on a thread → finish() leaves LeNet-5's session exactly where the same
    moves made directly leave it, and step back undoes them exactly."""
    import threading

    from core.stepping import StepMove, digit_feeds, sample_digit

    g1, g2 = load_graph(example_path("lenet5")), load_graph(example_path("lenet5"))
    direct = StepSession(g1, feeds=digit_feeds(g1, *sample_digit(1)))
    apart = StepSession(g2, feeds=digit_feeds(g2, *sample_digit(1)))
    assert direct.run_to("conv2", "backward").kind == "target"
    move = apart.begin("run_to", "conv2", "backward")
    assert isinstance(move, StepMove) and move.steps == direct.position
    assert apart.position == 0  # nothing changes before finish()
    t = threading.Thread(target=move.run)
    t.start()
    t.join(60)
    assert apart.finish(move).kind == "target"
    assert apart.position == direct.position and same(snapshot(apart), snapshot(direct))
    for s in (direct, apart):
        for _ in range(3):
            s.step_back()
    assert same(snapshot(apart), snapshot(direct))


def test_a_move_overtaken_by_an_edit_is_dropped_whole():
    """An edit made while a move runs makes it stale: finish() applies none of its steps and
    the session, once reset, steps the edited graph."""
    s = session("abc")
    move = s.begin("evaluate")
    s.graph.set_value(s.graph.node("a").id, 5.0)
    move.run()
    assert s.finish(move).kind == "stale"
    assert s.position == 0 and s.value("f") is None
    s.reset()
    s.evaluate()
    assert num(s, "f") == 6.0


def test_a_cancelled_move_changes_nothing():
    """A move cancelled before its steps (Reset in the window) finishes as "cancelled"."""
    s = session("abc")
    s.step()
    move = s.begin("run_forward")
    move.cancel()
    move.run()
    assert s.finish(move).kind == "cancelled"
    assert s.position == 1


def test_a_rename_while_a_move_runs_keeps_the_feeds():
    """Renaming a fed input while a move runs is no edit of the numbers: the move applies,
    with the fed value."""
    g = Graph("float64")
    x = g.add("input", name="x", shape=(2,), role="value")
    g.set_loss(g.add("sum", g.add("square", x), name="loss"))
    s = StepSession(g, feeds={"x": np.array([1.0, 2.0])})
    move = s.begin("evaluate")
    g.rename(x.id, "renamed")
    move.run()
    assert s.finish(move).kind == "end"
    assert num(s, "loss") == 5.0 and not s.stale


def test_the_work_estimate_counts_a_dense_layers_multiply_adds():
    """A dense layer of 100 → 50 on a batch of 4: 20 000 multiply-adds for its weight, 200
    for its bias, 600 elements read and written forward; backward counts twice."""
    g = Graph("float64")
    x = g.add("input", name="x", shape=(None, 100), role="features")
    d = g.add("dense", x, units=50, name="d")
    g.set_loss(g.add("sum", d, name="loss"))
    s = StepSession(g, feeds={"x": np.ones((4, 100))})
    f, b = s.step_index("d", "forward"), s.step_index("d", "backward")
    assert s.work(f, f + 1) == 20800
    assert s.work(b, b + 1) == 2 * 20800
    assert s.work(0, len(s.steps)) == sum(s.work(i, i + 1) for i in range(len(s.steps)))


def test_a_move_run_apart_summarizes_what_it_made_on_its_own_thread(monkeypatch):
    """With ``summarize`` on, the statistics the wires and the chain rule show next are made
    on the move's thread: reading them afterwards summarizes nothing more."""
    import threading

    from core.stepping import session as module

    threads = []
    real = module.summarize
    monkeypatch.setattr(module, "summarize",
                        lambda a: threads.append(threading.current_thread().name) or real(a))
    s = session("abc")
    move = s.begin("evaluate")
    move.summarize = True
    t = threading.Thread(target=move.run, name="mover")
    t.start()
    t.join(30)
    assert s.finish(move).kind == "end"
    assert threads and set(threads) == {"mover"}
    threads.clear()
    s.wires()
    s.go_to(s.step_index("e", "backward"))
    chain_rule(s)
    assert threads == []


def test_a_dropped_move_leaves_the_running_statistics_as_they_were():
    """In training mode a forward step updates batch norm's running statistics in the
    graph; when the move is dropped (an edit overtook it) they are put back."""
    g = Graph("float64")
    x = g.add("input", name="x", shape=(None, 3), role="features")
    bn = g.add("batch_norm", x, name="bn")
    g.set_loss(g.add("sum", bn, name="loss"))
    s = StepSession(g, feeds={"x": np.arange(12.0).reshape(4, 3)}, training=True)
    before = dict(bn.state)
    move = s.begin("run_forward")
    move.run()
    assert any(bn.state.get(k) is not v for k, v in before.items()) or bn.state.keys() - before
    g.rename(g.node("loss").id, "total")  # not an edit of the numbers: it would apply
    g.set_value(x.id, np.ones((4, 3)))    # an edit: the move is dropped
    assert s.finish(move).kind == "stale"
    assert bn.state.keys() == before.keys()
    assert all(bn.state[k] is v for k, v in before.items())
