"""Golden tests: the textbook graphs give their known numbers, through the core and the CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from core.executor import Executor
from core.serialize import load_graph, save_graph
from examples import example_path, list_examples
from examples.textbook import TEXTBOOK


def run(stem):
    g = load_graph(example_path(stem))
    return g, Executor(g).run()


def test_xyz_textbook_numbers():
    """f = (x+y)·z at (−2, 5, −4): f = −12, ∂f/∂x = ∂f/∂y = −4, ∂f/∂z = 3."""
    _, ex = run("xyz")
    assert float(ex.value("f")) == -12.0
    assert [float(ex.grad(n)) for n in "xyz"] == [-4.0, -4.0, 3.0]


def test_abc_textbook_numbers():
    """f = a·b + c at (3, 2, −4): f = 2, ∂f/∂a = 2, ∂f/∂b = 3, ∂f/∂c = 1."""
    _, ex = run("abc")
    assert float(ex.value("f")) == 2.0
    assert [float(ex.grad(n)) for n in "abc"] == [2.0, 3.0, 1.0]


def test_sigmoid_neuron_textbook_numbers():
    """CS231n's neuron: f = σ(1) = 0.7311 and the gradients 0.3932, −0.1966…"""
    _, ex = run("sigmoid_neuron")
    s = 1 / (1 + math.exp(-1.0))
    local = s * (1 - s)
    assert float(ex.value("f")) == pytest.approx(0.7310585786300049, abs=1e-15)
    expected = {"w0": -1 * local, "x0": 2 * local, "w1": -2 * local, "x1": -3 * local,
                "w2": local}
    for name, g in expected.items():
        assert float(ex.grad(name)) == pytest.approx(g, rel=1e-14)
    assert float(ex.grad("x0")) == pytest.approx(0.393, abs=5e-4)
    assert float(ex.grad("w0")) == pytest.approx(-0.197, abs=5e-4)


def test_222_network_forward_and_one_sgd_step():
    """The step-by-step walkthrough: E = 0.298371109, and after one step with η = 0.5
    w5…w8 and w1…w4 take the published values."""
    g, ex = run("net_222")
    assert float(ex.value("E")) == pytest.approx(0.298371109, abs=1e-9)
    np.testing.assert_allclose(ex.value("out_h"), [[0.593269992, 0.596884378]], atol=1e-9)
    np.testing.assert_allclose(ex.value("out_o"), [[0.75136507, 0.772928465]], atol=1e-9)
    assert float(ex.grad("W2")[0, 0]) == pytest.approx(0.082167041, abs=1e-9)
    lr = 0.5
    w1 = g.node("W1").value - lr * ex.grad("W1")
    w2 = g.node("W2").value - lr * ex.grad("W2")
    # W2 = [[w5, w7], [w6, w8]], W1 = [[w1, w3], [w2, w4]]
    np.testing.assert_allclose(w2, [[0.35891648, 0.51130127], [0.408666186, 0.561370121]],
                               atol=1e-8)
    np.testing.assert_allclose(w1, [[0.149780716, 0.24975114], [0.19956143, 0.29950229]],
                               atol=1e-8)


def test_logistic_regression_numbers():
    """z = 0.1, p = σ(0.1), L = −ln p, ∂L/∂w = x(p − 1), ∂L/∂b = p − 1."""
    _, ex = run("logistic_regression")
    p = 1 / (1 + math.exp(-0.1))
    assert float(ex.value("p")) == pytest.approx(p, rel=1e-15)
    assert float(ex.value("L")) == pytest.approx(-math.log(p), rel=1e-14)
    np.testing.assert_allclose(ex.grad("w"), [p - 1, 2 * (p - 1)], rtol=1e-14)
    assert float(ex.grad("b")) == pytest.approx(p - 1, rel=1e-14)


def test_perceptron_computes_nand():
    """Weights (−2, −2), bias 3: 00→1, 01→1, 10→1, 11→0, and no gradient through the step."""
    _, ex = run("perceptron_nand")
    np.testing.assert_array_equal(ex.value("out"), [1, 1, 1, 0])
    np.testing.assert_array_equal(ex.grad("w"), [0, 0])


def test_eval_cli_json_gives_textbook_numbers():
    """`backprop-studio eval FILE --json` prints every node's value and gradient."""
    out = subprocess.run([sys.executable, "-m", "app", "eval", str(example_path("abc")),
                          "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["f"]["value"] == 2.0
    assert {n: data[n]["grad"] for n in "abc"} == {"a": 2.0, "b": 3.0, "c": 1.0}
    out = subprocess.run([sys.executable, "-m", "app", "eval", str(example_path("net_222")),
                          "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["E"]["value"] == pytest.approx(0.298371109, abs=1e-9)
    assert data["W2"]["grad"][0][0] == pytest.approx(0.082167041, abs=1e-9)


def test_gradcheck_cli_passes_on_textbook_graphs():
    for stem in TEXTBOOK:
        out = subprocess.run([sys.executable, "-m", "app", "gradcheck",
                              str(example_path(stem))], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "WRONG" not in out.stdout


def test_textbook_files_are_what_the_builder_makes(tmp_path):
    """The shipped files match examples/textbook.py (python -m examples.textbook)."""
    for stem, build in TEXTBOOK.items():
        save_graph(build(), tmp_path / "x.json")
        assert (tmp_path / "x.json").read_text("utf-8") == example_path(stem).read_text("utf-8")


def test_every_preset_loads_and_has_a_description():
    for stem, title, description in list_examples():
        g = load_graph(example_path(stem))
        assert title and description and len(g) > 0
        assert not g.infer_shapes().errors, stem
