"""The executor: stepping equals a full run bit for bit, undo/replay, fan-out, non-finite stops."""

import numpy as np
import pytest

from core.errors import GraphError, NonFiniteError
from core.executor import Executor, Stepper
from core.graph import Graph
from core.serialize import load_graph
from examples import example_path


def mlp(seed=0):
    """A small graph with fan-out, broadcasting and a loss."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.add("input", value=rng.normal(size=(5, 3)), name="x")
    w = g.add("parameter", value=rng.normal(size=(3, 4)), name="w")
    b = g.add("parameter", value=rng.normal(size=(4,)), name="b")
    t = g.add("input", value=rng.integers(0, 4, 5), name="t", role="target")
    h = g.add("add", g.add("matmul", x, w, name="xw"), b, name="h")
    a = g.add("tanh", h, name="a")
    s = g.add("multiply", a, a, name="a²")          # a fans out twice into one node
    z = g.add("add", s, h, name="z")                # h fans out into two nodes
    loss = g.add("softmax_cross_entropy", z, t, name="loss")
    g.set_loss(loss)
    return g


def snapshot(ex):
    return ({k: v.copy() for k, v in ex.values.items()},
            {k: v.copy() for k, v in ex.grads.items()})


def assert_same(s1, s2):
    for d1, d2 in zip(s1, s2):
        assert d1.keys() == d2.keys()
        for k in d1:
            assert np.array_equal(d1[k], d2[k]), k
            assert d1[k].dtype == d2[k].dtype


def test_stepping_and_full_run_are_bit_identical():
    g = mlp()
    full = snapshot(Executor(g).run())
    st = Stepper(g)
    st.run_all()
    assert_same(full, snapshot(st.executor))


def test_step_plan_is_forward_in_order_then_backward_reversed():
    g = load_graph(example_path("abc"))
    st = Stepper(g)
    assert [(s.phase, g.nodes[s.node_id].name) for s in st.steps] == [
        ("forward", "a"), ("forward", "b"), ("forward", "c"), ("forward", "e"), ("forward", "f"),
        ("backward", "f"), ("backward", "e"), ("backward", "c"), ("backward", "b"),
        ("backward", "a")]


def test_backward_step_reports_upstream_local_and_passed_gradients():
    g = load_graph(example_path("abc"))
    st = Stepper(g)
    rec = st.run_to("e", "backward")
    assert rec.phase == "backward" and rec.node == "e"
    assert float(rec.upstream[0]) == 1.0
    assert [float(v) for v in rec.local] == [2.0, 3.0]       # ∂e/∂a = b, ∂e/∂b = a
    assert [float(v) for v in rec.grad_inputs] == [2.0, 3.0]
    assert rec.derivative and rec.formula


def test_step_back_restores_exact_state_and_replay_matches():
    g = mlp()
    st = Stepper(g)
    states = [snapshot(st.executor)]
    while not st.done:
        st.step()
        states.append(snapshot(st.executor))
    for i in range(len(st.steps) - 1, -1, -1):
        assert st.back()
        assert_same(states[i], snapshot(st.executor))
    assert not st.back()
    st.run_to("a", "backward")
    assert_same(states[st.position], snapshot(st.executor))
    st.reset()
    assert st.position == 0 and not st.executor.values


def test_run_to_moves_backwards_too():
    g = load_graph(example_path("xyz"))
    st = Stepper(g)
    st.run_all()
    rec = st.run_to("q", "forward")
    assert rec.node == "q" and st.current.phase == "forward"
    assert not st.executor.grads


def test_fan_out_gradients_accumulate():
    """x used twice: d(x·x + x)/dx = 2x + 1."""
    g = Graph()
    x = g.add("input", value=[1.5, -2.0], name="x")
    sq = g.add("multiply", x, x, name="sq")
    y = g.add("add", sq, x, name="y")
    s = g.add("sum", y, name="s")
    ex = Executor(g).run(loss=s)
    np.testing.assert_array_equal(ex.grad("x"), [4.0, -3.0])


def test_broadcast_gradient_reduces_to_input_shape():
    g = Graph()
    x = g.add("input", value=np.ones((4, 3)), name="x")
    b = g.add("parameter", value=[1.0, 2.0, 3.0], name="b")
    s = g.add("sum", g.add("add", x, b), name="s")
    ex = Executor(g).run(loss=s)
    np.testing.assert_array_equal(ex.grad("b"), [4.0, 4.0, 4.0])


def test_nan_during_forward_names_the_node():
    g = Graph()
    x = g.add("input", value=[-1.0, 4.0], name="x")
    r = g.add("sqrt", x, name="root")
    g.add("sum", r, name="s")
    with np.errstate(invalid="ignore"), pytest.raises(NonFiniteError) as info:
        Executor(g).run(loss="s")
    assert info.value.node == "root" and info.value.phase == "forward"
    assert "root" in str(info.value) and "1 NaN" in str(info.value)


def test_inf_during_backward_names_the_node():
    g = Graph()
    x = g.add("input", value=[0.0, 4.0], name="x")
    r = g.add("sqrt", x, name="root")
    g.add("sum", r, name="s")
    with np.errstate(divide="ignore"), pytest.raises(NonFiniteError) as info:
        Executor(g).run(loss="s")
    assert info.value.node == "root" and info.value.phase == "backward"


def test_failed_step_changes_nothing():
    g = Graph()
    x = g.add("input", value=[0.0, 4.0], name="x")
    r = g.add("sqrt", x, name="root")
    g.add("sum", r, name="s")
    st = Stepper(g, loss="s")
    st.run_to("s", "backward")
    before = snapshot(st.executor)
    with np.errstate(divide="ignore"), pytest.raises(NonFiniteError):
        st.step()
    assert_same(before, snapshot(st.executor))
    assert st.current.node_id == r.id


def test_unconnected_input_is_a_clear_error():
    g = Graph()
    a = g.add("input", value=1.0, name="a")
    g.add("add", a, name="plus")
    with pytest.raises(GraphError, match="input 'b' of node 'plus' is not connected"):
        Executor(g).run()


def test_loss_must_be_scalar():
    g = Graph()
    a = g.add("input", value=[1.0, 2.0], name="a")
    g.add("exp", a, name="e")
    with pytest.raises(GraphError, match="must give a scalar.*Sum or Mean"):
        Executor(g).run(loss="e")


def test_shape_mismatch_at_run_names_node():
    g = Graph()
    a = g.add("input", value=np.ones((2, 3)), name="a")
    b = g.add("input", value=np.ones((2, 4)), name="b")
    g.add("add", a, b, name="plus")
    with pytest.raises(GraphError, match="node 'plus'"):
        Executor(g).forward()


def test_targets_and_training_inputs_get_no_gradient_work():
    g = mlp()
    ex = Executor(g, input_grads=False).run()
    assert (g.node("x").id, 0) not in ex.grads
    assert (g.node("t").id, 0) not in ex.grads
    assert ex.grad("w").shape == (3, 4)


def test_feeds_override_input_values():
    g = load_graph(example_path("abc"))
    ex = Executor(g).run(feeds={"a": 10.0})
    assert float(ex.value("f")) == 16.0 and float(ex.grad("b")) == 10.0


def test_float32_graph_stays_float32():
    g = mlp()
    from core.serialize import graph_from_dict, graph_to_dict

    d = graph_to_dict(g)
    d["dtype"] = "float32"
    g32 = graph_from_dict(d)
    ex = Executor(g32).run()
    for k, v in list(ex.values.items()) + list(ex.grads.items()):
        if v.dtype.kind == "f":
            assert v.dtype == np.float32, (g32.nodes[k[0]].name, v.dtype)


def test_step_back_restores_batch_norm_statistics_and_lazy_weights():
    """Stepping back over a training-mode batch norm puts its running averages back."""
    rng = np.random.default_rng(0)
    g = Graph()
    x = g.add("input", value=rng.normal(size=(6, 3)), name="x")
    bn = g.add("batch_norm", x, name="bn")
    d = g.add("dense", bn, name="fc", units=2)
    g.set_loss(g.add("sum", d, name="s"))
    st = Stepper(g, training=True)
    st.run_all()
    assert "running_mean" in bn.state and "W" in d.weights
    st.reset()
    assert bn.state == {} and d.weights == {}
    st.run_all()
    first = bn.state["running_mean"].copy()
    st.reset()
    st.run_all()
    np.testing.assert_array_equal(bn.state["running_mean"], first)  # no drift on replay


def test_output_too_large_for_memory_is_refused_before_running(monkeypatch):
    """(100000, 1) + (1, 100000) would broadcast to 74.5 GiB: refused by name, nothing runs."""
    import core.ops.base as base
    from core.errors import MemoryLimitError

    monkeypatch.setattr(base, "MEMORY_LIMIT", 16 * 2**30)
    g = Graph()
    a = g.add("input", value=np.ones((100000, 1)), name="a")
    b = g.add("input", value=np.ones((1, 100000)), name="b")
    g.add("add", a, b, name="outer")
    ex = Executor(g)
    with pytest.raises(MemoryLimitError, match=r"node 'outer': output of shape \(100000, 100000\)"
                                               r" needs 74\.5 GiB"):
        ex.run()
    assert ex.values == {}


def test_values_of_a_run_are_counted_together(monkeypatch):
    import core.ops.base as base
    from core.errors import MemoryLimitError

    g = Graph()
    x = g.add("input", value=np.ones(1000), name="x")
    for i in range(4):
        x = g.add("tanh", x, name=f"t{i}")
    monkeypatch.setattr(base, "MEMORY_LIMIT", 3 * 8000)  # each output fits, all five do not
    with pytest.raises(MemoryLimitError, match="the values of this run need 39.1 KiB"):
        Executor(g).run()


def test_memory_error_inside_an_op_names_the_node(monkeypatch):
    from core.errors import MemoryLimitError
    from core.ops import get_op

    g = Graph()
    g.add("tanh", g.add("input", value=1.0, name="x"), name="t")

    def no_memory(self, ctx, x):
        raise MemoryError

    monkeypatch.setattr(get_op("tanh"), "forward", no_memory)
    with pytest.raises(MemoryLimitError, match="node 't' .*not enough memory"):
        Executor(g).run()
