"""The canvas package: the scene draws what the analysis reports; its modules import downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.analysis import GraphAnalysis
from core.graph import Graph
from widgets.canvas import GraphScene

CANVAS = Path(__file__).resolve().parents[1] / "widgets" / "canvas"
# lowest first; a module may import only from modules of a lower rank
RANKS = {"routing": 0, "spatial": 0, "wires": 1, "items": 1.5, "overlays": 2, "lod": 2,
         "overview": 2, "stepping": 2.5, "scene": 3, "view": 4}


def counting_inference(g: Graph) -> list:
    """Make ``g.infer_shapes`` record each call; return the record."""
    calls = []
    infer = g.infer_shapes

    def counted(*args, **kwargs):
        calls.append(1)
        return infer(*args, **kwargs)

    g.infer_shapes = counted
    return calls


@pytest.fixture
def chain():
    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    r = g.add("relu", x, name="r")
    return g, x, r


def test_a_scene_given_the_graphs_analysis_shows_an_edit_after_one_inference(qtbot, chain):
    """typing a new input shape updates the cards, inferring shapes once for canvas and totals"""
    g, x, r = chain
    analysis = GraphAnalysis(g)
    scene = GraphScene(g, analysis=analysis)
    assert scene.analysis is analysis
    assert scene.nodes[r.id].footer == "→ (B, 3)"
    calls = counting_inference(g)
    g.set_params(x, shape=(None, 7))
    g.add("sigmoid", r, name="s")
    qtbot.waitUntil(lambda: scene.nodes[r.id].footer == "→ (B, 7)")
    assert scene.nodes[g.node("s").id].footer == "→ (B, 7)"
    assert analysis.totals().nodes == 3
    assert calls == [1]
    scene.detach()


def test_opening_another_graph_stops_the_scenes_own_analysis_but_not_a_shared_one(qtbot, chain):
    """after showing a second graph, edits to the first no longer reach the canvas"""
    g, x, r = chain
    scene = GraphScene(g)
    own = scene.analysis
    seen = []
    own.changed.subscribe(lambda: seen.append("own"))
    shared_graph = Graph()
    shared_graph.add("input", shape=(None, 2), name="y")
    shared = GraphAnalysis(shared_graph)
    shared.changed.subscribe(lambda: seen.append("shared"))
    scene.set_graph(shared_graph, analysis=shared)
    g.add("tanh", r, name="t")
    assert seen == []
    scene.set_graph(Graph())
    shared_graph.add("relu", shared_graph.node("y"), name="z")
    assert seen == ["shared"]
    scene.detach()


def top_level_imports(path: Path) -> list:
    """Modules imported by ``path`` when it runs (``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text("utf-8"))
    out = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def test_canvas_modules_import_downwards_only_and_at_the_top():
    modules = {p.stem: p for p in CANVAS.glob("*.py") if p.stem != "__init__"}
    assert set(modules) == set(RANKS)
    for name, path in modules.items():
        for mod in top_level_imports(path):
            if mod.startswith("widgets.canvas."):
                dep = mod.rsplit(".", 1)[1]
                assert RANKS[dep] < RANKS[name], f"{name} imports {dep}"
            assert not mod.startswith("app"), f"{name} imports {mod}"
        tree = ast.parse(path.read_text("utf-8"))
        local = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not local, f"{name} imports inside a function"


def test_showing_a_graph_works_out_each_cards_texts_once(qtbot, chain, monkeypatch):
    """opening a graph writes each card's title, parameters and shape once, not twice"""
    from widgets.canvas import NodeItem

    g, x, r = chain
    g.add("sigmoid", r, name="s")
    made = []
    texts = NodeItem._card_texts

    def counted(*args):
        made.append(args[0].id)
        return texts(*args)

    monkeypatch.setattr(NodeItem, "_card_texts", staticmethod(counted))
    scene = GraphScene(g)
    assert sorted(made) == sorted(g.nodes)
    assert scene.nodes[r.id].footer == "→ (B, 3)"
    scene.detach()


def test_a_cards_breakpoint_dot_is_made_when_it_is_first_shown(qtbot, chain):
    """cards carry no breakpoint dot until one is set (or the card is hovered)"""
    from widgets.canvas.items import BreakpointDot

    g, x, r = chain
    scene = GraphScene(g)

    def dots(nid):
        return [c for c in scene.nodes[nid].childItems() if isinstance(c, BreakpointDot)]

    assert dots(x.id) == [] and dots(r.id) == []
    scene.set_breakpoints([r.id])
    assert dots(x.id) == []
    assert [d.set for d in dots(r.id)] == [True]
    scene.set_breakpoints([])
    assert [d.set for d in dots(r.id)] == [False]
    scene.detach()


def test_cards_moved_together_update_their_wires_and_the_obstacle_map_once_at_the_end(qtbot):
    """moving many cards at once (a graph being laid out as it opens) defers the wires' and
    the obstacle map's update to the end of the batch, and then does all of it"""
    g = Graph()
    x = g.add("input", shape=(None, 3), name="x")
    r = g.add("relu", x, name="r")
    s = g.add("sigmoid", r, name="s")
    scene = GraphScene(g)
    scene.flush_edges()
    wire = scene.edges[g.edges[0]]
    before = wire.path.boundingRect()
    scene.obstacles(-1e6, 1e6, -1e6, 1e6)  # the obstacle map is made
    with scene.moving_many():
        with scene.moving_many():  # nested: merged into the outer batch
            g.move(x, (-600.0, 400.0))
        g.move(s, (900.0, -300.0))
        assert scene._dirty_edges == set()  # nothing re-routed card by card
    assert set(scene._dirty_edges) == set(scene.edges.values())
    scene.flush_edges()
    assert wire.path.boundingRect() != before
    # it starts at x's output port, on the right edge of x's card at its new place
    assert wire.path.boundingRect().left() == -600 + scene.nodes[x.id].width
    rects = scene.obstacles(-1e6, 1e6, -1e6, 1e6, margin=0.0).tolist()
    lefts = sorted(round(rect[0]) for rect in rects)
    assert -600 in lefts and 900 in lefts  # the map knows where the cards went
    scene.detach()
