"""Automatic layout: tidy layered pictures of LeNet-5, VGG-16 and graphs with skips."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest
from gui_graphs import abc_graph, lenet5, residual_graph, skip_wired_graph, vgg16
from gui_helpers import dialogs, make_window  # noqa: F401

from core.layout import _isotonic


def overlaps(win):
    rects = [(nid, it.scene_card_rect()) for nid, it in win.scene.nodes.items()]
    bad = []
    for i, (a, ra) in enumerate(rects):
        for b, rb in rects[i + 1:]:
            if ra.adjusted(-4, -4, 4, 4).intersects(rb):
                bad.append((win.document.graph.nodes[a].name, win.document.graph.nodes[b].name))
    return bad


def wires_through_cards(win):
    """(wire, card) pairs where a wire passes over a card it does not belong to."""
    bad = []
    for edge, item in win.scene.edges.items():
        path = item.path
        for nid, card in win.scene.nodes.items():
            if nid in (edge.src, edge.dst):
                continue
            r = card.scene_card_rect().adjusted(2, 2, -2, -2)
            if any(r.contains(path.pointAtPercent(k / 200)) for k in range(201)):
                nodes = win.document.graph.nodes
                bad.append((nodes[edge.src].name, nodes[edge.dst].name, nodes[nid].name))
    return bad


def preset(stem):
    def build():
        from core.serialize import load_graph
        from examples import example_path

        return load_graph(example_path(stem))
    return build


@pytest.mark.parametrize("build", [lenet5, vgg16, residual_graph, abc_graph, preset("lenet5"),
                                   preset("vgg16"), preset("alexnet")],
                         ids=["lenet5", "vgg16", "skips", "abc", "preset-lenet5",
                              "preset-vgg16", "preset-alexnet"])
def test_auto_layout_leaves_no_overlaps_and_no_wires_through_cards(make_window, build):
    """after Auto Layout no two cards overlap and no wire crosses a card"""
    win = make_window()
    win.set_graph(build())
    win.editing.auto_layout()
    assert overlaps(win) == []
    assert wires_through_cards(win) == []


def test_a_chain_is_laid_out_left_to_right_in_a_straight_line(make_window):
    """LeNet-5's main chain runs left to right with every wire horizontal"""
    win = make_window()
    win.set_graph(lenet5())
    g = win.document.graph
    chain = ["image", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
             "fc1", "relu3", "fc2", "relu4", "fc3", "loss"]
    xs = [g.layout[g.node(n).id][0] for n in chain]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    for a, b in zip(chain, chain[1:-1]):
        e = g.in_edges(b)
        edge = next(iter(e.values()))
        p1, p2 = win.scene.edges[edge].endpoints()
        assert abs(p1.y() - p2.y()) < 1.0, (a, b)
    # the label (target) sits below the logits, next to the loss
    assert g.layout[g.node("label").id][1] > g.layout[g.node("fc3").id][1]


def test_opening_a_file_without_positions_lays_it_out(make_window, tmp_path):
    """a graph file with no layout opens arranged, not piled at the origin"""
    from core.serialize import save_graph

    g = lenet5()
    assert not g.layout
    save_graph(g, tmp_path / "l.json")
    win = make_window()
    win.files.open_file(str(tmp_path / "l.json"))
    assert len(win.document.graph.layout) == len(win.document.graph.nodes)
    assert overlaps(win) == []


def test_isotonic_fit_is_the_closest_non_decreasing_sequence():
    """the column placement solver pools violators into their mean"""
    assert _isotonic([1.0, 3.0, 2.0, 4.0], [1, 1, 1, 1]) == [1.0, 2.5, 2.5, 4.0]
    assert _isotonic([5.0, 1.0], [3, 1]) == [4.0, 4.0]


def test_a_file_whose_cards_overlap_opens_rearranged(make_window, tmp_path):
    """positions made for narrower cards (overlapping here) are replaced by a tidy layout"""
    from core.serialize import save_graph

    g = lenet5()
    for i, nid in enumerate(g.nodes):
        g.layout[nid] = (i * 60.0, 0.0)  # 60 px apart: every card overlaps its neighbour
    save_graph(g, tmp_path / "tight.json")
    win = make_window()
    win.files.open_file(str(tmp_path / "tight.json"))
    assert win.scene.overlapping_cards() == 0
    assert overlaps(win) == []
    assert "arranged" in win.statusBar().currentMessage()


def test_a_very_long_network_folds_into_rows_read_left_to_right(make_window):
    """VGG-16's 42 steps come out as rows, each continuing where the previous one ended"""
    win = make_window()
    win.set_graph(vgg16())
    g = win.document.graph
    rows = sorted({round(g.layout[g.node(n).id][1]) for n in
                   ("image", "conv3_3", "conv5_3")})
    assert len(rows) == 3
    # the wire from the end of a row to the start of the next runs between the rows
    img, last = g.layout[g.node("image").id], g.layout[g.node("conv5_3").id]
    assert img[1] < last[1]
    assert overlaps(win) == [] and wires_through_cards(win) == []


def test_lane_search_matches_testing_one_lane_at_a_time():
    """The vectorised lane test picks the lane a point-by-point check would pick."""
    import numpy as np
    from PySide6.QtCore import QPointF

    from widgets.canvas.routing import _cubic_points, _first_free_lane, _hits

    rng = np.random.default_rng(3)
    for _ in range(200):
        xy = rng.uniform(0, 600, (12, 2))
        rects = np.column_stack([xy, xy + rng.uniform(20, 160, (12, 2))])
        lanes = rng.uniform(-100, 800, 30)
        xs1 = (0.0, 60.0, 140.0, 200.0)
        xs2 = (400.0, 460.0, 540.0, 600.0)
        y0, y1 = rng.uniform(0, 700, 2)
        want = None
        for i, lane in enumerate(lanes):
            a = _cubic_points(*(QPointF(x, y) for x, y in zip(xs1, (y0, y0, lane, lane))))
            b = _cubic_points(*(QPointF(x, y) for x, y in zip(xs2, (lane, lane, y1, y1))))
            if not _hits(a, rects) and not _hits(b, rects):
                want = i
                break
        assert _first_free_lane(lanes, xs1, y0, xs2, y1, rects) == want


class _Cards:
    """Card rectangles for the router, every one tested (a stand-in for the scene)."""

    def __init__(self, rects):
        self.rects = rects

    def obstacles(self, x0, x1, y0, y1, exclude=(), margin=8.0):
        import numpy as np

        rows = [(l - margin, t - margin, r + margin, b + margin)
                for i, (l, t, r, b) in enumerate(self.rects.tolist())
                if i not in exclude and r + margin > x0 and l - margin < x1
                and b + margin > y0 and t - margin < y1]
        return np.array(rows, dtype=float).reshape(-1, 4)


def test_checking_many_plain_wires_at_once_agrees_with_routing_each():
    """the check that finds, for thousands of wires at once, those whose plain curve meets
    no card says "clear" exactly for the wires whose plain curve the router finds clear"""
    import numpy as np
    from PySide6.QtCore import QPointF

    from widgets.canvas.routing import (
        _cubic_points,
        _hits,
        default_curve,
        plain_is_clear,
        plain_path,
        route,
    )

    rng = np.random.default_rng(5)
    xy = rng.uniform(-3000, 3000, (150, 2))
    cards = np.column_stack([xy, xy + rng.uniform([172, 60], [260, 160], (150, 2))])
    scene = _Cards(cards)
    ends = rng.uniform(-3000, 3000, (800, 4))
    ends[:, 2] = ends[:, 0] + rng.uniform(-100, 700, 800)  # some backward, some about 60
    ends[:, 3] = ends[:, 1] + rng.uniform(-300, 300, 800)
    ends[:100, 2:] = cards[:100, :2] + 8.0  # some ending right at a card's grown corner
    own = rng.integers(0, len(cards), (800, 2))
    got = plain_is_clear(ends, cards, own)
    counts = [0, 0]
    for (x1, y1, x2, y2), (a, b), ok in zip(ends.tolist(), own.tolist(), got):
        p1, p2 = QPointF(x1, y1), QPointF(x2, y2)
        if x2 - x1 < 60:
            assert not ok  # left to the router
            continue
        rects = scene.obstacles(x1 + 2, x2 - 2, min(y1, y2) - 60, max(y1, y2) + 60, (a, b))
        assert ok == (not _hits(_cubic_points(*default_curve(p1, p2)), rects))
        if ok:
            assert route(scene, p1, p2, exclude=(a, b)) == plain_path(p1, p2)
        counts[bool(ok)] += 1
    assert min(counts) > 50  # both answers were given


def test_layout_walks_long_columns_as_arrays_with_the_same_result(monkeypatch):
    """long columns (handled as arrays) come out exactly as when walked node by node"""
    import core.layout as layout

    g = skip_wired_graph(400, 5)
    sizes = {nid: (172.0 + 20 * (i % 3), 90.0 + 16 * (i % 2)) for i, nid in enumerate(g.nodes)}

    def port_y(nid, port, out):
        return 40.0 + 20 * (port == "b")

    monkeypatch.setattr(layout, "SMALL_COLUMN", 10 ** 9)
    one_by_one = layout.layered_layout(g, sizes, port_y)
    monkeypatch.setattr(layout, "SMALL_COLUMN", 0)
    as_arrays = layout.layered_layout(g, sizes, port_y)
    assert as_arrays == one_by_one
    assert len(set(one_by_one.values())) == len(g.nodes)


def test_the_layout_module_loads_without_networkx():
    """importing the layout does not pay for networkx (the app starts faster)"""
    import subprocess
    import sys

    code = "import sys, core.layout; print('networkx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parents[1]), check=True)
    assert out.stdout.strip() == "False"


def test_two_consumers_of_one_output_keep_the_order_they_were_added_in():
    """equal barycentres leave a column as it was: the node added first stays on top"""
    from core.graph import Graph
    from core.layout import layered_layout

    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    first = g.add("relu", x, name="first")
    second = g.add("sigmoid", x, name="second")
    sizes = {nid: (172.0, 90.0) for nid in g.nodes}
    pos = layered_layout(g, sizes)
    assert pos[first.id][0] == pos[second.id][0]  # one column
    assert pos[first.id][1] < pos[second.id][1]
