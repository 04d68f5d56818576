"""The classic textbook graphs, built with the Graph builder.

``python -m examples.textbook`` rewrites their files in this folder. Their known
numbers are checked by ``tests/test_examples.py``.
"""

from __future__ import annotations

from pathlib import Path

from core.graph import Graph
from core.serialize import save_graph

HERE = Path(__file__).resolve().parent
COL = 300.0  # horizontal spacing of layout columns (cards are ~210 px wide)
ROW = 150.0


def _place(g: Graph, columns: list):
    """Lay nodes out left to right: ``columns`` is a list of lists of nodes."""
    for i, col in enumerate(columns):
        top = -(len(col) - 1) * ROW / 2
        for j, node in enumerate(col):
            g.move(node, (i * COL, top + j * ROW))


def xyz() -> Graph:
    """f = (x + y)·z at x = −2, y = 5, z = −4: f = −12, ∂f/∂x = ∂f/∂y = −4, ∂f/∂z = 3."""
    g = Graph(name="f = (x + y)·z")
    g.description = ("The first backprop example of CS231n: an add gate distributes the "
                     "gradient, a multiply gate swaps its inputs. f = −12; ∂f/∂x = ∂f/∂y = −4, "
                     "∂f/∂z = 3.")
    x = g.add("input", value=-2.0, name="x")
    y = g.add("input", value=5.0, name="y")
    z = g.add("input", value=-4.0, name="z")
    q = g.add("add", x, y, name="q")
    f = g.add("multiply", q, z, name="f")
    g.set_loss(f)
    _place(g, [[x, y, z], [q], [f]])
    return g


def abc() -> Graph:
    """f = a·b + c at a = 3, b = 2, c = −4: f = 2, ∂f/∂a = 2, ∂f/∂b = 3, ∂f/∂c = 1."""
    g = Graph(name="f = a·b + c")
    g.description = ("The smallest graph with both gates: e = a·b, f = e + c. With a = 3, "
                     "b = 2, c = −4: f = 2; ∂f/∂a = b = 2, ∂f/∂b = a = 3, ∂f/∂c = 1.")
    a = g.add("input", value=3.0, name="a")
    b = g.add("input", value=2.0, name="b")
    c = g.add("input", value=-4.0, name="c")
    e = g.add("multiply", a, b, name="e")
    f = g.add("add", e, c, name="f")
    g.set_loss(f)
    _place(g, [[a, b, c], [e], [f]])
    return g


def sigmoid_neuron() -> Graph:
    """f = σ(w0·x0 + w1·x1 + w2) with w = (2, −3, −3), x = (−1, −2): f = σ(1) ≈ 0.731."""
    g = Graph(name="Sigmoid neuron")
    g.description = ("A 2-input neuron f = σ(w0·x0 + w1·x1 + w2) with w0 = 2, x0 = −1, "
                     "w1 = −3, x1 = −2, w2 = −3 (CS231n). The sigmoid's local gradient "
                     "σ(1−σ) ≈ 0.197 multiplies everything upstream: ∂f/∂w0 ≈ −0.197, "
                     "∂f/∂x0 ≈ 0.393, ∂f/∂w1 ≈ −0.393, ∂f/∂x1 ≈ −0.590, ∂f/∂w2 ≈ 0.197.")
    w0 = g.add("parameter", value=2.0, name="w0")
    x0 = g.add("input", value=-1.0, name="x0")
    w1 = g.add("parameter", value=-3.0, name="w1")
    x1 = g.add("input", value=-2.0, name="x1")
    w2 = g.add("parameter", value=-3.0, name="w2")
    p0 = g.add("multiply", w0, x0, name="w0·x0")
    p1 = g.add("multiply", w1, x1, name="w1·x1")
    s = g.add("add", p0, p1, name="sum")
    z = g.add("add", s, w2, name="z")
    f = g.add("sigmoid", z, name="f")
    g.set_loss(f)
    _place(g, [[w0, x0, w1, x1, w2], [p0, p1], [s], [z], [f]])
    return g


def net_222() -> Graph:
    """The 2-2-2 sigmoid network of the step-by-step backprop walkthrough.

    Inputs 0.05/0.10, targets 0.01/0.99, weights w1…w8 = 0.15…0.55, biases
    0.35 and 0.60 (one shared bias per layer), loss ½Σ(t − y)² = 0.298371109.
    """
    g = Graph(name="2-2-2 network")
    g.description = ("The classic step-by-step backpropagation example: two inputs "
                     "(0.05, 0.10), two sigmoid hidden units, two sigmoid outputs, targets "
                     "(0.01, 0.99), squared error ½Σ(t−y)². Total error 0.298371109; one SGD "
                     "step with η = 0.5 gives w5 = 0.35891648, w1 = 0.149780716. W1 holds "
                     "[[w1, w3], [w2, w4]] so that h = x·W1 + b1.")
    x = g.add("input", value=[[0.05, 0.10]], name="x")
    w1 = g.add("parameter", value=[[0.15, 0.25], [0.20, 0.30]], name="W1")
    b1 = g.add("parameter", value=0.35, name="b1")
    w2 = g.add("parameter", value=[[0.40, 0.50], [0.45, 0.55]], name="W2")
    b2 = g.add("parameter", value=0.60, name="b2")
    t = g.add("input", value=[[0.01, 0.99]], name="target", role="target")
    nh = g.add("matmul", x, w1, name="x·W1")
    neth = g.add("add", nh, b1, name="net_h")
    h = g.add("sigmoid", neth, name="out_h")
    no = g.add("matmul", h, w2, name="h·W2")
    neto = g.add("add", no, b2, name="net_o")
    o = g.add("sigmoid", neto, name="out_o")
    e = g.add("squared_error", o, t, name="E", reduction="half_sum")
    g.set_loss(e)
    _place(g, [[x, w1, b1], [nh], [neth, w2, b2], [h], [no], [neto], [o, t], [e]])
    return g


def logistic_regression() -> Graph:
    """p = σ(x·w + b), binary cross-entropy, for one example x = (1, 2), t = 1."""
    g = Graph(name="Logistic regression")
    g.description = ("Logistic regression on one example: z = x·w + b, p = σ(z), "
                     "L = −[t ln p + (1−t) ln(1−p)]. With x = (1, 2), w = (0.5, −0.25), "
                     "b = 0.1, t = 1: z = 0.1, p ≈ 0.525, L ≈ 0.644, ∂L/∂z = p − t ≈ −0.475, "
                     "∂L/∂w = x(p − t).")
    x = g.add("input", value=[1.0, 2.0], name="x")
    w = g.add("parameter", value=[0.5, -0.25], name="w")
    b = g.add("parameter", value=0.1, name="b")
    t = g.add("input", value=1.0, name="t", role="target")
    xw = g.add("matmul", x, w, name="x·w")
    z = g.add("add", xw, b, name="z")
    p = g.add("sigmoid", z, name="p")
    loss = g.add("binary_cross_entropy", p, t, name="L", reduction="sum")
    g.set_loss(loss)
    _place(g, [[x, w], [xw, b], [z], [p, t], [loss]])
    return g


def perceptron_nand() -> Graph:
    """A perceptron with weights (−2, −2) and bias 3 computes NAND on all four inputs."""
    g = Graph(name="Perceptron (NAND)")
    g.description = ("A perceptron out = step(x·w + b) with w = (−2, −2), b = 3 computes NAND "
                     "of its two binary inputs: 00→1, 01→1, 10→1, 11→0 (Nielsen, ch. 1). The "
                     "step's gradient is 0 everywhere, which is why perceptrons cannot be "
                     "trained by backprop and sigmoid neurons can.")
    x = g.add("input", value=[[0, 0], [0, 1], [1, 0], [1, 1]], name="x")
    w = g.add("parameter", value=[-2.0, -2.0], name="w")
    b = g.add("parameter", value=3.0, name="b")
    xw = g.add("matmul", x, w, name="x·w")
    z = g.add("add", xw, b, name="z")
    out = g.add("step", z, name="out")
    total = g.add("sum", out, name="count")
    g.set_loss(total)
    _place(g, [[x, w], [xw, b], [z], [out], [total]])
    return g


TEXTBOOK = {
    "xyz": xyz,
    "abc": abc,
    "sigmoid_neuron": sigmoid_neuron,
    "net_222": net_222,
    "logistic_regression": logistic_regression,
    "perceptron_nand": perceptron_nand,
}


def main():
    for stem, build in TEXTBOOK.items():
        save_graph(build(), HERE / f"{stem}.json")
        print(f"wrote examples/{stem}.json")


if __name__ == "__main__":
    main()
