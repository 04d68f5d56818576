"""Facts about an op live on the op (issue 11): quiet parameters, index ports, category
labels, and the one copy of sigmoid / softmax / log-softmax. Driven by the registry."""

import numpy as np
import pytest

from core.ops import CATEGORIES, REGISTRY, all_ops, get_op
from core.ops.functional import log_softmax, sigmoid, softmax
from widgets.palette import Palette

# the names the node cards left out before the fact moved onto Param (widgets/canvas.py)
CARD_QUIET_NAMES = {"init", "fill", "trainable", "reduction", "keepdims", "keep_batch", "bias",
                    "mode", "dilation", "approximate", "role"}


def _ports():
    for op_id, cls in sorted(REGISTRY.items()):
        for port in cls.inputs:
            yield op_id, cls, port, False
        for port in cls.outputs:
            yield op_id, cls, port, True


def test_quiet_params_are_the_card_quiet_names():
    """Across the registry, a parameter is quiet exactly when the card used to hide its name."""
    loud = [(op_id, p.name) for op_id, cls in REGISTRY.items() for p in cls.params
            if p.quiet != (p.name in CARD_QUIET_NAMES)]
    assert loud == []
    quiet = {p.name for cls in REGISTRY.values() for p in cls.params if p.quiet}
    assert quiet == CARD_QUIET_NAMES


def test_every_port_named_indices_is_an_index_port():
    """Ports called ``indices`` are declared as index ports, and index ports exist."""
    for op_id, cls, port, _ in _ports():
        if port == "indices":
            assert port in cls.index_ports, op_id
    for op_id, cls in REGISTRY.items():
        assert set(cls.index_ports) <= set(cls.inputs) | set(cls.outputs), op_id
    assert get_op("max_pool2d").index_ports == ("indices",)
    assert get_op("max_unpool2d").index_ports == ("indices",)


def test_port_kind_matches_the_canvas_rule():
    """Op.port_kind gives what the canvas computed from the port name and no_grad_inputs."""
    def canvas_rule(cls, port, is_output):
        if port == "indices":
            return "index"
        if not is_output and port in cls.no_grad_inputs:
            return "target"
        return "tensor"

    kinds = set()
    for op_id, cls, port, is_output in _ports():
        kind = cls.port_kind(port, is_output)
        assert kind == canvas_rule(cls, port, is_output), (op_id, port, is_output)
        kinds.add(kind)
    assert kinds == {"tensor", "target", "index"}
    assert get_op("softmax_cross_entropy").port_kind("target", False) == "target"
    assert get_op("max_unpool2d").port_kind("indices", False) == "index"


def test_every_category_has_a_label_in_palette_order():
    """Each op's category is a key of CATEGORIES with a non-empty label; order is the palette's."""
    assert list(CATEGORIES) == ["inputs", "math", "activations", "layers", "losses",
                                "regularization"]
    assert all(isinstance(label, str) and label for label in CATEGORIES.values())
    for cls in REGISTRY.values():
        assert cls.category in CATEGORIES, cls.id
    order = list(CATEGORIES)
    ranks = [order.index(c.category) for c in all_ops()]
    assert ranks == sorted(ranks)


def test_palette_groups_show_the_registry_labels(qtbot):
    """The palette groups are titled with the labels of CATEGORIES, in that order."""
    palette = Palette()
    qtbot.addWidget(palette)
    titles = [palette.tree.topLevelItem(i).text(0)
              for i in range(palette.tree.topLevelItemCount())]
    used = [c for c in CATEGORIES if any(op.category == c for op in REGISTRY.values())]
    assert titles == [CATEGORIES[c] for c in used]


@pytest.mark.parametrize("axis", [-1, 0])
def test_functional_gives_the_numbers_the_ops_gave(axis):
    """sigmoid/softmax/log_softmax are bit for bit the formulas the ops computed inline."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 9)) * 30
    m = x.max(axis=axis, keepdims=True)
    e = np.exp(x - m)
    assert np.array_equal(softmax(x, axis), e / e.sum(axis=axis, keepdims=True))
    assert np.array_equal(log_softmax(x, axis), x - m - np.log(e.sum(axis=axis, keepdims=True)))
    assert np.array_equal(sigmoid(x), np.exp(-np.logaddexp(0.0, -x)))


def test_functional_is_stable_at_extremes():
    """No overflow, NaN or log(0) for logits a thousand apart."""
    z = np.array([[-1000.0, 0.0, 1000.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s = sigmoid(z)
        p = softmax(z)
        lp = log_softmax(z)
    assert s.tolist() == [[0.0, 0.5, 1.0]]
    assert p.tolist() == [[0.0, 0.0, 1.0]]
    assert np.isfinite(lp).all() and lp[0, 0] == -2000.0
