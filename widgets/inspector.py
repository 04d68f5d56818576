"""The inspector: the selected node's parameters, generated from its op's Param spec.

The inspector shows the model and emits *requests* (``params_edited``…); the main
window turns them into undo commands. It never keeps its own copy of a value:
after every model change it re-reads the node.
"""

from __future__ import annotations

import json
import re

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.errors import ParamError
from core.ops.base import CATEGORIES, fmt_shape, numel
from widgets.wheel import guard_wheel_in

INT_LIMIT = 2**31 - 1


class FloatSpin(QDoubleSpinBox):
    """A spin box that prints ``0.001`` and ``1e-05`` rather than ``0.001000``."""

    def __init__(self):
        super().__init__()
        self.setDecimals(10)
        self.setKeyboardTracking(False)

    def textFromValue(self, v):
        return f"{v:.6g}"

    def valueFromText(self, text):
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text, pos):
        try:
            float(text)
            return QValidator.Acceptable, text, pos
        except ValueError:
            ok = re.fullmatch(r"[-+]?[0-9]*\.?[0-9]*(e[-+]?[0-9]*)?", text.strip(), re.I)
            return (QValidator.Intermediate if ok else QValidator.Invalid), text, pos


def parse_shape(text: str) -> tuple:
    """``"B, 1, 28, 28"`` -> ``(None, 1, 28, 28)``; B, ?, None or -1 mean the batch."""
    text = text.strip().strip("()[]")
    if not text:
        return ()
    out = []
    for part in re.split(r"[,×x\s]+", text):
        if not part:
            continue
        if part.lower() in ("b", "?", "none", "null", "-1"):
            out.append(None)
        else:
            v = int(part)
            if v < 1:
                raise ValueError("dimensions must be positive")
            out.append(v)
    return tuple(out)


def format_shape_text(shape) -> str:
    return ", ".join("B" if d is None else str(d) for d in shape)


def parse_value(text: str):
    """A number or a nested list of numbers typed by the user, as an array."""
    data = json.loads(text)
    arr = np.array(data, dtype=np.float64)
    if arr.dtype == object:
        raise ValueError("must be a number or a rectangular list of numbers")
    return arr


def format_value_text(value) -> str:
    if value is None:
        return ""
    if value.ndim == 0:
        return f"{float(value):.10g}"
    return json.dumps(value.tolist())


class Inspector(QScrollArea):
    """Editors for one node (or the graph when nothing is selected).

    Signals
    -------
    params_edited(str, dict), rename_requested(str, str), value_edited(str, object),
    loss_requested(object), quick_fix_requested(str), meta_edited(str, str)
    """

    params_edited = Signal(str, dict)
    rename_requested = Signal(str, str)
    value_edited = Signal(str, object)
    loss_requested = Signal(object)
    quick_fix_requested = Signal(str)
    meta_edited = Signal(str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setMinimumWidth(260)
        # the panel follows the dock's width; long formulas wrap instead of scrolling
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.graph = None
        self.node_id = None
        self.report = None
        self.fix_text = None
        self.editors = {}
        self._built_for = None
        self._body = QWidget()
        self.setWidget(self._body)
        self._layout = QVBoxLayout(self._body)
        self._layout.setContentsMargins(10, 10, 10, 10)
        self._layout.setSpacing(8)
        self._show_empty()

    # -------------------------------------------------------------- public
    def show_node(self, graph, node_id, report, fix_text=None):
        """Show ``node_id`` of ``graph`` (``None``: the graph's own properties)."""
        self.graph, self.report, self.fix_text = graph, report, fix_text
        if node_id is not None and node_id not in graph.nodes:
            node_id = None
        key = (id(graph), node_id, None if node_id is None else graph.nodes[node_id].op_id)
        if key != self._built_for:
            self.node_id = node_id
            self._built_for = key
            self._rebuild()
        self._refresh()

    # ------------------------------------------------------------- building
    def _clear(self):
        self.editors = {}
        while self._layout.count():
            item = self._layout.takeAt(0)
            w = item.widget()
            if w is not None:
                # hide at once: deleteLater only runs when the event loop gets to it
                w.hide()
                w.setParent(None)
                w.deleteLater()

    def _show_empty(self):
        self._clear()
        label = QLabel("Select a node to edit its parameters.")
        label.setObjectName("muted")
        label.setWordWrap(True)
        self._layout.addWidget(label)
        self._layout.addStretch(1)

    def _rebuild(self):
        self._clear()
        if self.graph is None:
            self._show_empty()
            return
        if self.node_id is None:
            self._build_graph_panel()
            return
        op_cls = type(self.graph.nodes[self.node_id].op)
        self._build_header(op_cls)
        self._build_form(op_cls)
        self._build_facts()

    def _build_header(self, op_cls):
        """Title, op label with its category, formula and derivative."""
        self.title = QLabel()
        self.title.setObjectName("inspectorTitle")
        self._layout.addWidget(self.title)
        kind = QLabel(f"{op_cls.label} · {CATEGORIES[op_cls.category]}")
        kind.setObjectName("muted")
        self._layout.addWidget(kind)
        if op_cls.formula:
            f = QLabel(op_cls.formula)
            f.setObjectName("inspectorFormula")
            f.setWordWrap(True)
            f.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
            f.setTextInteractionFlags(Qt.TextSelectableByMouse)
            f.setToolTip(f"local derivative: {op_cls.derivative}" if op_cls.derivative else "")
            self._layout.addWidget(f)
        if op_cls.derivative:
            d = QLabel(f"∂: {op_cls.derivative}")
            d.setObjectName("muted")
            d.setWordWrap(True)
            d.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
            self._layout.addWidget(d)

    def _build_form(self, op_cls):
        """One editor per parameter, plus name, value (sources) and the loss switch."""
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        name = QLineEdit()
        name.editingFinished.connect(lambda: self._rename(name))
        self.editors["__name__"] = (name, lambda n: name.setText(n.name))
        form.addRow("Name", name)
        for p in op_cls.params:
            w, setter = self._editor_for(p)
            w.setToolTip(p.doc)
            self.editors[p.name] = (w, setter)
            form.addRow(p.name.replace("_", " "), w)
        if op_cls.source:
            val = QLineEdit()
            val.setPlaceholderText("a number or [[1, 2], [3, 4]]")
            val.setToolTip("The value this node holds (JSON numbers); empty for none.")
            val.editingFinished.connect(lambda: self._set_value(val))
            self.editors["__value__"] = (val, lambda n: self._show_value(val, n))
            form.addRow("value", val)
        if op_cls.outputs:
            loss = QCheckBox("start backprop here")
            loss.setToolTip("Make this node the loss: the backward pass starts from it")
            loss.toggled.connect(lambda on: self.loss_requested.emit(self.node_id if on else None))
            self.editors["__loss__"] = (loss, lambda n: loss.setChecked(
                self.graph.loss == n.id))
            form.addRow("loss", loss)
        box = QWidget()
        box.setLayout(form)
        guard_wheel_in(box)
        self._layout.addWidget(box)

    def _build_facts(self):
        """Shapes and counts, the error with its quick fix, and the parameter error line."""
        line = QFrame()
        line.setObjectName("separator")
        line.setFixedHeight(1)
        self._layout.addWidget(line)
        self.facts = QLabel()
        self.facts.setTextFormat(Qt.RichText)
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self._layout.addWidget(self.facts)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self._layout.addWidget(self.error)
        self.fix = QPushButton()
        self.fix.clicked.connect(lambda: self.quick_fix_requested.emit(self.node_id))
        self._layout.addWidget(self.fix)
        self.param_error = QLabel()
        self.param_error.setObjectName("error")
        self.param_error.setWordWrap(True)
        self.param_error.hide()
        self._layout.addWidget(self.param_error)
        self._layout.addStretch(1)

    def _build_graph_panel(self):
        title = QLabel("Graph")
        title.setObjectName("inspectorTitle")
        self._layout.addWidget(title)
        form = QFormLayout()
        name = QLineEdit()
        desc = QPlainTextEdit()
        desc.setFixedHeight(110)

        def commit():
            if (name.text(), desc.toPlainText()) != (self.graph.name, self.graph.description):
                self.meta_edited.emit(name.text(), desc.toPlainText())

        name.editingFinished.connect(commit)
        desc.focusOutEvent = lambda ev, _f=desc.focusOutEvent: (commit(), _f(ev))[1]
        self.editors["__title__"] = (name, lambda _g: name.setText(self.graph.name))
        self.editors["__desc__"] = (desc, lambda _g: desc.setPlainText(self.graph.description)
                                    if desc.toPlainText() != self.graph.description else None)
        form.addRow("Title", name)
        form.addRow("Description", desc)
        box = QWidget()
        box.setLayout(form)
        self._layout.addWidget(box)
        self.facts = QLabel()
        self.facts.setWordWrap(True)
        self._layout.addWidget(self.facts)
        hint = QLabel("Select a node to edit its parameters. Drag ops from the palette, "
                      "or press Tab on the canvas to add one.")
        hint.setObjectName("muted")
        hint.setWordWrap(True)
        self._layout.addWidget(hint)
        self._layout.addStretch(1)

    def _editor_for(self, p):
        emit = self._emit_param
        if p.kind == "int":
            w = QSpinBox()
            w.setKeyboardTracking(False)
            lo = int(p.low) if p.low is not None else -INT_LIMIT
            hi = int(p.high) if p.high is not None else INT_LIMIT
            if p.optional:
                # one step below the range stands for "none" (for example: every axis)
                w.setRange(lo - 1 if lo > -INT_LIMIT else lo, hi)
                w.setSpecialValueText("none")
                if lo <= -INT_LIMIT:
                    w.setRange(-INT_LIMIT, hi)
            else:
                w.setRange(lo, hi)
            w.valueChanged.connect(lambda v: emit(p.name, self._int_value(w, p, v)))

            def set_int(n, w=w):
                v = n.params[p.name]
                w.setValue(w.minimum() if v is None else v)
            return w, set_int
        if p.kind == "float":
            w = FloatSpin()
            w.setRange(p.low if p.low is not None else -1e12,
                       p.high if p.high is not None else 1e12)
            w.setSingleStep(_float_step(p.default))
            w.valueChanged.connect(lambda v: emit(p.name, v))
            return w, lambda n, w=w: w.setValue(n.params[p.name])
        if p.kind == "bool":
            w = QCheckBox()
            w.toggled.connect(lambda v: emit(p.name, bool(v)))
            return w, lambda n, w=w: w.setChecked(bool(n.params[p.name]))
        if p.kind == "choice":
            w = QComboBox()
            w.addItems(list(p.choices))
            w.currentTextChanged.connect(lambda v: emit(p.name, v))
            return w, lambda n, w=w: w.setCurrentText(n.params[p.name])
        if p.kind == "ints":
            row = QWidget()
            h = QHBoxLayout(row)
            h.setContentsMargins(0, 0, 0, 0)
            h.setSpacing(4)
            spins = []
            for _ in range(p.length):
                s = QSpinBox()
                s.setKeyboardTracking(False)
                s.setRange(int(p.low) if p.low is not None else 0,
                           int(p.high) if p.high is not None else 4096)
                s.valueChanged.connect(lambda _v: emit(p.name, tuple(x.value() for x in spins)))
                spins.append(s)
                h.addWidget(s)

            def set_ints(n, spins=spins):
                for s, v in zip(spins, n.params[p.name]):
                    s.setValue(v)
            return row, set_ints
        # shape and str: a line edit, parsed and checked when editing finishes
        w = QLineEdit()
        if p.kind == "shape":
            w.setPlaceholderText("e.g. B, 1, 28, 28   (B = batch)")

            def commit_shape(w=w):
                try:
                    value = parse_shape(w.text())
                except ValueError:
                    self._mark(w, f"'{w.text()}' is not a shape: write numbers separated by "
                                  "commas, B for the batch")
                    return
                self._mark(w, None)
                emit(p.name, value)
            w.editingFinished.connect(commit_shape)
            return w, lambda n, w=w: w.setText(format_shape_text(n.params[p.name]))
        w.editingFinished.connect(lambda w=w: emit(p.name, w.text()))
        return w, lambda n, w=w: w.setText(str(n.params[p.name]))

    @staticmethod
    def _int_value(w, p, v):
        if p.optional and v == w.minimum() and w.specialValueText():
            return None
        return int(v)

    # ------------------------------------------------------------- updates
    def _refresh(self):
        """Re-read every value from the model (signals blocked: this is not an edit)."""
        if self.graph is None:
            return
        if self.node_id is None:
            for w, setter in self.editors.values():
                w.blockSignals(True)
                setter(self.graph)
                w.blockSignals(False)
            r = self.report
            n_err = len(r.errors) if r else 0
            self.facts.setText(f"{len(self.graph.nodes)} nodes, {len(self.graph.edges)} "
                               f"connections" + (f", {n_err} with errors" if n_err else ""))
            return
        node = self.graph.nodes[self.node_id]
        self.title.setText(node.name)
        for w, setter in self.editors.values():
            _block(w, True)
            setter(node)
            _block(w, False)
        r = self.report
        rows = []
        shapes = r.shapes.get(node.id) if r else None
        if shapes is not None:
            outs = type(node.op).outputs
            for port, s in zip(outs, shapes):
                rows.append(("output" if len(outs) == 1 else port, fmt_shape(s)))
            ins = r.in_shapes.get(node.id)
            if ins:
                rows.insert(0, ("input" + ("s" if len(ins) > 1 else ""),
                                ", ".join(fmt_shape(s) for s in ins)))
            n_params = r.params_of(node.id)
            if node.op_id == "parameter":
                n_params = numel(self.graph.source_shape(node)) if node.params.get(
                    "trainable", True) else 0
            rows.append(("parameters", f"{n_params:,}"))
            rows.append(("multiply-adds", f"{r.macs.get(node.id, 0):,} per sample"))
            for wname, spec in (r.weights.get(node.id) or {}).items():
                rows.append((f"weight {wname}", f"{fmt_shape(spec.shape)} · init {spec.init}"))
        elif r and node.id in r.blocked:
            rows.append(("output", "unknown until the inputs are fixed"))
        self.facts.setText("<table cellspacing=3>" + "".join(
            f"<tr><td style='color:gray'>{k}</td><td><b>{v}</b></td></tr>" for k, v in rows)
            + "</table>")
        err = r.errors.get(node.id) if r else None
        self.error.setText(f"⚠ {err}" if err else "")
        self.error.setVisible(bool(err))
        self.fix.setText(self.fix_text or "")
        self.fix.setVisible(bool(self.fix_text))

    def show_param_error(self, message: str | None):
        """Show why the last edit was refused (the value in the model is unchanged)."""
        if self.node_id is None:
            return
        self.param_error.setText(f"⚠ {message}" if message else "")
        self.param_error.setVisible(bool(message))

    def _mark(self, w, message):
        w.setProperty("invalid", bool(message))
        w.style().unpolish(w)
        w.style().polish(w)
        w.setToolTip(message or "")

    def _emit_param(self, name, value):
        if self.node_id is None:
            return
        node = self.graph.nodes[self.node_id]
        if node.params.get(name) == value:
            return
        try:
            type(node.op).validate_params({**node.params, name: value})
        except ParamError as exc:
            self.show_param_error(str(exc))
            self._refresh()
            return
        self.show_param_error(None)
        self.params_edited.emit(self.node_id, {name: value})

    def _rename(self, w):
        node = self.graph.nodes.get(self.node_id)
        if node is not None and w.text().strip() and w.text().strip() != node.name:
            self.rename_requested.emit(self.node_id, w.text().strip())
        elif node is not None:
            w.setText(node.name)

    def _show_value(self, w, node):
        v = node.value
        if v is not None and v.size > 64:
            w.setText("")
            w.setPlaceholderText(f"array {fmt_shape(v.shape)} (too large to type here)")
        else:
            w.setText(format_value_text(v))
        self._mark(w, None)

    def _set_value(self, w):
        node = self.graph.nodes.get(self.node_id)
        if node is None:
            return
        text = w.text().strip()
        if not text:
            if node.value is not None and node.value.size <= 64:
                self.value_edited.emit(self.node_id, None)
            return
        try:
            value = parse_value(text)
        except (ValueError, TypeError) as exc:
            self._mark(w, f"not a value: {exc}")
            return
        self._mark(w, None)
        if node.value is None or node.value.shape != value.shape or \
                not np.array_equal(node.value, value):
            self.value_edited.emit(self.node_id, value)

    def editor(self, name: str):
        """The widget editing parameter ``name`` (``"__name__"``, ``"__value__"`` too)."""
        return self.editors[name][0]


def _block(w, on):
    w.blockSignals(on)
    for child in w.findChildren(QWidget):
        child.blockSignals(on)


def _float_step(default) -> float:
    d = abs(float(default or 0))
    if d == 0:
        return 0.1
    step = 10 ** np.floor(np.log10(d))
    return float(step)
