"""Colours, fonts and the Qt style sheet of the light and dark themes.

The model holds no colours; every view asks the current :class:`Theme`. A theme is
plain data so the offscreen renderer and the window draw identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtGui import QColor, QPalette

# heat-map colour maps as control points (interpolated by :meth:`Theme.heat_table`)
VIRIDIS = ("#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d", "#27ad81", "#5cc863",
           "#aadc32", "#fde725")
DIVERGING_LIGHT = ("#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7",
                   "#f4a582", "#d6604d", "#b2182b")
# a dark centre on a dark panel: zero is quiet, both signs glow
DIVERGING_DARK = ("#67a9e8", "#3f7fc0", "#2a5786", "#1f3650", "#202226", "#4d2a26",
                  "#84392f", "#c4513c", "#f2785c")


@dataclass(frozen=True)
class Theme:
    """Every colour the canvas and the panels use, by role."""

    name: str
    dark: bool
    canvas: str
    grid_minor: str
    grid_major: str
    node_body: str
    node_border: str
    node_shadow: str
    text: str
    muted: str
    edge: str
    edge_label_bg: str
    edge_label_text: str
    selection: str
    ok: str
    error: str
    warning: str
    window: str
    panel: str
    base: str
    alt_base: str
    accent: str
    categories: dict = field(default_factory=dict)
    # stepping: values above the wires, gradients below in a contrasting colour; the
    # gradient ramp runs from vanishing (faint) to exploding (glowing)
    value: str = "#1f5fbf"
    gradient: str = "#c2410c"
    grad_faint: str = "#e9c9b4"
    grad_hot: str = "#e0115f"
    current: str = "#2f7cf6"
    # heat maps: values on a sequential map, gradients on a diverging one centred on zero
    heat_values: tuple = VIRIDIS
    heat_signed: tuple = DIVERGING_LIGHT

    def color(self, role: str) -> QColor:
        """The colour of ``role`` (an attribute name) as a :class:`QColor` (a copy)."""
        key = (self.name, role)
        c = _COLORS.get(key)
        if c is None:
            # parsing colour names on every paint is measurable with hundreds of cards
            c = _COLORS[key] = QColor(getattr(self, role))
        return QColor(c)

    def category_color(self, category: str) -> QColor:
        key = (self.name, "category:" + category)
        c = _COLORS.get(key)
        if c is None:
            c = _COLORS[key] = QColor(self.categories.get(category, self.accent))
        return QColor(c)


    def heat_table(self, signed: bool, n: int = 255) -> np.ndarray:
        """The heat map's ``n`` RGB rows (uint8, shape (n, 3)): :attr:`heat_signed` for
        gradients (``signed``), :attr:`heat_values` for values."""
        key = (self.name, "heat", signed, n)
        table = _COLORS.get(key)
        if table is None:
            table = _COLORS[key] = colour_table(self.heat_signed if signed
                                                else self.heat_values, n)
        return table


def colour_table(stops, n: int = 255) -> np.ndarray:
    """``n`` RGB rows interpolated through the colour ``stops`` (uint8, shape (n, 3))."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in stops], np.float64)
    x = np.linspace(0, 1, len(stops))
    t = np.linspace(0, 1, n)
    table = np.stack([np.interp(t, x, rgb[:, k]) for k in range(3)], axis=1)
    table = table.round().astype(np.uint8)
    table.flags.writeable = False  # shared by every caller
    return table


_COLORS: dict = {}


LIGHT = Theme(
    name="light", dark=False,
    canvas="#f4f5f7", grid_minor="#e6e8ec", grid_major="#d5d9e0",
    node_body="#ffffff", node_border="#c4c9d2", node_shadow="#1f283a",
    text="#1d2330", muted="#667085", edge="#7b8494", edge_label_bg="#ffffff",
    edge_label_text="#3d4555", selection="#2f7cf6", ok="#1f9d55", error="#d92d20",
    warning="#dc6803", window="#eceef1", panel="#f7f8fa", base="#ffffff", alt_base="#f2f4f7",
    accent="#2f7cf6",
    categories={"inputs": "#2e9d6b", "math": "#3a72d8", "activations": "#e08a1e",
                "layers": "#8758d6", "losses": "#d4443b", "regularization": "#8a7a3c"},
)

DARK = Theme(
    name="dark", dark=True,
    canvas="#1c1f24", grid_minor="#23272d", grid_major="#2b3037",
    node_body="#2b2f36", node_border="#3c424b", node_shadow="#000000",
    text="#e6e9ee", muted="#9aa3b0", edge="#8d96a3", edge_label_bg="#2b2f36",
    edge_label_text="#cdd3dc", selection="#4c9aff", ok="#3ccf7e", error="#ff5d52",
    warning="#f5a524", window="#22252a", panel="#26292f", base="#1e2126", alt_base="#24282e",
    accent="#4c9aff",
    categories={"inputs": "#3fb984", "math": "#5b8fec", "activations": "#eb9a34",
                "layers": "#a07ae8", "losses": "#e8605a", "regularization": "#b7a25a"},
    value="#7fb2ff", gradient="#ff9b5e", grad_faint="#5a4a40", grad_hot="#ff4f9a",
    current="#4c9aff", heat_signed=DIVERGING_DARK,
)

THEMES = {"light": LIGHT, "dark": DARK}


def get_theme(name: str) -> Theme:
    """The theme called ``name`` (``"light"`` or ``"dark"``); unknown names give light."""
    return THEMES.get(name, LIGHT)


def qpalette(theme: Theme) -> QPalette:
    """A Fusion palette matching ``theme`` (menus, dialogs, scroll bars)."""
    p = QPalette()
    c = QColor
    p.setColor(QPalette.Window, c(theme.window))
    p.setColor(QPalette.WindowText, c(theme.text))
    p.setColor(QPalette.Base, c(theme.base))
    p.setColor(QPalette.AlternateBase, c(theme.alt_base))
    p.setColor(QPalette.ToolTipBase, c(theme.panel))
    p.setColor(QPalette.ToolTipText, c(theme.text))
    p.setColor(QPalette.Text, c(theme.text))
    p.setColor(QPalette.Button, c(theme.panel))
    p.setColor(QPalette.ButtonText, c(theme.text))
    p.setColor(QPalette.BrightText, c(theme.error))
    p.setColor(QPalette.Highlight, c(theme.accent))
    p.setColor(QPalette.HighlightedText, c("#ffffff"))
    p.setColor(QPalette.Link, c(theme.accent))
    p.setColor(QPalette.PlaceholderText, c(theme.muted))
    p.setColor(QPalette.Mid, c(theme.node_border))
    p.setColor(QPalette.Midlight, c(theme.grid_major))
    p.setColor(QPalette.Dark, c(theme.node_border))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, c(theme.muted))
    return p


def style_sheet(theme: Theme) -> str:
    """The application style sheet: quiet panels, clear focus, readable headers."""
    t = theme
    return f"""
QMainWindow::separator {{ background: {t.window}; width: 4px; height: 4px; }}
QDockWidget {{ font-weight: 600; }}
QDockWidget::title {{ background: {t.window}; padding: 6px 8px; }}
QToolBar {{ background: {t.window}; border: none; spacing: 2px; padding: 3px; }}
QToolButton {{ border: 1px solid transparent; border-radius: 5px; padding: 4px; }}
QToolButton:hover {{ background: {t.alt_base}; border-color: {t.node_border}; }}
QToolButton:checked {{ background: {t.alt_base}; border-color: {t.accent}; }}
QLineEdit, QPlainTextEdit {{
    border: 1px solid {t.node_border}; border-radius: 4px; padding: 3px 5px;
    background: {t.base}; selection-background-color: {t.accent};
}}
QLineEdit:focus, QPlainTextEdit:focus {{ border-color: {t.accent}; }}
QFrame#separator {{ background: {t.node_border}; max-height: 1px; border: none; }}
QLineEdit[invalid="true"] {{ border-color: {t.error}; }}
QTreeView, QListView, QUndoView {{ border: none; background: {t.panel}; outline: 0; }}
QTreeView::item, QListView::item {{ padding: 3px 2px; border-radius: 4px; }}
QTreeView::item:hover, QListView::item:hover {{ background: {t.alt_base}; }}
QTreeView::item:selected, QListView::item:selected {{ background: {t.accent}; color: white; }}
QStatusBar {{ background: {t.window}; color: {t.muted}; }}
QStatusBar QLabel {{ color: {t.muted}; padding: 0 6px; }}
QLabel#inspectorTitle {{ font-size: 15px; font-weight: 600; }}
QLabel#inspectorFormula {{ font-family: "DejaVu Serif", serif; font-size: 14px;
    background: {t.alt_base}; border-radius: 4px; padding: 6px; }}
QLabel#muted {{ color: {t.muted}; }}
QLabel#error {{ color: {t.error}; }}
QFrame#quickAdd {{ background: {t.panel}; border: 1px solid {t.node_border};
    border-radius: 8px; }}
QScrollArea {{ border: none; }}
"""
