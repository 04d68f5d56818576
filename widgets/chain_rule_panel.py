"""The chain-rule panel: upstream × local = downstream for the current backward step.

It reads :func:`core.stepping.chain_rule` of a session and owns no numbers. In
predict mode the gradients of a backward step stay hidden until the user has typed
a guess (scored by :func:`core.stepping.score_guess`) or asked to see them.
"""

from __future__ import annotations

import re
import weakref

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QFrame,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from core.errors import StudioError
from core.stepping import chain_rule, score_guess
from core.stepping.summary import format_number
from widgets.theme import DARK, LIGHT, Theme

EMPTY_HINT = "Step to a node to see the chain rule"
HIDDEN = "?"


def default_theme() -> Theme:
    """The theme matching the application's palette (dark window: the dark theme)."""
    app = QApplication.instance()
    dark = app is not None and app.palette().window().color().lightnessF() < 0.5
    return DARK if dark else LIGHT


def _full(summary) -> str:
    """Full precision of a scalar, the statistics line of a tensor (for a tooltip)."""
    return "" if summary is None else summary.full_text


def _breakable(text: str) -> str:
    """``text`` that may wrap after a comma or a product dot too: a formula such as
    ``W[o,c,m,n]·x[c, s·i+d·m−p, …]`` has few spaces, and unbroken it widened the panel."""
    return re.sub(r"([,·])(?=\S)", "\\1\u200b", text)


def _short(summary) -> str:
    """4 significant digits for a scalar; shape and norm for a tensor."""
    if summary is None:
        return "—"
    if summary.scalar:
        return summary.text
    return f"{summary.text}  ‖·‖ {format_number(summary.norm)}"


class _Number(QLabel):
    """A number of the chain rule: short text, full precision on hover, selectable."""

    def __init__(self, role: str, parent=None):
        super().__init__(parent)
        self.role = role
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.setAlignment(Qt.AlignRight | Qt.AlignVCenter)

    def show_summary(self, summary, hidden: bool = False):
        if hidden:
            self.setText(HIDDEN)
            self.setToolTip("hidden until you guess (predict mode)")
        else:
            self.setText(_short(summary))
            self.setToolTip(_full(summary))


class TermRow:
    """The widgets of one term: ``∂L/∂a ← a   upstream × local = downstream``.

    Attributes
    ----------
    target, upstream, local, downstream : QLabel
        For a tensor the numbers are norms and ``shapes`` gives the shapes.
    shapes : QLabel
        ``(1, 6, 28, 28) → (6, 1, 5, 5)`` for tensors; "no gradient needed".
    guess : QLineEdit
        Predict mode's field for the downstream gradient (hidden otherwise).
    score : QLabel
        The verdict of the guess.
    """

    def __init__(self, grid: QGridLayout, row: int, parent: QWidget):
        self.target = QLabel(parent)
        self.target.setObjectName("chainTarget")
        self.upstream = _Number("upstream", parent)
        self.times = QLabel("×", parent)
        self.local = _Number("local", parent)
        self.equals = QLabel("=", parent)
        self.downstream = _Number("downstream", parent)
        self.downstream.setObjectName("chainDownstream")
        for w in (self.upstream, self.local, self.downstream):
            w.setProperty("number", True)
        self.times.setObjectName("chainMuted")
        self.equals.setObjectName("chainMuted")
        self.shapes = QLabel(parent)
        self.shapes.setObjectName("chainSmall")
        self.shapes.setWordWrap(True)
        self.guess = QLineEdit(parent)
        self.guess.setPlaceholderText("your guess, then Enter")
        self.score = QLabel(parent)
        self.score.setWordWrap(True)
        grid.addWidget(self.target, row, 0)
        for col, w in enumerate((self.upstream, self.times, self.local, self.equals,
                                 self.downstream), start=1):
            grid.addWidget(w, row, col)
        grid.addWidget(self.shapes, row + 1, 0, 1, 6)
        grid.addWidget(self.guess, row + 2, 0, 1, 6)
        grid.addWidget(self.score, row + 3, 0, 1, 6)

    def widgets(self):
        return (self.target, self.upstream, self.times, self.local, self.equals,
                self.downstream, self.shapes, self.guess, self.score)


class ChainRulePanel(QWidget):
    """The chain rule at the session's current node.

    Signals
    -------
    check_gradient_requested(str)
        The node id whose gradient the user asked to check; the controller runs
        :func:`core.stepping.check_gradient` off the GUI thread and calls :meth:`show_check`.
    """

    check_gradient_requested = Signal(str)

    def __init__(self, theme: Theme | None = None, parent=None):
        super().__init__(parent)
        self.theme = theme or default_theme()
        self.session = None
        self.rule = None  # the ChainRule shown, or None
        self.node_id = None  # the node shown (also at a forward step)
        self.predict_mode = False
        self.rows: list = []
        self._grads: list = []  # the arrays of the terms' downstream gradients
        self._guesses: dict = {}  # step index -> (weakref to its record, {term: score or None})
        self._check = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        # the text wraps at the dock's width; only the table of terms scrolls sideways
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(10, 8, 10, 8)
        lay.setSpacing(6)

        self.hint = QLabel(EMPTY_HINT)
        self.hint.setObjectName("chainHint")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)

        self.title = QLabel()
        self.title.setObjectName("chainTitle")
        self.title.setWordWrap(True)
        self.step_label = QLabel()
        self.step_label.setObjectName("chainMuted")
        self.step_label.setWordWrap(True)
        # one under the other: side by side they made the panel wider than a narrow dock
        lay.addWidget(self.title)
        lay.addWidget(self.step_label)

        self.formula = QLabel()
        self.formula.setObjectName("chainFormula")
        self.formula.setWordWrap(True)
        self.formula.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.derivative = QLabel()
        self.derivative.setObjectName("chainFormula")
        self.derivative.setWordWrap(True)
        self.derivative.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.formula)
        lay.addWidget(self.derivative)

        self.note = QLabel()  # a forward step, a source node, or what is hidden
        self.note.setObjectName("chainMuted")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)

        self.values_label = QLabel()  # the forward values the local derivative is taken at
        self.values_label.setWordWrap(True)
        self.values_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.values_label)
        self.upstream_label = QLabel()
        self.upstream_label.setWordWrap(True)
        self.upstream_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.upstream_label)

        self.fanout_label = QLabel()  # "x fans out: the gradients of its readers are summed"
        self.fanout_label.setObjectName("chainMuted")
        self.fanout_label.setWordWrap(True)
        self.fanout_sum = QLabel()
        self.fanout_sum.setObjectName("chainSum")
        self.fanout_sum.setWordWrap(True)
        self.fanout_sum.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.fanout_label)
        lay.addWidget(self.fanout_sum)

        self.terms_box = QWidget()
        self.grid = QGridLayout(self.terms_box)
        self.grid.setContentsMargins(0, 4, 0, 0)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(2)
        self.grid.setColumnStretch(6, 1)
        self.header = []
        for col, text in ((1, "upstream"), (3, "local"), (5, "downstream")):
            h = QLabel(text)
            h.setObjectName("chainMuted")
            h.setAlignment(Qt.AlignRight)
            self.grid.addWidget(h, 0, col)
            self.header.append(h)
        self.terms_scroll = QScrollArea()
        self.terms_scroll.setWidget(self.terms_box)
        self.terms_scroll.setWidgetResizable(True)
        self.terms_scroll.setFrameShape(QFrame.NoFrame)
        self.terms_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.terms_scroll.setSizeAdjustPolicy(QAbstractScrollArea.AdjustToContents)
        self.terms_scroll.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        lay.addWidget(self.terms_scroll)

        self.reveal_button = QPushButton("Show the gradients")
        self.reveal_button.setToolTip("Reveal the numbers without guessing")
        self.reveal_button.clicked.connect(self.reveal)
        lay.addWidget(self.reveal_button, 0, Qt.AlignLeft)

        check_row = QVBoxLayout()
        self.check_button = QPushButton("Check gradient")
        self.check_button.setToolTip("Compare this node's analytic gradients with float64 "
                                     "finite differences")
        self.check_button.clicked.connect(self._request_check)
        self.check_button.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self.check_label = QLabel()
        self.check_label.setObjectName("chainCheck")
        self.check_label.setWordWrap(True)
        self.check_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        check_row.addWidget(self.check_button, 0, Qt.AlignLeft)
        check_row.addWidget(self.check_label)
        lay.addLayout(check_row)
        lay.addStretch(1)
        self.set_theme(self.theme)
        self.refresh()

    # ------------------------------------------------------------- API
    def set_session(self, session):
        """Show ``session`` (``None``: the empty state); guesses of another session are dropped."""
        self.session = session
        self._guesses.clear()
        self._check = None
        self.refresh()

    def set_predict_mode(self, on: bool):
        """Hide the gradients of a backward step until the user guesses them."""
        self.predict_mode = bool(on)
        self.refresh()

    def show_check(self, report):
        """Show a :class:`~core.stepping.GradientCheckReport` (``None``: clear it).

        A report for another node than the one shown (the user stepped on while the
        check ran) is dropped.
        """
        if report is not None and self._node_name() != report.node:
            return
        self._check = report
        self._show_check()

    def refresh(self):
        """Read the session again (after a step)."""
        self._refresh()
        self._fit_terms()

    def resizeEvent(self, event):  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit_terms()

    def _fit_terms(self):
        """The table of terms as tall as its rows, plus its scroll bar when it is wider
        than the panel."""
        box = self.terms_box
        box.adjustSize()
        h = box.sizeHint().height()
        if box.minimumSizeHint().width() > self.terms_scroll.viewport().width():
            h += self.terms_scroll.horizontalScrollBar().sizeHint().height()
        self.terms_scroll.setFixedHeight(h)

    def _refresh(self):
        s = self.session
        cur = None if s is None or s.stale else s.current
        if cur is None:
            self._empty(s.stale_message if s is not None and s.stale else EMPTY_HINT)
            return
        if cur.node_id != self.node_id:
            self._check = None
            self.check_label.setText("")  # a check still running was for the node left
        self.node_id = cur.node_id
        node = s.graph.nodes[cur.node_id]
        op = type(node.op)
        self.hint.hide()
        self.title.setText(f"{node.name}  ·  {node.op_id}")
        self.step_label.setText(f"step {cur.index + 1} of {len(s.steps)}: {cur.phase}")
        # "σ(x) = …" states its output already; "a · b" gets the node's name
        formula = op.formula if "=" in op.formula else f"{cur.node} = {op.formula}"
        self.formula.setText(_breakable(f"forward   {formula}") if op.formula else "")
        self.derivative.setText(_breakable(f"local     {op.derivative}") if op.derivative
                                else "")
        for w in (self.title, self.step_label, self.formula, self.derivative, self.check_button):
            w.show()
        self.formula.setVisible(bool(op.formula))
        self.derivative.setVisible(bool(op.derivative))
        self.check_button.setEnabled(True)
        if cur.phase == "backward":
            try:
                rule = chain_rule(s)
            except StudioError as exc:
                self._forward_note(str(exc))
            else:
                self._show_rule(rule)
        else:
            self._forward_note(f"forward step: the chain rule of '{cur.node}' is shown at its "
                               "backward step")
        self._show_check()

    def reveal(self):
        """Show the hidden gradients of this step without scoring a guess."""
        guesses = self._step_guesses()
        if guesses is not None:
            for i in range(len(self.rows)):
                guesses.setdefault(i, None)
        self.refresh()

    # --------------------------------------------------------- drawing
    def _empty(self, text):
        self.rule = None
        self.node_id = None
        self.hint.setText(text)
        self.hint.show()
        for w in (self.title, self.step_label, self.formula, self.derivative, self.note,
                  self.upstream_label, self.fanout_label, self.fanout_sum,
                  self.reveal_button, self.values_label, self.check_button, self.check_label,
                  *self.header):
            w.hide()
        self._set_rows(0)

    def _forward_note(self, text):
        self.rule = None
        self.note.setText(text)
        self.note.show()
        for w in (self.upstream_label, self.fanout_label, self.fanout_sum, self.reveal_button,
                  self.values_label, *self.header):
            w.hide()
        self._set_rows(0)

    def _set_rows(self, n):
        while len(self.rows) < n:
            self.rows.append(TermRow(self.grid, 1 + 4 * len(self.rows), self.terms_box))
            row = self.rows[-1]
            k = len(self.rows) - 1
            row.guess.returnPressed.connect(lambda k=k: self._guessed(k))
        for i, row in enumerate(self.rows):
            for w in row.widgets():
                w.setVisible(i < n)

    def _step_guesses(self):
        """This step's guesses ({term: score}), kept while its record lives."""
        s, rule = self.session, self.rule
        if s is None or rule is None:
            return None
        rec = s.record(rule.index)
        held = self._guesses.get(rule.index)
        if held is None or held[0]() is not rec:
            held = self._guesses[rule.index] = (weakref.ref(rec), {})
        return held[1]

    def _show_rule(self, rule):
        self.rule = rule
        s = self.session
        rec = s.record(rule.index)
        self._grads = list(rec.grad_inputs)
        guesses = self._step_guesses()
        # the forward values: what the local derivative is evaluated at
        node = s.graph.nodes[rec.node_id]
        ins = [f"{port} = {_short(s.summary(v))}" for port, v in zip(node.input_ports, rec.inputs)]
        outs = [_short(s.summary(v)) for v in rec.outputs]
        self.values_label.setText(("at " + ", ".join(ins) + ": " if ins else "")
                                  + f"{rule.node} = " + ", ".join(outs))
        self.values_label.setVisible(bool(outs))
        # the upstream gradient
        ups = [u for u in rule.upstream if u is not None]
        if rule.seeded:
            up_text = f"∂L/∂{rule.node} = 1 (the loss: backward starts here)"
        elif not ups:
            up_text = "no gradient reached this node"
        elif len(rule.upstream) == 1:
            up_text = f"upstream ∂L/∂{rule.node} = {_short(ups[0])}"
        else:
            up_text = "upstream " + ", ".join(f"∂L/∂out{k} = {_short(u)}"
                                              for k, u in enumerate(rule.upstream))
        self.upstream_label.setText(up_text)
        self.upstream_label.setToolTip("\n".join(_full(u) for u in ups))
        self.upstream_label.show()
        # a fan-out: what each reader sent back, summed
        fan = [(k, parts) for k, parts in enumerate(rule.contributions) if len(parts) > 1]
        if fan:
            lines, sums = [], []
            for k, parts in fan:
                readers = ", ".join(f"{p.reader}.{p.port}: {_short(p.grad)}" for p in parts)
                lines.append(f"'{rule.node}' fans out to {len(parts)} inputs; their gradients "
                             f"are summed ({readers})")
                sums.append(f"∂L/∂{rule.node} = {rule.sum_text[k]}")
            self.fanout_label.setText("\n".join(lines))
            self.fanout_sum.setText("\n".join(sums))
        self.fanout_label.setVisible(bool(fan))
        self.fanout_sum.setVisible(bool(fan))
        # the terms
        terms = rule.terms
        self._set_rows(len(terms))
        hidden_any = False
        for i, (term, row) in enumerate(zip(terms, self.rows)):
            name = term.target.split("'")[1] if "'" in term.target else term.target
            kind = "weight" if term.target.startswith("weight") else "input"
            row.target.setText(f"∂L/∂{name}" + (f"  ← {term.source}" if term.source else ""))
            row.target.setToolTip(f"{kind} '{name}'"
                                  + (f", fed by '{term.source}'" if term.source else ""))
            needed = term.downstream is not None
            hidden = (self.predict_mode and needed and guesses is not None
                      and i not in guesses)
            hidden_any = hidden_any or hidden
            scalar = term.numbers is not None
            for w in (row.upstream, row.times, row.local, row.equals, row.downstream):
                w.setVisible(needed)
            row.shapes.setVisible(not scalar)
            if not needed:
                row.shapes.setText("no gradient needed")
            elif scalar:
                row.upstream.show_summary(term.upstream)
                row.local.show_summary(term.local, hidden)
                row.downstream.show_summary(term.downstream, hidden)
            else:
                for label, summ in ((row.upstream, term.upstream),
                                    (row.downstream, term.downstream)):
                    label.setText("—" if summ is None else summ.text if summ.scalar
                                  else f"‖{format_number(summ.norm)}‖")
                    label.setToolTip(_full(summ))
                if hidden:
                    row.downstream.setText(f"‖{HIDDEN}‖")
                    row.downstream.setToolTip("hidden until you guess its norm (predict mode)")
                if term.local is not None:
                    row.times.setText("⊙")
                    row.local.setText(HIDDEN if hidden else f"‖{format_number(term.local.norm)}‖")
                    row.local.setToolTip("" if hidden else _full(term.local))
                else:
                    row.times.setText("·")
                    row.local.setText("Jacobianᵀ")
                    row.local.setToolTip("the op's backward applies its whole Jacobian "
                                         "(no elementwise local derivative)")
                up = term.upstream.shape if term.upstream is not None else "—"
                row.shapes.setText(f"shapes {up} → {term.downstream.shape}; ‖·‖ is a norm")
            if scalar:
                row.times.setText("×")
            row.guess.setVisible(hidden)
            if hidden:
                what = f"∂L/∂{name}" if scalar else f"the norm ‖∂L/∂{name}‖"
                row.guess.setPlaceholderText(f"your guess of {what}, then Enter")
            score = guesses.get(i) if guesses is not None else None
            row.score.setVisible(score is not None or bool(row.score.property("error")))
            if score is not None:
                good = score.verdict in ("exact", "close")
                self._paint(row.score, self.theme.ok if good else self.theme.error)
                row.score.setText(score.message.capitalize())
                row.score.setProperty("error", False)
        for h in self.header:
            h.setVisible(any(t.downstream is not None for t in terms))
        self.reveal_button.setVisible(hidden_any)
        if not terms:
            name = rule.node
            self.note.setText(f"'{name}' has no inputs: the backward pass ends here with "
                              f"∂L/∂{name}")
        elif hidden_any:
            self.note.setText("Predict mode: work out each gradient from the upstream gradient "
                              "and the local derivative, type it and press Enter")
        else:
            self.note.setText("")
        self.note.setVisible(bool(self.note.text()))

    def _guessed(self, k):
        """Score the guess typed for term ``k`` and reveal the numbers."""
        row = self.rows[k]
        guesses = self._step_guesses()
        if guesses is None or k >= len(self._grads):
            return
        try:
            score = score_guess(row.guess.text(), self._grads[k])
        except ValueError as exc:
            row.score.setText(str(exc).capitalize())
            self._paint(row.score, self.theme.error)
            row.score.setProperty("error", True)
            row.score.show()
            return
        row.score.setProperty("error", False)
        row.guess.clear()
        guesses[k] = score
        self.refresh()

    def _node_name(self):
        s = self.session
        node = None if s is None or self.node_id is None else s.graph.nodes.get(self.node_id)
        return None if node is None else node.name

    def _request_check(self):
        if self.node_id is None:
            return
        self._check = None
        self.check_label.setText("checking against finite differences…")
        self._paint(self.check_label, self.theme.muted)
        self.check_label.show()
        self.check_gradient_requested.emit(self.node_id)

    def _show_check(self):
        r = self._check
        if r is None:
            if not self.check_label.text().startswith("checking"):
                self.check_label.hide()
            return
        if not r.rows:
            text, colour = f"'{r.node}': nothing to check", self.theme.muted
        else:
            word = "ok" if r.ok else "wrong"
            text = (f"relative error {r.worst:.2e}: {r.verdict} ({word})")
            colour = self.theme.ok if r.ok else self.theme.error
        self.check_label.setText(text)
        self.check_label.setToolTip("\n".join(
            f"{row.target}: relative error {row.rel_error:.3e} ({row.verdict}); analytic "
            f"‖·‖ {row.analytic_norm:.6g}, numeric ‖·‖ {row.numeric_norm:.6g}" for row in r.rows))
        self._paint(self.check_label, colour)
        self.check_label.show()

    @staticmethod
    def _paint(label, colour):
        label.setStyleSheet(f"color: {colour}; font-weight: 600;")

    # ------------------------------------------------------------ theme
    def set_theme(self, theme: Theme):
        """Colours of ``theme`` (the formula box, the muted and the summed lines)."""
        self.theme = t = theme
        self.setStyleSheet(f"""
QLabel#chainTitle {{ font-size: 14px; font-weight: 600; color: {t.text}; }}
QLabel#chainMuted, QLabel#chainHint {{ color: {t.muted}; }}
QLabel#chainHint {{ font-style: italic; padding: 12px 0; }}
QLabel#chainFormula {{ font-family: "DejaVu Serif", serif; font-size: 13px; color: {t.text};
    background: {t.alt_base}; border-radius: 4px; padding: 5px 7px; }}
QLabel#chainSum {{ color: {t.text}; font-weight: 600; }}
QLabel#chainTarget {{ color: {t.text}; font-family: "DejaVu Serif", serif; }}
QLabel#chainSmall {{ color: {t.muted}; font-size: 11px; }}
QLabel[number="true"] {{ font-size: 14px; color: {t.text}; }}
QLabel#chainDownstream {{ font-size: 14px; color: {t.accent}; font-weight: 600; }}
""")
        if self._check is not None:
            self._show_check()
        if self.session is not None:
            self.refresh()
