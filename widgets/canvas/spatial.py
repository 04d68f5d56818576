"""A grid index over the cards' rectangles, so the wire router looks only at cards near a wire.

Plain NumPy and dicts, no Qt. The scene keeps one :class:`CardIndex` beside its
array of card rectangles (rows of left, top, right, bottom) and moves a card's
row when the card moves; a query returns the rows that may meet a box, in row
order, so filtering them gives exactly what a scan of every card gives.
"""

from __future__ import annotations

import math

import numpy as np

CELL = 400.0  # about two cards wide: a card sits in at most 2 × 2 cells
MAX_CELLS = 48  # a box over more cells than this is tested against every card (quicker)


class CardIndex:
    """The rows of ``rects`` (an (n, 4) array it shares with its owner) filed by grid cell.

    Attributes
    ----------
    examined : int
        How many rows the queries have handed out so far (how much the router looked at).
    """

    def __init__(self, rects: np.ndarray):
        self.rects = rects
        # the same rectangles as Python floats: a few near a short wire are quicker tested
        # one by one than through NumPy's per-call overhead
        self.boxes: list = [tuple(r) for r in rects.tolist()]
        self.cells: dict = {}
        self.spans: list = [None] * len(rects)
        self.examined = 0
        for row in range(len(rects)):
            self._file(row)

    @staticmethod
    def _span(l, t, r, b):
        """The cells a rectangle covers: (first column, last column, first row, last row)."""
        if not (math.isfinite(l) and math.isfinite(t) and math.isfinite(r) and math.isfinite(b)):
            return None
        return (math.floor(l / CELL), math.floor(r / CELL),
                math.floor(t / CELL), math.floor(b / CELL))

    def _file(self, row):
        span = self.spans[row] = self._span(*self.rects[row].tolist())
        if span is None:
            span = self.spans[row] = (0, 0, 0, 0)  # a card at infinity: kept, in cell 0
        cells = self.cells
        for cx in range(span[0], span[1] + 1):
            for cy in range(span[2], span[3] + 1):
                cells.setdefault((cx, cy), []).append(row)

    def move(self, row: int, rect):
        """Row ``row`` now holds ``rect`` (left, top, right, bottom)."""
        self.rects[row] = rect
        self.boxes[row] = tuple(float(v) for v in rect)
        span = self._span(*rect)
        if span == self.spans[row]:
            return  # still in the same cells (most frames of a drag)
        for cx in range(self.spans[row][0], self.spans[row][1] + 1):
            for cy in range(self.spans[row][2], self.spans[row][3] + 1):
                rows = self.cells[(cx, cy)]
                rows.remove(row)
                if not rows:
                    del self.cells[(cx, cy)]
        self._file(row)

    def rows(self, x0, x1, y0, y1):
        """Rows of the cards that may meet the box, ascending (a list); ``None``: every row.

        The box is grown by a cell on each side, so a card whose edge the caller's
        own test (with its margin and rounding) puts just inside is never missed.
        """
        span = self._span(x0, y0, x1, y1)
        if span is None:
            self.examined += len(self.rects)
            return None
        cx0, cx1, cy0, cy1 = span[0] - 1, span[1] + 1, span[2] - 1, span[3] + 1
        if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > min(MAX_CELLS, len(self.cells)):
            self.examined += len(self.rects)
            return None  # a long wire's box: one vectorised test of every card is quicker
        found = set()
        cells = self.cells
        for cx in range(cx0, cx1 + 1):
            for cy in range(cy0, cy1 + 1):
                rows = cells.get((cx, cy))
                if rows:
                    found.update(rows)
        out = sorted(found)
        self.examined += len(out)
        return out
