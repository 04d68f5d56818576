"""Automatic layered layout of a graph (left to right), in the Sugiyama style.

Steps: longest-path layering (sources pulled next to their first consumer),
dummy nodes on edges that skip layers so those edges get a free lane, barycentre
ordering sweeps to reduce crossings, then vertical placement by isotonic
regression: each node goes as close as possible to where its wires come from,
subject to the order in its column and a minimum gap, so chains come out as
straight lines and nothing overlaps. Weakly connected components are stacked.

Pure Python on top of networkx; sizes and port offsets come from the caller, so
the same code serves the window, the offscreen renderer and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx

from core.graph import Graph

H_GAP = 110.0     # between columns (room for the shape label on the wire)
V_GAP = 36.0      # between nodes of a column
DUMMY_H = 18.0    # lane reserved for a wire passing through a column
COMPONENT_GAP = 90.0
SWEEPS = 6
WRAP_AFTER = 24     # columns a network may have before it folds into rows
WRAP_ASPECT = 6.0   # ... and only if it is this many times wider than tall
MIN_ROW_COLUMNS = 12
ROW_GAP = 110.0     # between folded rows (the wire back to the next row runs here)


def _isotonic(values: list, weights: list) -> list:
    """Non-decreasing least-squares fit of ``values`` (pool adjacent violators)."""
    blocks = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            wt = w1 + w2
            blocks.append([(m1 * w1 + m2 * w2) / wt, wt, c1 + c2])
    out = []
    for m, _, c in blocks:
        out.extend([m] * c)
    return out


def layered_layout(graph: Graph, sizes: dict,
                   port_y: Callable[[str, str, bool], float] | None = None,
                   origin=(0.0, 0.0)) -> dict:
    """Positions (top-left corners) for every node of ``graph``.

    Parameters
    ----------
    graph : Graph
        The graph to arrange (it is not modified).
    sizes : dict
        node id -> (width, height) of its card.
    port_y : callable, optional
        ``port_y(node_id, port, is_output)`` -> vertical offset of a port from the
        card's top; defaults to the middle of the card.
    origin : (float, float)
        Where the top-left of the arrangement goes.

    Returns
    -------
    dict
        node id -> (x, y).
    """
    if not graph.nodes:
        return {}
    if port_y is None:
        def port_y(nid, _port, _out):
            return sizes[nid][1] / 2

    dg = graph.digraph()
    index = {nid: i for i, nid in enumerate(graph.nodes)}
    comps = sorted((sorted(c, key=index.__getitem__) for c in nx.weakly_connected_components(dg)),
                   key=lambda c: index[c[0]])
    # Big components first reads better: the main network on top, stray nodes below.
    comps.sort(key=lambda c: -len(c))
    positions = {}
    y0 = origin[1]
    width = 0.0
    loners = [c[0] for c in comps if len(c) == 1]
    for comp in comps:
        if len(comp) == 1:
            continue
        pos, height = _layout_component(graph, dg.subgraph(comp), comp, index, sizes, port_y)
        for nid, (x, y) in pos.items():
            positions[nid] = (origin[0] + x, y0 + y)
            width = max(width, x + sizes[nid][0])
        y0 += height + COMPONENT_GAP
    # unconnected nodes go in rows underneath, not in one tall column
    width = max(width, 4 * (max((sizes[n][0] for n in loners), default=0) + H_GAP / 2))
    x, row_h = 0.0, 0.0
    for nid in loners:
        w, h = sizes[nid]
        if x > 0 and x + w > width:
            x, y0 = 0.0, y0 + row_h + V_GAP
            row_h = 0.0
        positions[nid] = (origin[0] + x, y0)
        x += w + H_GAP / 2
        row_h = max(row_h, h)
    return positions


def _layout_component(graph, dg, comp, index, sizes, port_y):
    """Positions of one weakly connected component and the height it takes."""
    order = list(nx.lexicographical_topological_sort(dg, key=index.__getitem__))
    layer = _layers(dg, order)
    size = {n: sizes[n] for n in comp}
    segments = _segments(graph, layer, size, port_y)
    columns, ups, downs = _columns(order, layer, segments)
    _order_columns(columns, ups, downs)
    col_x = _column_x(columns, size)
    top = _place_vertically(columns, ups, downs, size)
    return _fold_rows(comp, layer, columns, col_x, top, size)


def _layers(dg, order) -> dict:
    """Longest-path column of each node, sources pulled next to their first consumer."""
    layer = {}
    for n in order:
        preds = list(dg.predecessors(n))
        layer[n] = max((layer[p] + 1 for p in preds), default=0)
    # Nodes without inputs (inputs, weights, targets) sit just before their first consumer.
    for n in reversed(order):
        if dg.in_degree(n) == 0 and dg.out_degree(n) > 0:
            layer[n] = min(layer[s] for s in dg.successors(n)) - 1
    low = min(layer.values())
    return {n: v - low for n, v in layer.items()}


def _segments(graph, layer, size, port_y) -> list:
    """Edges between real nodes, split through dummies where they skip columns.

    A segment is ``(upper, lower, src_port_y, dst_port_y)`` with offsets from tops; each
    dummy gets its column in ``layer`` and its lane in ``size``.
    """
    segments = []
    dummy_count = 0
    for e in graph.edges:
        if e.src not in layer or e.dst not in layer:
            continue
        sy = port_y(e.src, e.src_port, True)
        ty = port_y(e.dst, e.dst_port, False)
        a, b = layer[e.src], layer[e.dst]
        prev, prev_y = e.src, sy
        for lv in range(a + 1, b):
            d = ("~", dummy_count)
            dummy_count += 1
            layer[d] = lv
            size[d] = (0.0, DUMMY_H)
            segments.append((prev, d, prev_y, DUMMY_H / 2))
            prev, prev_y = d, DUMMY_H / 2
        segments.append((prev, e.dst, prev_y, ty))
    return segments


def _columns(order, layer, segments):
    """The nodes of each column (real ones in topological order, then dummies) and the
    neighbours of each node in the column to its left (``ups``) and right (``downs``)."""
    n_layers = max(layer.values()) + 1
    columns = [[] for _ in range(n_layers)]
    for n in order:
        columns[layer[n]].append(n)
    for d in layer:
        if isinstance(d, tuple):
            columns[layer[d]].append(d)
    ups = {n: [] for n in layer}
    downs = {n: [] for n in layer}
    for s, t, sy, ty in segments:
        downs[s].append((t, sy, ty))
        ups[t].append((s, sy, ty))
    return columns, ups, downs


def _order_columns(columns, ups, downs):
    """Barycentre sweeps that reorder each column in place to reduce crossings; ties stable."""
    n_layers = len(columns)
    rank = {}

    def renumber(col):
        for i, n in enumerate(col):
            rank[n] = i

    for col in columns:
        renumber(col)
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        seq = range(1, n_layers) if forward else range(n_layers - 2, -1, -1)
        for lv in seq:
            col = columns[lv]
            keys = {}
            for n in col:
                nbrs = ups[n] if forward else downs[n]
                if nbrs:
                    # the port offsets break ties so input 'a' sits above input 'b'
                    keys[n] = sum(rank[m] + 0.01 * (sy if forward else ty)
                                  for m, sy, ty in nbrs) / len(nbrs)
                else:
                    keys[n] = rank[n]
            col.sort(key=lambda n, k=keys: k[n])
            renumber(col)


def _column_x(columns, size) -> list:
    """``(x, width)`` of each column: columns side by side, ``H_GAP`` apart."""
    col_x = []
    x = 0.0
    for col in columns:
        width = max((size[n][0] for n in col), default=0.0)
        col_x.append((x, width))
        x += width + H_GAP
    return col_x


def _place_vertically(columns, ups, downs, size) -> dict:
    """Top of each node: isotonic placement, alternating directions, then both."""
    top = {}
    for col in columns:
        y = 0.0
        for n in col:
            top[n] = y
            y += size[n][1] + (V_GAP if not isinstance(n, tuple) else V_GAP / 2)

    def place(col, use_up, use_down):
        desired, weights, offsets = [], [], []
        off = 0.0
        for i, n in enumerate(col):
            want = []
            if use_up:
                want += [top[m] + sy - ty for m, sy, ty in ups[n]]
            if use_down:
                want += [top[m] + ty - sy for m, sy, ty in downs[n]]
            desired.append(sum(want) / len(want) if want else top[n])
            weights.append(float(len(want)) if want else 0.05)
            offsets.append(off)
            gap = V_GAP if not isinstance(n, tuple) else V_GAP / 2
            if i + 1 < len(col) and isinstance(col[i + 1], tuple) and isinstance(n, tuple):
                gap = V_GAP / 3
            off += size[n][1] + gap
        fitted = _isotonic([d - o for d, o in zip(desired, offsets)], weights)
        for n, z, o in zip(col, fitted, offsets):
            top[n] = z + o

    for sweep in range(SWEEPS):
        if sweep % 2 == 0:
            for col in columns[1:]:
                place(col, True, False)
        else:
            for col in reversed(columns[:-1]):
                place(col, False, True)
    for col in columns:
        place(col, True, True)
    return top


def _fold_rows(comp, layer, columns, col_x, top, size):
    """Final positions of the real nodes, folding a thin ribbon into rows; and the height."""
    n_layers = len(columns)
    ys = [top[n] for n in top]
    shift = -min(ys)
    bottom = max(top[n] + size[n][1] for n in top) + shift
    # Very long networks (VGG-16 has 42 columns) fold into rows read like text, so
    # that fitting them to a window leaves the cards big enough to read.
    width = col_x[-1][0] + col_x[-1][1]
    rows = 1
    if n_layers > WRAP_AFTER and width > WRAP_ASPECT * max(bottom, 1.0):
        # a thin ribbon: fold it into the number of rows that looks most like a page
        def aspect(r):
            return (width / r) / (bottom * r + ROW_GAP * (r - 1))
        rows = min(range(2, max(2, n_layers // MIN_ROW_COLUMNS) + 1),
                   key=lambda r: abs(aspect(r) - 2.0))
    per_row = math.ceil(n_layers / rows)
    row_x = [0.0] * n_layers
    for lv in range(n_layers):
        first = lv - lv % per_row
        row_x[lv] = col_x[lv][0] - col_x[first][0]
    pos = {}
    for n in comp:
        lv = layer[n]
        cw = col_x[lv][1]
        dy = (lv // per_row) * (bottom + ROW_GAP)
        pos[n] = (round(row_x[lv] + (cw - size[n][0]) / 2, 1), round(top[n] + shift + dy, 1))
    return pos, bottom * rows + ROW_GAP * (rows - 1)
