"""Wire routing: smooth curves from port to port, detouring through free lanes.

Plain geometry on NumPy arrays and Qt's value types. ``scene`` is duck-typed:
anything with ``obstacles(x0, x1, y0, y1, exclude, margin)`` returning card
rectangles as rows of left, top, right, bottom.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QPainterPath

_T = np.linspace(0.0, 1.0, 25)
_B = np.stack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T ** 2, _T ** 3], axis=1)


def _cubic_points(p0, c1, c2, p3):
    """25 points along a cubic Bézier, as an (n, 2) array."""
    ctrl = np.array([[p0.x(), p0.y()], [c1.x(), c1.y()], [c2.x(), c2.y()], [p3.x(), p3.y()]])
    return _B @ ctrl


_B_FROM = _B[:, 0] + _B[:, 1]  # weight of the first two control points' common y
_B_TO = _B[:, 2] + _B[:, 3]    # weight of the last two control points' common y


def _first_free_lane(lanes, xs1, y_start, xs2, y_end, rects):
    """Index of the first lane whose two turns miss every rectangle, or ``None``.

    A detour leaves ``y_start`` and reaches the lane along a cubic whose control
    points have the x coordinates ``xs1`` and the y coordinates (y_start,
    y_start, lane, lane); it leaves the lane along ``xs2`` with (lane, lane,
    y_end, y_end). All lanes are tested at once (a frame while dragging a card
    re-routes its wires; one lane at a time took milliseconds per wire).
    """
    if not len(lanes):
        return None
    if not len(rects):
        return 0
    lanes = np.asarray(lanes, dtype=float)[:, None]
    l, t, r, b = (rects[:, i] for i in range(4))
    free = np.ones(len(lanes), dtype=bool)
    for xs, ys in ((xs1, _B_FROM * y_start + _B_TO * lanes),
                   (xs2, _B_FROM * lanes + _B_TO * y_end)):
        x = (_B @ np.asarray(xs, dtype=float))[:, None]         # (points, 1)
        # only the (point, card) pairs whose x overlap are tested against every lane's y:
        # few of them, where a (lanes, points, cards) block would be mostly misses
        point, card = np.nonzero((x > l) & (x < r))
        if len(point):
            y = ys[:, point]                                      # (lanes, pairs)
            free &= ~((y > t[card]) & (y < b[card])).any(axis=1)
    hit = np.flatnonzero(free)
    return int(hit[0]) if len(hit) else None


def _nearest(lanes, cost, k=40):
    """The ``k`` lanes of least cost, cheapest first, ties in their order (a stable sort's
    first ``k``, without sorting the thousands of lanes a long wire can see)."""
    if len(lanes) > k:
        kth = np.partition(cost, k - 1)[k - 1]
        near = np.flatnonzero(cost <= kth)
        return lanes[near[np.argsort(cost[near], kind="stable")][:k]]
    return lanes[np.argsort(cost, kind="stable")]


def _hits(points, rects) -> bool:
    """Whether any point lies strictly inside any rectangle (rows of left, top, right, bottom)."""
    if not len(rects) or not len(points):
        return False
    x = points[:, 0:1]
    y = points[:, 1:2]
    inside = ((x > rects[:, 0]) & (x < rects[:, 2]) & (y > rects[:, 1]) & (y < rects[:, 3]))
    return bool(inside.any())



def default_curve(p1: QPointF, p2: QPointF):
    """The plain wire's four control points; it bows out further when it runs backwards."""
    dx = abs(p2.x() - p1.x())
    k = max(36.0, dx * 0.5) if p2.x() >= p1.x() else max(80.0, dx * 0.35)
    return p1, QPointF(p1.x() + k, p1.y()), QPointF(p2.x() - k, p2.y()), p2


CELL = 400.0  # the grid step of plain_is_clear's join of curve points to cards
STRAIGHT = 60.0  # a forward wire shorter than this is drawn plain without a look (see route)


def plain_is_clear(ends: np.ndarray, cards: np.ndarray, own: np.ndarray) -> np.ndarray:
    """For many wires at once: whether :func:`route` would find the plain curve clear.

    ``ends`` holds rows of x1, y1, x2, y2 (the ports), ``cards`` rows of left, top,
    right, bottom, ``own`` each wire's two card rows (left out, as ``route``'s
    ``exclude``). True only for a forward wire of at least ``STRAIGHT`` whose plain
    curve meets no card the way ``route`` tests it (same points, margin and box);
    False means "ask ``route``". Points and cards meet through a grid, so the work
    grows with the wires, not wires × cards (opening a graph checks thousands).
    """
    n = len(ends)
    out = np.zeros(n, dtype=bool)
    if not n:
        return out
    x1, y1, x2, y2 = (ends[:, i] for i in range(4))
    fwd = np.flatnonzero(x2 - x1 >= STRAIGHT)
    if not len(fwd) or not np.isfinite(ends[fwd]).all():
        return out
    if not len(cards):
        out[fwd] = True
        return out
    if not np.isfinite(cards).all():
        return out  # a card at infinity: leave every wire to route
    m = 8.0  # route's first look: cards grown by 8, in the box of the wire's span
    grown = np.column_stack([cards[:, 0] - m, cards[:, 1] - m, cards[:, 2] + m,
                             cards[:, 3] + m])
    # the plain curve's control points, as default_curve makes them (forward wires)
    e = ends[fwd]
    k = np.maximum(36.0, np.abs(e[:, 2] - e[:, 0]) * 0.5)
    ctrl = np.empty((len(fwd), 4, 2))
    ctrl[:, 0] = e[:, 0:2]
    ctrl[:, 1, 0], ctrl[:, 1, 1] = e[:, 0] + k, e[:, 1]
    ctrl[:, 2, 0], ctrl[:, 2, 1] = e[:, 2] - k, e[:, 3]
    ctrl[:, 3] = e[:, 2:4]
    pts = (_B @ ctrl).reshape(-1, 2)  # per wire the same product as _cubic_points makes
    wire = np.repeat(np.arange(len(fwd)), len(_B))

    def key(cx, cy):
        return (cx + (1 << 24)) * (1 << 26) + (cy + (1 << 24))

    # every grid cell each grown card covers, sorted by cell
    c0 = np.floor(grown[:, 0] / CELL).astype(np.int64)
    c1 = np.floor(grown[:, 2] / CELL).astype(np.int64)
    r0 = np.floor(grown[:, 1] / CELL).astype(np.int64)
    r1 = np.floor(grown[:, 3] / CELL).astype(np.int64)
    ny = r1 - r0 + 1
    count = (c1 - c0 + 1) * ny
    card = np.repeat(np.arange(len(cards)), count)
    step = np.arange(len(card)) - np.repeat(np.cumsum(count) - count, count)
    cell = key(c0[card] + step // ny[card], r0[card] + step % ny[card])
    order = np.argsort(cell, kind="stable")
    cell, card = cell[order], card[order]
    # each point against the cards filed in its cell (a point inside a card is in one)
    pk = key(np.floor(pts[:, 0] / CELL).astype(np.int64),
             np.floor(pts[:, 1] / CELL).astype(np.int64))
    lo = np.searchsorted(cell, pk, "left")
    many = np.searchsorted(cell, pk, "right") - lo
    pt = np.repeat(np.arange(len(pts)), many)
    cd = card[lo[pt] + np.arange(len(pt)) - np.repeat(np.cumsum(many) - many, many)]
    g, w = grown[cd], fwd[wire[pt]]
    x, y = pts[pt, 0], pts[pt, 1]
    hit = ((x > g[:, 0]) & (x < g[:, 2]) & (y > g[:, 1]) & (y < g[:, 3])
           & (g[:, 2] > x1[w] + 2) & (g[:, 0] < x2[w] - 2)
           & (cd != own[w, 0]) & (cd != own[w, 1]))
    blocked = np.zeros(n, dtype=bool)
    blocked[w[hit]] = True
    out[fwd] = ~blocked[fwd]
    return out


def plain_path(p1: QPointF, p2: QPointF) -> QPainterPath:
    """The plain wire (``default_curve``) as a path, whatever cards it crosses."""
    a, c1, c2, b = default_curve(p1, p2)
    path = QPainterPath(a)
    path.cubicTo(c1, c2, b)
    return path


def route(scene, p1: QPointF, p2: QPointF, exclude=()) -> QPainterPath:
    """A smooth wire from ``p1`` to ``p2``; goes through a free lane if cards are in the way."""
    a, c1, c2, b = default_curve(p1, p2)
    path = QPainterPath(a)
    path.cubicTo(c1, c2, b)
    if scene is not None and p2.x() < p1.x() - 20:
        return _route_back(scene, p1, p2, exclude) or path
    if scene is None or p2.x() - p1.x() < 60:
        return path
    top, bottom = min(p1.y(), p2.y()), max(p1.y(), p2.y())
    rects = scene.obstacles(p1.x() + 2, p2.x() - 2, top - 60, bottom + 60, exclude, margin=8)
    if not _hits(_cubic_points(a, c1, c2, b), rects):
        return path
    # Candidate lanes: just above or below each card in the way, nearest first.
    rects = scene.obstacles(p1.x() + 2, p2.x() - 2, top - 1200, bottom + 1200, exclude,
                            margin=10)
    lanes = np.concatenate([[p1.y(), p2.y()], rects[:, 1] - 4, rects[:, 3] + 4])
    cost = np.abs(lanes - p1.y()) + np.abs(lanes - p2.y())
    span = p2.x() - p1.x()
    ramp = min(70.0, span / 3)
    q1x, q2x = p1.x() + ramp * 1.6, p2.x() - ramp * 1.6
    if q2x < q1x:
        return path
    # nearest lanes first, skipping those whose straight middle part crosses a card
    cand = _nearest(lanes, cost)
    mid = rects[(rects[:, 2] > q1x) & (rects[:, 0] < q2x)]
    if len(mid):
        cand = cand[~((mid[:, 1] < cand[:, None]) & (mid[:, 3] > cand[:, None])).any(axis=1)]
    i = _first_free_lane(cand, (p1.x(), p1.x() + ramp, q1x - ramp, q1x), p1.y(),
                         (q2x, q2x + ramp, p2.x() - ramp, p2.x()), p2.y(), rects)
    if i is not None:
        lane = float(cand[i])
        q1, q2 = QPointF(q1x, lane), QPointF(q2x, lane)
        path = QPainterPath(p1)
        path.cubicTo(QPointF(p1.x() + ramp, p1.y()), QPointF(q1x - ramp, lane), q1)
        path.lineTo(q2)
        path.cubicTo(QPointF(q2x + ramp, lane), QPointF(p2.x() - ramp, p2.y()), p2)
        return path
    return path


def _route_back(scene, p1: QPointF, p2: QPointF, exclude):
    """A wire to a port on the left (the next row of a folded network): out to the right,
    back along a free lane between the cards, and in from the left. ``None`` if no lane."""
    k = 36.0
    x_lo, x_hi = p2.x() - 2 * k, p1.x() + 2 * k
    top, bottom = min(p1.y(), p2.y()), max(p1.y(), p2.y())
    rects = scene.obstacles(x_lo, x_hi, top - 600, bottom + 600, exclude, margin=10)
    mid = (p1.y() + p2.y()) / 2
    lanes = np.concatenate([[mid], rects[:, 1] - 4, rects[:, 3] + 4]) if len(rects) else \
        np.array([mid])
    cand = _nearest(lanes, np.abs(lanes - mid))
    if len(rects):
        across = (rects[:, 2] > x_lo) & (rects[:, 0] < x_hi)
        cand = cand[~((rects[:, 1] < cand[:, None]) & (rects[:, 3] > cand[:, None])
                      & across).any(axis=1)]
    i = _first_free_lane(cand, (p1.x(), p1.x() + 2 * k, p1.x() + 2 * k, p1.x()), p1.y(),
                         (p2.x(), p2.x() - 2 * k, p2.x() - 2 * k, p2.x()), p2.y(), rects)
    if i is not None:
        lane = float(cand[i])
        q1, q2 = QPointF(p1.x(), lane), QPointF(p2.x(), lane)
        turn1 = (p1, QPointF(p1.x() + 2 * k, p1.y()), QPointF(p1.x() + 2 * k, lane), q1)
        turn2 = (q2, QPointF(p2.x() - 2 * k, lane), QPointF(p2.x() - 2 * k, p2.y()), p2)
        path = QPainterPath(p1)
        path.cubicTo(*turn1[1:])
        path.lineTo(q2)
        path.cubicTo(*turn2[1:])
        return path
    return None

