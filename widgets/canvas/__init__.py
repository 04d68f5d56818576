"""The node canvas: a scene mirroring the graph model, its items, and the view.

The package's face: the names the window, the palette, the examples dialog,
the picture renderer and the tests import. The modules, lowest first:
``routing`` (wire curves), ``spatial`` (the grid index of card rectangles the
router asks), ``wires`` (ports and wires), ``items`` (cards), ``overlays`` (the
dragged wire), ``stepping`` (values and gradients while stepping), ``lod`` (level
of detail), ``scene`` (model sync, gestures), ``overview`` (the map panel) and
``view`` (zoom, pan, drops).
"""

from widgets.canvas.items import GRID, HEADER_H, NODE_MAX_W, NODE_MIN_W, OP_MIME, NodeItem
from widgets.canvas.lod import (
    BOUNDS_STEP,
    DETAIL_LOD,
    PIXMAP_CACHE_KB,
    READABLE_ZOOM,
    REFINE_PER_FRAME,
    SHARPEN_PER_FRAME,
    ZOOMING_CARDS,
    OverviewItem,
)
from widgets.canvas.overview import Minimap
from widgets.canvas.scene import GraphScene, paint_scene, render_scene
from widgets.canvas.stepping import SteppingOverlay
from widgets.canvas.view import GraphView
from widgets.canvas.wires import EdgeItem, Port

__all__ = [
    "BOUNDS_STEP",
    "DETAIL_LOD",
    "GRID",
    "HEADER_H",
    "NODE_MAX_W",
    "NODE_MIN_W",
    "OP_MIME",
    "PIXMAP_CACHE_KB",
    "READABLE_ZOOM",
    "REFINE_PER_FRAME",
    "SHARPEN_PER_FRAME",
    "ZOOMING_CARDS",
    "EdgeItem",
    "GraphScene",
    "GraphView",
    "Minimap",
    "NodeItem",
    "OverviewItem",
    "Port",
    "SteppingOverlay",
    "paint_scene",
    "render_scene",
]
