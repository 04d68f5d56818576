"""What the stepping view draws, as data: numbers, statistics, thumbnails, the log scale,
"check gradient" and predict mode."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.ops import get_op
from core.serialize import load_graph
from core.stepping import (
    MagnitudeScale,
    StepSession,
    check_gradient,
    histogram,
    score_guess,
    summarize,
    thumbnail,
)
from core.stepping.summary import format_number, full_precision
from examples import example_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("x, text", [(2.0, "2.000"), (0.7310585786300049, "0.7311"),
                                     (-0.19661193324148185, "-0.1966"), (1234.0, "1234"),
                                     (1e-7, "1.000e-07"), (float("nan"), "NaN")])
def test_numbers_have_four_significant_digits(x, text):
    assert format_number(x) == text


def test_full_precision_gives_the_number_back_in_its_dtype():
    assert full_precision(np.float64(0.1) + np.float64(0.2)) == "0.30000000000000004"
    assert full_precision(np.float32(0.7310586)) == "0.7310586"
    assert np.float32(full_precision(np.float32(1 / 3))) == np.float32(1 / 3)


def test_tensor_statistics_match_numpy_and_count_non_finite_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 5)).astype(np.float32)
    s = summarize(a)
    a64 = a.astype(np.float64)
    assert not s.scalar and s.text == "(3, 4, 5)" and s.size == 60
    assert s.mean == pytest.approx(a64.mean()) and s.std == pytest.approx(a64.std())
    assert s.norm == pytest.approx(np.linalg.norm(a64)) and s.max == a64.max()
    assert s.rms == pytest.approx(np.linalg.norm(a64) / math.sqrt(60))
    b = np.array([1.0, np.nan, np.inf, 3.0])
    sb = summarize(b)
    assert (sb.n_nan, sb.n_inf, sb.mean, sb.finite) == (1, 1, 2.0, False)
    counts, edges = histogram(b, bins=4)
    assert counts.sum() == 2 and edges[0] == 1.0 and edges[-1] == 3.0


def test_feature_maps_of_a_batch_become_a_grid_of_the_chosen_example():
    a = np.zeros((2, 6, 4, 4))
    a[1, 5] = 7.0
    t = thumbnail(a, batched=True, example=1)
    assert (t.kind, t.tiles, t.shown, t.examples, t.example) == ("grid", (2, 3), 6, 2, 1)
    assert t.data.shape == (2 * 5 - 1, 3 * 5 - 1)
    assert np.isnan(t.data[4]).all()  # the gap between tile rows
    assert t.data[5:9, 10:14].tolist() == [[7.0] * 4] * 4 and t.hi == 7.0
    with pytest.raises(IndexError):
        thumbnail(a, batched=True, example=2)


def test_matrices_vectors_and_kernels_have_their_own_pictures():
    assert thumbnail(np.arange(12.0).reshape(3, 4)).kind == "heatmap"
    bars = thumbnail(np.arange(200.0))
    assert bars.kind == "bars" and bars.data.size <= 64 and bars.total == 200
    assert thumbnail(np.arange(5.0).reshape(1, 5)).kind == "bars"
    k = thumbnail(np.ones((16, 6, 5, 5)), kernel=True, max_tiles=None)
    assert k.kind == "grid" and k.shown == 16 * 6 and k.tiles == (16, 6)
    assert thumbnail(np.ones((16, 6, 5, 5)), kernel=True).shown == 64
    big = thumbnail(np.ones((1, 3, 224, 224)), batched=True)
    assert max(big.data.shape) < 3 * 33  # block means keep a thumbnail small
    full = thumbnail(np.ones((1, 3, 224, 224)), batched=True, max_side=None)
    assert full.data.shape[1] > 224


def test_log_magnitude_scale_and_its_legend():
    s = MagnitudeScale(1e-6, 1e2)
    assert s.level(1e-6) == 0.0 and s.level(1e2) == 1.0 and s.level(1e-2) == 0.5
    assert s.level(0.0) == 0.0 and s.level(1e-12) == 0.0 and s.level(1e9) == 1.0
    assert s.level(float("nan")) == 1.0
    ticks = s.ticks()
    assert [m for m, _ in ticks] == pytest.approx([10.0 ** e for e in range(-6, 3)])
    assert [lv for _, lv in ticks] == pytest.approx(np.linspace(0, 1, 9))
    fit = MagnitudeScale.fit([3e-5, 0.2, 0.0, float("inf")])
    assert (fit.lo, fit.hi) == pytest.approx((1e-5, 1.0))
    with pytest.raises(ValueError):
        MagnitudeScale(1.0, 0.1)


def test_vanishing_gradients_look_fainter_than_large_ones():
    g = load_graph(example_path("abc"))
    s = StepSession(g)
    s.evaluate()
    levels = {s.graph.nodes[w.edge.src].name: w.level for w in s.wires()}
    assert levels["e"] == s.scale.level(1.0)
    s.set_feed("b", 1e-5)
    s.evaluate()
    levels = {s.graph.nodes[w.edge.src].name: w.level for w in s.wires()}
    assert levels["a"] < levels["b"]  # ∂f/∂a = b = 1e-5 vs ∂f/∂b = a = 3


def test_check_gradient_passes_for_correct_ops():
    s = StepSession(load_graph(example_path("sigmoid_neuron")))
    rep = check_gradient(s, "f")
    assert rep.ok and rep.verdict == "good" and rep.worst < rep.good
    assert [r.target for r in rep.rows] == ["x"]
    rep = check_gradient(s, "w0")  # a parameter: ∂f/∂w0 by differences of the whole graph
    assert rep.ok and rep.rows[0].analytic_norm == pytest.approx(0.19661193324148185)
    lenet = load_graph(example_path("lenet5"))
    from core.stepping import digit_feeds, sample_digit
    s = StepSession(lenet, feeds=digit_feeds(lenet, *sample_digit(3)))
    rep = check_gradient(s, "conv2")
    assert rep.ok and {r.target for r in rep.rows} == {"x", "W", "b"}


def test_check_gradient_fails_for_a_wrong_backward(monkeypatch):
    sigmoid = get_op("sigmoid")
    right = sigmoid.backward
    monkeypatch.setattr(sigmoid, "backward", lambda self, ctx, g: tuple(
        2 * d for d in right(self, ctx, g)))
    s = StepSession(load_graph(example_path("sigmoid_neuron")))
    rep = check_gradient(s, "f")
    assert not rep.ok and rep.verdict == "WRONG" and rep.worst > rep.bad


def test_guesses_are_scored_by_relative_error():
    d = 0.19661193324148185
    assert score_guess(0.1966, d).verdict == "exact"
    close = score_guess("0.2", d)
    assert close.verdict == "close" and close.rel_error == pytest.approx(abs(0.2 - d) / d)
    assert "1.7% off" in close.message
    assert score_guess(-0.2, d).verdict == "wrong sign"
    assert score_guess(1.0, d).verdict == "off"
    assert score_guess("−0.2", -d).verdict == "close"  # a typed minus sign
    assert score_guess(0, 0.0).verdict == "exact" and score_guess(1, 0.0).verdict == "off"
    tensor = score_guess(5.0, np.array([3.0, 4.0]))
    assert tensor.actual == 5.0 and tensor.verdict == "exact"
    for bad in ("two", float("nan"), None):
        with pytest.raises(ValueError):
            score_guess(bad, d)


def test_statistics_of_large_tensors_are_taken_in_chunks_with_the_same_result(monkeypatch):
    import core.stepping.summary as summary

    rng = np.random.default_rng(1)
    a = rng.normal(3.0, 2.0, size=(7, 11)).astype(np.float32)
    a[0, 3], a[5, 2], a[6, 10] = np.nan, np.inf, -np.inf
    whole = summarize(a)
    monkeypatch.setattr(summary, "CHUNK", 4)
    parts = summarize(a)
    assert (parts.n_nan, parts.n_inf) == (1, 2)
    finite = a[np.isfinite(a)].astype(np.float64)
    for s in (whole, parts):
        assert s.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert s.std == pytest.approx(finite.std(), rel=1e-9)
        assert (s.min, s.max) == (finite.min(), finite.max())
    counts, _ = histogram(a, bins=5)
    assert counts.sum() == finite.size


def test_the_package_names_load_their_module_when_first_used():
    """every name core.stepping offers resolves; the summaries load without the session, so
    the canvas can start without the stepping debugger"""
    code = """
import sys
import core.stepping.summary
print("core.stepping.session" in sys.modules)
import core.stepping as steps
print(all(getattr(steps, name) is not None for name in steps.__all__))
print("core.stepping.session" in sys.modules)
try:
    steps.no_such_name
except AttributeError as exc:
    print("no_such_name" in str(exc))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True", "True"]
