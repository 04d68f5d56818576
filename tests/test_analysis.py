"""Graph analysis without a window: shapes, what may connect and why, quick fixes, totals."""

from __future__ import annotations

from gui_graphs import lenet5

from core.analysis import Connection, GraphAnalysis, QuickFix, Totals, flattened, human_count
from core.graph import Edge, Graph


def test_a_wire_that_closes_a_cycle_is_refused_saying_cycle():
    g = Graph()
    a = g.add("input", value=1.0, name="a")
    x = g.add("add", a, name="x")
    y = g.add("exp", x, name="y")
    edge, msg, fixable = GraphAnalysis(g).can_connect(y.id, "out", x.id, "b")
    assert edge is None and "cycle" in msg and not fixable


def test_a_shape_mismatch_is_refused_and_not_fixable():
    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    w = g.add("input", shape=(4, 5), name="w")
    mm = g.add("matmul", name="mm")
    g.connect(w, mm, dst_port="b")
    verdict = GraphAnalysis(g).can_connect(x.id, "out", mm.id, "a")
    assert verdict.edge is None and not verdict.fixable
    assert verdict.message.startswith("shape mismatch")


def test_a_4d_tensor_into_dense_is_refused_but_fixable_with_a_flatten():
    g = Graph()
    img = g.add("input", shape=(None, 1, 8, 8), name="img")
    dense = g.add("dense", name="dense")
    verdict = GraphAnalysis(g).can_connect(img.id, "out", dense.id, "x")
    assert isinstance(verdict, Connection)
    assert verdict.edge is None and verdict.fixable
    assert verdict.message.startswith("shape mismatch: ")
    assert verdict.message.endswith(" — release to insert a Flatten in between")


def test_a_wire_that_fits_gives_the_edge_and_names_the_shape():
    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    r = g.add("relu", name="r")
    edge, msg, fixable = GraphAnalysis(g).can_connect(x.id, "out", r.id, "x")
    assert edge == Edge(x.id, "out", r.id, "x")
    assert msg == "connect x → r.x  (B, 3)" and not fixable


def test_the_quick_fix_for_a_dense_fed_a_4d_tensor_is_a_flatten_before_its_input():
    g = Graph()
    img = g.add("input", shape=(None, 3, 4, 4), name="img")
    dense = g.add("dense", name="dense")
    g.add_edge(Edge(img.id, "out", dense.id, "x"))  # as a file could hold it
    analysis = GraphAnalysis(g)
    fix = analysis.quick_fix(dense.id)
    assert isinstance(fix, QuickFix)
    assert fix == ("x", "Insert Flatten before 'dense.x'")
    assert analysis.quick_fix(img.id) is None


def test_three_edits_emit_changed_once_and_the_next_report_holds_them():
    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    analysis = GraphAnalysis(g)
    assert analysis.report.shapes[x.id] == ((None, 3),)
    seen = []
    analysis.changed.subscribe(lambda: seen.append(1))
    r = g.add("relu", x, name="r")
    s = g.add("sigmoid", r, name="s")
    g.set_params(x, shape=(None, 7))
    assert seen == [1]
    assert analysis.report.shapes[s.id] == ((None, 7),)
    g.remove_node(s)
    assert seen == [1, 1]
    assert s.id not in analysis.report.shapes


def test_moving_a_node_or_choosing_the_loss_leaves_the_report_current():
    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    analysis = GraphAnalysis(g)
    report = analysis.report
    seen = []
    analysis.changed.subscribe(lambda: seen.append(1))
    g.move(x, (40.0, 60.0))
    g.set_loss(x)
    assert not seen and analysis.report is report


def test_a_closed_analysis_no_longer_follows_the_graph():
    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    analysis = GraphAnalysis(g)
    _ = analysis.report
    seen = []
    analysis.changed.subscribe(lambda: seen.append(1))
    analysis.close()
    g.add("relu", x, name="r")
    assert not seen


def test_ops_offered_for_an_image_output_take_a_4d_tensor():
    g = Graph()
    img = g.add("input", shape=(None, 1, 28, 28), name="img")
    offered = GraphAnalysis(g).compatible_ops(img.id, "out", True)
    assert {"conv2d", "relu", "flatten"} <= set(offered)
    assert "dense" not in offered and "input" not in offered
    feeding = GraphAnalysis(g).compatible_ops(img.id, "out", False)
    assert "input" in feeding and "dense" in feeding


def test_lenet5_totals_read_15_nodes_14_connections_61706_parameters():
    totals = GraphAnalysis(lenet5()).totals()
    assert isinstance(totals, Totals) and totals.errors == 0
    text = totals.summary()
    assert text.startswith("15 nodes · 14 connections")
    assert "61,706 parameters" in text and text.endswith(" multiply-adds per sample")


def test_totals_count_trainable_parameter_nodes_and_errors():
    g = Graph()
    g.add("parameter", shape=(3, 4), name="w")
    g.add("parameter", shape=(5,), trainable=False, name="frozen")
    g.add("dense", name="d1")
    g.add("dense", name="d2")
    totals = GraphAnalysis(g).totals()
    assert (totals.parameters, totals.errors) == (12, 2)
    assert totals.summary().endswith("multiply-adds per sample · ⚠ 2 errors")
    one = Totals(nodes=1, connections=0, parameters=0, multiply_adds=0, errors=1)
    assert one.summary() == "1 nodes · 0 connections · 0 parameters · 0 multiply-adds per " \
        "sample · ⚠ 1 error"


def test_flattened_keeps_the_batch_and_counts_unknown_dims_as_one():
    assert flattened((None, 16, 5, 5)) == (None, 400)
    assert flattened((None, None, 3)) == (None, 3)


def test_human_count_uses_k_m_g_prefixes():
    assert [human_count(n) for n in (999, 416_520, 2_500_000, 3_000_000_000)] == \
        ["999", "416.52 k", "2.50 M", "3.00 G"]

