"""Graphs the GUI tests build in code (presets may not be installed in every branch)."""

from __future__ import annotations

from core.graph import Graph


def abc_graph() -> Graph:
    """f = a·b + c with a = 3, b = 2, c = −4."""
    g = Graph(name="f = a·b + c")
    a = g.add("input", value=3.0, name="a", pos=(0, 0))
    b = g.add("input", value=2.0, name="b", pos=(0, 140))
    c = g.add("input", value=-4.0, name="c", pos=(260, 200))
    x = g.add("multiply", a, b, name="x", pos=(260, 40))
    g.add("add", x, c, name="f", pos=(520, 80))
    g.set_loss("f")
    return g


def _chain(g: Graph, first, layers):
    last = first
    for op_id, name, params in layers:
        last = g.add(op_id, last, name=name, **params)
    return last


def lenet5() -> Graph:
    """LeNet-5 for 28×28 MNIST digits, without positions (the editor lays it out)."""
    g = Graph("float32", name="LeNet-5")
    g.description = "conv 6@5×5 → pool → conv 16@5×5 → pool → dense 120 → 84 → 10"
    image = g.add("input", name="image", shape=(None, 1, 28, 28), role="features")
    last = _chain(g, image, [
        ("conv2d", "conv1", {"out_channels": 6, "kernel": (5, 5), "padding": (2, 2)}),
        ("relu", "relu1", {}),
        ("max_pool2d", "pool1", {}),
        ("conv2d", "conv2", {"out_channels": 16, "kernel": (5, 5)}),
        ("relu", "relu2", {}),
        ("max_pool2d", "pool2", {}),
        ("flatten", "flatten", {}),
        ("dense", "fc1", {"units": 120}),
        ("relu", "relu3", {}),
        ("dense", "fc2", {"units": 84}),
        ("relu", "relu4", {}),
        ("dense", "fc3", {"units": 10}),
    ])
    label = g.add("input", name="label", shape=(None,), role="target")
    g.add("softmax_cross_entropy", last, label, name="loss")
    g.set_loss("loss")
    return g


def vgg16() -> Graph:
    """VGG-16 (configuration D) on 224×224 RGB images."""
    g = Graph("float32", name="VGG-16")
    image = g.add("input", name="image", shape=(None, 3, 224, 224), role="features")
    layers = []
    for block, (n, ch) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for i in range(1, n + 1):
            layers.append(("conv2d", f"conv{block}_{i}",
                           {"out_channels": ch, "kernel": (3, 3), "padding": (1, 1)}))
            layers.append(("relu", f"relu{block}_{i}", {}))
        layers.append(("max_pool2d", f"pool{block}", {}))
    layers += [("flatten", "flatten", {}),
               ("dense", "fc6", {"units": 4096}), ("relu", "relu6", {}),
               ("dropout", "drop6", {}),
               ("dense", "fc7", {"units": 4096}), ("relu", "relu7", {}),
               ("dropout", "drop7", {}),
               ("dense", "fc8", {"units": 1000})]
    last = _chain(g, image, layers)
    label = g.add("input", name="label", shape=(None,), role="target")
    g.add("softmax_cross_entropy", last, label, name="loss")
    g.set_loss("loss")
    return g


def residual_graph() -> Graph:
    """Long skip connections: wires that pass several columns (they must route around cards)."""
    g = Graph(name="skips")
    x = g.add("input", name="x", shape=(None, 16))
    h = x
    for i in range(4):
        y = g.add("tanh", h, name=f"t{i}")
        y = g.add("sigmoid", y, name=f"s{i}")
        y = g.add("square", y, name=f"q{i}")
        h = g.add("add", y, x if i % 2 == 0 else h, name=f"res{i}")
    g.add("sum", h, name="total")
    return g


def wide_graph(n: int = 240, chains: int = 16) -> Graph:
    """``n`` small nodes in parallel chains: more cards than fit in one frame's budget."""
    g = Graph(name=f"wide {n}")
    ends = [g.add("input", name=f"x{i}", shape=(None, 8)) for i in range(chains)]
    ops = ["relu", "tanh", "sigmoid", "square"]
    while len(g.nodes) < n:
        for i, last in enumerate(ends):
            if len(g.nodes) >= n:
                break
            ends[i] = g.add(ops[len(g.nodes) % len(ops)], last)
    return g


def skip_wired_graph(n: int, seed: int) -> Graph:
    """One component of small ops where many wires skip columns: long columns of layout
    dummies, and wires that need detours round the cards."""
    import numpy as np

    rng = np.random.default_rng(seed)
    g = Graph()
    made = [g.add("input", shape=(None, 4), name="x0")]
    while len(g.nodes) < n:
        k = len(made)
        a = made[max(0, k - 1 - int(rng.integers(0, 3)))]
        if rng.random() < 0.3:
            b = made[int(rng.integers(0, k))]
            made.append(g.add("add", a, b if b is not a else made[0]))
        else:
            made.append(g.add("tanh", a))
    return g


def hub_graph(chains: int = 16) -> Graph:
    """An input read by ``chains`` short chains and again by an add at each chain's end:
    one card with many wires, half of them long ones that pass over the chains' cards."""
    g = Graph(name="hub")
    hub = g.add("input", shape=(None, 8), name="hub")
    for i in range(chains):
        y = g.add("square", g.add("sigmoid", g.add("tanh", hub, name=f"t{i}")), name=f"q{i}")
        g.add("add", y, hub, name=f"a{i}")
    return g
