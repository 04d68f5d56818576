"""Automatic layered layout of a graph (left to right), in the Sugiyama style.

Steps: longest-path layering (sources pulled next to their first consumer),
dummy nodes on edges that skip layers so those edges get a free lane, barycentre
ordering sweeps to reduce crossings, then vertical placement by isotonic
regression: each node goes as close as possible to where its wires come from,
subject to the order in its column and a minimum gap, so chains come out as
straight lines and nothing overlaps. Weakly connected components are stacked.

Pure Python, without networkx (slow to import, and slower to walk than plain
dicts); sizes and port offsets come from the caller, so the same code serves the
window, the offscreen renderer and the tests.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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
    if all(a <= b for a, b in zip(values, values[1:])):
        return list(values)  # already in order (most columns once the sweeps settle)
    means, wts, counts = [], [], []  # the blocks, in three lists (no list per block)
    for v, w in zip(values, weights):
        m, wt, c = v, w, 1
        while means and means[-1] > m:
            m1, w1 = means.pop(), wts.pop()
            total = w1 + wt
            m = (m1 * w1 + m * wt) / total
            wt = total
            c += counts.pop()
        means.append(m)
        wts.append(wt)
        counts.append(c)
    out = []
    for m, c in zip(means, counts):
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

    index = {nid: i for i, nid in enumerate(graph.nodes)}
    succ, pred = _neighbours(graph)
    comps = sorted((sorted(c, key=index.__getitem__) for c in _components(graph, succ, pred)),
                   key=lambda c: index[c[0]])
    # Big components first reads better: the main network on top, stray nodes below.
    comps.sort(key=lambda c: -len(c))
    positions = {}
    y0 = origin[1]
    width = 0.0
    loners = [c[0] for c in comps if len(c) == 1]
    edges_of = {}  # each component's edges, in the graph's order
    for e in graph.edges:
        edges_of.setdefault(e.src, []).append(e)
    rank = _edge_rank(graph)  # made once: per component it cost a pass over all edges each
    for comp in comps:
        if len(comp) == 1:
            continue
        edges = sorted((e for n in comp for e in edges_of.get(n, ())), key=rank)
        pos, height = _layout_component(edges, succ, pred, comp, index, sizes, port_y)
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


def _neighbours(graph):
    """Each node's distinct successors and predecessors, in the order the edges come."""
    succ = {nid: {} for nid in graph.nodes}
    pred = {nid: {} for nid in graph.nodes}
    for e in graph.edges:
        succ[e.src][e.dst] = None
        pred[e.dst][e.src] = None
    return succ, pred


def _components(graph, succ, pred) -> list:
    """The weakly connected components, as lists of node ids."""
    seen, comps = set(), []
    for start in graph.nodes:
        if start in seen:
            continue
        seen.add(start)
        comp, stack = [], [start]
        while stack:
            n = stack.pop()
            comp.append(n)
            for m in (*succ[n], *pred[n]):
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        comps.append(comp)
    return comps


def _edge_rank(graph):
    """Sort key putting edges back in the graph's order."""
    rank = {id(e): i for i, e in enumerate(graph.edges)}
    return lambda e: rank[id(e)]


def _topological(comp, succ, pred, index) -> list:
    """Topological order, the node added first going first whenever there is a choice."""
    waiting = {n: len(pred[n]) for n in comp}
    ready = [(index[n], n) for n in comp if not waiting[n]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for m in succ[n]:
            waiting[m] -= 1
            if not waiting[m]:
                heapq.heappush(ready, (index[m], m))
    if len(order) < len(comp):
        raise ValueError("the graph has a cycle: it cannot be laid out in layers")
    return order


def _layout_component(edges, succ, pred, comp, index, sizes, port_y):
    """Positions of one weakly connected component and the height it takes."""
    order = _topological(comp, succ, pred, index)
    layer = _layers(succ, pred, order)
    size = {n: sizes[n] for n in comp}
    segments = _segments(edges, layer, size, port_y)
    columns, ups, downs = _columns(order, layer, segments)
    _order_columns(columns, ups, downs)
    col_x = _column_x(columns, size)
    top = _place_vertically(columns, ups, downs, size)
    return _fold_rows(comp, layer, columns, col_x, top, size)


def _layers(succ, pred, order) -> dict:
    """Longest-path column of each node, sources pulled next to their first consumer."""
    layer = {}
    for n in order:
        layer[n] = max((layer[p] + 1 for p in pred[n]), default=0)
    # Nodes without inputs (inputs, weights, targets) sit just before their first consumer.
    for n in reversed(order):
        if not pred[n] and succ[n]:
            layer[n] = min(layer[s] for s in succ[n]) - 1
    low = min(layer.values())
    return {n: v - low for n, v in layer.items()}


def _segments(edges, layer, size, port_y) -> list:
    """Edges between real nodes, split through dummies where they skip columns.

    A segment is ``(upper, lower, src_port_y, dst_port_y)`` with offsets from tops; each
    dummy gets its column in ``layer`` and its lane in ``size``.
    """
    segments = []
    dummy_count = 0
    for e in edges:
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


SMALL_COLUMN = 24  # columns up to this size are walked node by node (arrays cost more there)


def _numbered(columns):
    """Every node of the columns in one list, and each column as a list of indices into it.

    The sweeps below run on arrays for long columns: most nodes there (every dummy,
    most of a chain) have one neighbour per side, and those are handled a column at
    a time, the same arithmetic in the same order as one by one.
    """
    nodes = [n for col in columns for n in col]
    ids = {n: i for i, n in enumerate(nodes)}
    return nodes, ids, [[ids[n] for n in col] for col in columns]


def _table(wants):
    """Arrays over all nodes: how many neighbours, and the first one's entry."""
    count = np.array([len(w) for w in wants], dtype=np.intp)
    first = [w[0] if w else (0, 0.0, 0.0) for w in wants]
    return (count, np.array([f[0] for f in first], dtype=np.intp),
            np.array([f[1] for f in first]), np.array([f[2] for f in first]))


def _order_columns(columns, ups, downs):
    """Barycentre sweeps that reorder each column in place to reduce crossings; ties stable."""
    n_layers = len(columns)
    nodes, ids, cols = _numbered(columns)
    rank = np.zeros(len(nodes))
    for c in cols:
        rank[c] = np.arange(len(c))
    # the port offsets break ties so input 'a' sits above input 'b'
    wants = ([[(ids[m], 0.01 * sy, 0.0) for m, sy, _ty in ups[n]] for n in nodes],
             [[(ids[m], 0.01 * ty, 0.0) for m, _sy, ty in downs[n]] for n in nodes])
    tables = [None, None]
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        seq = range(1, n_layers) if forward else range(n_layers - 2, -1, -1)
        side = 0 if forward else 1
        want = wants[side]
        for lv in seq:
            c = cols[lv]
            if len(c) < 2:
                continue  # one node: nothing to reorder
            if len(c) <= SMALL_COLUMN:
                get = rank.item
                keys = []
                for i in c:
                    nbrs = want[i]
                    if len(nbrs) == 1:
                        keys.append(get(nbrs[0][0]) + nbrs[0][1])
                    elif nbrs:
                        keys.append(sum(get(m) + w for m, w, _ in nbrs) / len(nbrs))
                    else:
                        keys.append(get(i))
                if len(c) == 2:  # most columns hold one or two nodes
                    if keys[1] < keys[0]:
                        c = cols[lv] = [c[1], c[0]]
                        rank[c[0]], rank[c[1]] = 0, 1
                    continue
                c = cols[lv] = [c[j] for j in sorted(range(len(c)), key=keys.__getitem__)]
            else:
                if tables[side] is None:
                    tables[side] = _table(want)
                count, first, value, _ = tables[side]
                ca = np.array(c, dtype=np.intp)
                k = count[ca]
                keys = rank[ca]  # no neighbour on that side: stays where it is
                one = k == 1
                keys[one] = rank[first[ca[one]]] + value[ca[one]]
                for j in np.flatnonzero(k > 1).tolist():
                    nbrs = want[c[j]]
                    keys[j] = sum(rank[m] + w for m, w, _ in nbrs) / len(nbrs)
                c = cols[lv] = ca[np.argsort(keys, kind="stable")].tolist()
            rank[c] = np.arange(len(c))
    for lv, c in enumerate(cols):
        columns[lv][:] = [nodes[i] for i in c]


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
    nodes, ids, cols = _numbered(columns)
    top = np.zeros(len(nodes))
    for col, c in zip(columns, cols):
        y, ys = 0.0, []
        for n in col:
            ys.append(y)
            y += size[n][1] + (V_GAP if not isinstance(n, tuple) else V_GAP / 2)
        top[c] = ys
    # each node's distance below the first of its column if packed tight: fixed, as the
    # order in a column no longer changes
    offsets_of = []
    for col in columns:
        offsets, off = [], 0.0
        for i, n in enumerate(col):
            offsets.append(off)
            gap = V_GAP if not isinstance(n, tuple) else V_GAP / 2
            if i + 1 < len(col) and isinstance(col[i + 1], tuple) and isinstance(n, tuple):
                gap = V_GAP / 3
            off += size[n][1] + gap
        offsets_of.append(offsets)
    # what pulls each node: (neighbour, a, b), the node's top would be top[neighbour] + a - b
    up_w = [[(ids[m], sy, ty) for m, sy, ty in ups[n]] for n in nodes]
    down_w = [[(ids[m], ty, sy) for m, sy, ty in downs[n]] for n in nodes]
    modes = {(True, False): up_w, (False, True): down_w,
             (True, True): [u + d for u, d in zip(up_w, down_w)]}
    tables = {}

    def place(lv, use_up, use_down):
        c, offsets = cols[lv], offsets_of[lv]
        wants = modes[use_up, use_down]
        if len(c) <= SMALL_COLUMN:
            get = top.item  # a Python float: quicker than NumPy's scalars one by one
            values, weights = [], []
            for i, o in zip(c, offsets):
                want = wants[i]
                if len(want) == 1:
                    m, a, b = want[0]
                    values.append(get(m) + a - b - o)
                elif want:
                    values.append(sum([get(m) + a - b for m, a, b in want]) / len(want) - o)
                else:
                    values.append(get(i) - o)
                weights.append(float(len(want)) if want else 0.05)
            if len(c) == 2 and values[0] > values[1]:
                # most columns hold one or two nodes: the pool of two, as _isotonic makes it
                (v0, v1), (w0, w1) = values, weights
                v = (v0 * w0 + v1 * w1) / (w0 + w1)
                values = [v, v]
            elif len(c) > 2:
                values = _isotonic(values, weights)
            for i, z, o in zip(c, values, offsets):
                top[i] = z + o
            return
        if (use_up, use_down) not in tables:
            tables[use_up, use_down] = _table(wants)
        count, first, a, b = tables[use_up, use_down]
        ca, oa = np.array(c, dtype=np.intp), np.array(offsets)
        k = count[ca]
        desired = top[ca]  # no wire: stays where it is
        one = k == 1
        f = ca[one]
        desired[one] = top[first[f]] + a[f] - b[f]
        for j in np.flatnonzero(k > 1).tolist():
            want = wants[c[j]]
            desired[j] = sum([top[m] + a_ - b_ for m, a_, b_ in want]) / len(want)
        values = desired - oa
        if not (values[:-1] <= values[1:]).all():
            weights = np.where(k > 0, k, 0.05).tolist()
            values = np.array(_isotonic(values.tolist(), weights))
        top[ca] = values + oa

    n_layers = len(columns)
    for sweep in range(SWEEPS):
        if sweep % 2 == 0:
            for lv in range(1, n_layers):
                place(lv, True, False)
        else:
            for lv in range(n_layers - 2, -1, -1):
                place(lv, False, True)
    for lv in range(n_layers):
        place(lv, True, True)
    return dict(zip(nodes, top.tolist()))


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
