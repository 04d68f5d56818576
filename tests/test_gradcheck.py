"""The gradient checker finds wrong gradients (it is not a test that cannot fail)."""

import numpy as np
import pytest

from core.executor import Executor
from core.gradcheck import BAD, check_graph, check_node, check_op
from core.graph import Graph
from core.ops import REGISTRY, Op, Sample, register_op
from core.serialize import load_graph
from examples import example_path


@pytest.fixture
def wrong_op():
    """A cube op whose backward forgets the factor 3."""

    @register_op("test_wrong_cube")
    class WrongCube(Op):
        """x³ with a wrong derivative."""

        formula = "x³"
        derivative = "x² (wrong: should be 3x²)"
        elementwise = True

        def infer_shapes(self, x):
            return (x,)

        def forward(self, ctx, x):
            ctx.x = x
            return x ** 3

        def backward(self, ctx, g):
            return (g * ctx.x ** 2,)

    yield WrongCube
    del REGISTRY["test_wrong_cube"]


def test_check_op_flags_a_wrong_backward(wrong_op):
    rows = check_op(wrong_op, Sample((np.array([0.5, -1.2, 2.0]),)))
    assert rows[0].rel_error > BAD and rows[0].verdict == "WRONG"


def test_check_graph_and_check_node_flag_the_wrong_node(wrong_op):
    g = Graph()
    x = g.add("input", value=[0.5, -1.5], name="x")
    c = g.add("test_wrong_cube", x, name="cube")
    s = g.add("sum", c, name="s")
    g.set_loss(s)
    rows = check_graph(g)
    assert rows[0].node == "x" and not rows[0].ok
    node_rows = check_node(g, "cube")
    assert node_rows[0].node == "cube" and not node_rows[0].ok
    assert all(r.ok for r in check_node(g, "s"))


def test_check_graph_passes_textbook_and_leaves_graph_untouched():
    g = load_graph(example_path("net_222"))
    before = {n.name: None if n.value is None else n.value.copy() for n in g.nodes.values()}
    rows = check_graph(g)
    assert rows and all(r.rel_error < 1e-6 for r in rows)
    for n in g.nodes.values():
        if before[n.name] is not None:
            assert np.array_equal(before[n.name], n.value)


def test_check_graph_works_on_float32_graphs_in_float64():
    g = Graph(dtype="float32")
    x = g.add("input", value=np.linspace(-1, 1, 6).reshape(2, 3), name="x")
    w = g.add("parameter", value=np.full((3, 2), 0.3), name="w")
    y = g.add("tanh", g.add("matmul", x, w), name="y")
    g.set_loss(g.add("mean", y, name="m"))
    rows = check_graph(g)
    assert all(r.rel_error < 1e-7 for r in rows)
    Executor(g).run()  # the original graph still runs in float32
    assert g.node("w").value.dtype == np.float32
