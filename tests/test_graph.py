"""The graph model: edit-time validation with clear errors, events, shapes."""

import numpy as np
import pytest

from core.errors import GraphError, ParamError
from core.graph import Graph


def abc():
    g = Graph()
    a = g.add("input", value=3.0, name="a")
    b = g.add("input", value=2.0, name="b")
    c = g.add("input", value=-4.0, name="c")
    e = g.add("multiply", a, b, name="e")
    f = g.add("add", e, c, name="f")
    return g, a, b, c, e, f


def test_connecting_into_a_cycle_is_refused_naming_both_nodes():
    g = Graph()
    a = g.add("input", value=1.0, name="a")
    x = g.add("add", a, name="x")
    y = g.add("exp", x, name="y")
    with pytest.raises(GraphError) as info:
        g.connect(y, x, dst_port="b")
    assert "cycle" in str(info.value) and "'y'" in str(info.value) and "'x'" in str(info.value)
    assert set(info.value.nodes) == {"x", "y"}


def test_connecting_an_occupied_input_names_the_port_and_source():
    g, a, b, c, e, f = abc()
    with pytest.raises(GraphError, match="input 'a' of 'e' is already connected to 'a'"):
        g.connect(c, e, dst_port="a")


def test_unknown_op_and_unknown_port_and_bad_param():
    g = Graph()
    with pytest.raises(GraphError, match="unknown op 'sigmod'.*sigmoid"):
        g.add("sigmod")
    a = g.add("input", value=1.0, name="a")
    g.add("exp", name="e")
    with pytest.raises(GraphError, match="no input port 'q'.*x"):
        g.connect(a, "e", dst_port="q")
    with pytest.raises(ParamError, match="node 'lr'.*alpha.*≤ 1"):
        g.add("leaky_relu", name="lr", alpha=3.0)
    with pytest.raises(ParamError, match="no parameter 'alpah'.*did you mean 'alpha'"):
        g.add("leaky_relu", alpah=0.1)


def test_self_loop_refused():
    g = Graph()
    x = g.add("add", name="x")
    with pytest.raises(GraphError, match="cannot feed itself"):
        g.connect(x, x)


def test_events_fire_for_each_edit():
    g = Graph()
    seen = []
    g.node_added.subscribe(lambda n: seen.append(("+n", n.name)))
    g.node_removed.subscribe(lambda n: seen.append(("-n", n.name)))
    g.edge_added.subscribe(lambda e: seen.append(("+e", e.dst_port)))
    g.edge_removed.subscribe(lambda e: seen.append(("-e", e.dst_port)))
    g.node_changed.subscribe(lambda n: seen.append(("~n", n.name)))
    a = g.add("input", value=1.0, name="a")
    x = g.add("leaky_relu", a, name="x")
    g.set_params(x, alpha=0.2)
    g.remove_node(a)
    assert seen == [("+n", "a"), ("+n", "x"), ("+e", "x"), ("~n", "x"), ("-e", "x"), ("-n", "a")]


def test_order_is_deterministic_and_topological():
    g, *_ = abc()
    assert [n.name for n in g.order()] == ["a", "b", "c", "e", "f"]


def test_shape_inference_reports_errors_per_node():
    g = Graph()
    a = g.add("input", value=np.zeros((2, 3)), name="a")
    b = g.add("input", value=np.zeros((4, 5)), name="b")
    m = g.add("matmul", a, b, name="m")
    s = g.add("sigmoid", m, name="s")
    rep = g.infer_shapes()
    assert "inner dimensions differ" in rep.errors[m.id] and "3 ≠ 4" in rep.errors[m.id]
    assert s.id in rep.blocked
    g.set_value(b, np.zeros((3, 5)))
    rep = g.infer_shapes()
    assert rep.shapes[s.id] == ((2, 5),) and not rep.errors


def test_batch_dimension_propagates_as_none():
    g = Graph(dtype="float32")
    x = g.add("input", name="x", shape=[None, 4], role="features")
    w = g.add("parameter", name="w", shape=[4, 3])
    y = g.add("matmul", x, w, name="y")
    rep = g.infer_shapes()
    assert rep.shapes[y.id] == ((None, 3),)
    g.initialize(seed=1)
    assert g.node("w").value.dtype == np.float32 and g.node("w").value.shape == (4, 3)


def test_values_must_be_finite():
    g = Graph()
    with pytest.raises(ParamError, match="finite"):
        g.add("input", value=float("nan"))


def test_removed_node_takes_its_edges_and_layout():
    g, a, b, c, e, f = abc()
    g.move(e, (10, 20))
    removed = g.remove_node(e)
    assert len(removed) == 3 and e.id not in g.layout
    assert all(e.id not in (x.src, x.dst) for x in g.edges)


def test_names_cannot_be_empty_or_another_nodes_id():
    """node(key) must find one node: a name may not be an id, nor an id a name."""
    g = Graph()
    a = g.add("input", value=1.0, name="a")
    with pytest.raises(GraphError, match="empty"):
        g.add("exp", a, name="  ")
    with pytest.raises(GraphError, match=f"'{a.id}' is the id of node 'a'"):
        g.add("exp", a, name=a.id)
    b = g.add("exp", a, name="n3")          # a name that looks like a future id…
    c = g.add("exp", a)                     # …is skipped when ids are drawn
    assert c.id != "n3" and g.node("n3") is b
    with pytest.raises(GraphError, match="already exists"):
        g.rename(c, "n3")


# ------------------------------------------------------ issue 10: sizes and types
@pytest.fixture
def sixteen_gib(monkeypatch):
    """A fixed memory limit, so the messages do not depend on this machine."""
    import core.ops.base as base

    monkeypatch.setattr(base, "MEMORY_LIMIT", 16 * 2**30)


def test_huge_parameter_is_refused_before_allocating_naming_the_node(sixteen_gib):
    """A parameter of shape [100000, 100000] raised MemoryError while initializing."""
    from core.errors import MemoryLimitError

    g = Graph()
    g.add("parameter", name="w", shape=(100000, 100000))
    assert g.infer_shapes().shapes[g.node("w").id] == ((100000, 100000),)  # inspecting is fine
    with pytest.raises(MemoryLimitError, match=r"node 'w': shape \(100000, 100000\) needs "
                                               r"74\.5 GiB; this computer has 16\.0 GiB"):
        g.initialize(0)
    assert g.node("w").value is None


def test_huge_layer_weight_is_refused_naming_the_node(sixteen_gib):
    from core.errors import MemoryLimitError

    g = Graph()
    x = g.add("input", name="x", shape=(None, 65536))
    g.add("dense", x, name="fc", units=65536)
    with pytest.raises(MemoryLimitError, match=r"node 'fc': weight of shape \(65536, 65536\) "
                                               r"needs 32\.0 GiB"):
        g.initialize(0)


def test_sizes_of_huge_shapes_are_exact():
    """NumPy's int64 product wrapped around for a shape like [1e18, 100]."""
    from core.ops.base import numel

    g = Graph()
    g.add("parameter", name="w", shape=(10**18, 100))
    assert numel((None, 10**18, 100)) == 10**20
    assert g.parameter_count() == 10**20


def test_gui_values_still_pass_strict_parameter_checks():
    """The inspector hands tuples from its shape field and numbers from its spin boxes."""
    from core.ops import get_op

    p = get_op("input").validate_params({"shape": (None, 1, 28, 28), "role": "features"})
    assert p["shape"] == (None, 1, 28, 28)
    assert get_op("conv2d").validate_params({"kernel": (3, 3)})["kernel"] == (3, 3)
    assert get_op("conv2d").validate_params({"kernel": 3})["kernel"] == (3, 3)
    assert get_op("dropout").validate_params({"p": 0.25})["p"] == 0.25
    assert get_op("dense").validate_params({"units": np.int64(7)})["units"] == 7
    with pytest.raises(ParamError, match="parameter 'units' must be an integer; got '4'"):
        get_op("dense").validate_params({"units": "4"})
    with pytest.raises(ParamError, match="must be a finite number"):
        get_op("parameter").validate_params({"fill": float("-inf")})


def test_initialize_seeds_generators_only_for_nodes_that_draw(monkeypatch):
    """Seeding one generator per node made initializing a 100,000-node chain take seconds."""
    import core.graph as graph_mod

    g = Graph()
    x = g.add("input", value=np.ones((2, 3)), name="x")
    for i in range(50):
        x = g.add("tanh", x, name=f"t{i}")
    g.add("dense", x, name="fc", units=2)
    g.add("parameter", name="w", shape=(2,))
    seeds = []
    real = graph_mod.np.random.default_rng
    monkeypatch.setattr(graph_mod.np.random, "default_rng", lambda s: seeds.append(s) or real(s))
    g.initialize(7)
    assert seeds == [[7, 51], [7, 52]]  # fc and w, seeded by their position as before


def test_names_stay_unique_and_findable_through_removals_and_renames():
    """Default names take the smallest free number, also after a node is removed or
    renamed; a renamed node is found by its new name only, and its old name is free."""
    g = Graph()
    a = [g.add("input", shape=(None, 2)) for _ in range(4)]
    assert [n.name for n in a] == ["input", "input2", "input3", "input4"]
    g.remove_node(a[1])
    assert g.add("input", shape=(None, 2)).name == "input2"
    g.rename(a[2], "features")
    assert g.node("features") is a[2]
    with pytest.raises(GraphError, match="no node named 'input3'"):
        g.node("input3")
    assert g.add("input", shape=(None, 2)).name == "input3"
    assert g.add("input", shape=(None, 2)).name == "input5"
    with pytest.raises(GraphError, match="already exists"):
        g.rename(a[0], "features")


def test_nodes_added_after_a_connection_can_be_connected_and_cycles_still_refused():
    """The cycle check's cached view of the graph grows with every added node."""
    g = Graph()
    x = g.add("input", name="x", shape=(None, 2))
    r = g.add("add", x, name="r")  # connecting builds the cached view; input b stays free
    t = g.add("tanh", r, name="t")
    s = g.add("relu", t, name="s")
    with pytest.raises(GraphError, match="would create a cycle"):
        g.connect(s, r, dst_port="b")
    u = g.add("exp", x, name="u")
    g.connect(u, r, dst_port="b")
    assert [n.name for n in g.order()] == ["x", "u", "r", "t", "s"]
