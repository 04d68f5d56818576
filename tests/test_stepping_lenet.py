"""LeNet-5 on one digit through the stepping session: real feature maps forward, real
gradients backward, bit for bit the numbers of a full run; digits from the sample or drawn."""

import numpy as np
import pytest

from app.train_cli import image_training_data
from core.data.mnist import load_sample
from core.errors import DataError, GraphError
from core.executor import Executor
from core.graph import Graph
from core.serialize import load_graph
from core.stepping import (
    StepSession,
    chain_rule,
    digit_feeds,
    drawn_digit,
    sample_digit,
    training_normalizer,
)
from examples import example_path


def lenet():
    return load_graph(example_path("lenet5"))


def test_normalizer_is_the_one_training_on_the_sample_fits():
    g = lenet()
    trained = image_training_data(g, load_sample(), "sample").extra["data"]["normalizer"]
    assert training_normalizer().to_dict() == trained


def test_a_sample_digit_is_a_normalized_batch_of_one_with_its_label():
    g = lenet()
    img, label = sample_digit(5)
    assert img.shape == (28, 28) and img.dtype == np.uint8 and 0 <= label <= 9
    feeds = digit_feeds(g, img, label)
    norm = training_normalizer()
    np.testing.assert_array_equal(feeds["image"], norm.apply(img, "float32")[None, None])
    assert feeds["image"].dtype == np.float32 and feeds["label"].tolist() == [label]
    flat = Graph(dtype="float32")
    flat.add("input", name="pixels", shape=[None, 784], role="features")
    assert digit_feeds(flat, img)["pixels"].shape == (1, 784)
    with pytest.raises(DataError, match="digit 5000"):
        sample_digit(5000)


def test_a_drawing_in_0_1_or_0_255_feeds_the_same_pixels():
    g = lenet()
    pad = np.zeros((28, 28))
    pad[8:20, 13:15] = 1.0
    a = digit_feeds(g, drawn_digit(pad))["image"]
    b = digit_feeds(g, drawn_digit(pad * 255))["image"]
    np.testing.assert_array_equal(a, b)
    assert a.max() > a.min()
    with pytest.raises(DataError, match="28×28"):
        drawn_digit(np.zeros((27, 28)))
    with pytest.raises(DataError, match="0..1 or 0..255"):
        drawn_digit(np.full((28, 28), 300.0))
    with pytest.raises(DataError, match="finite"):
        drawn_digit(np.full((28, 28), np.nan))
    with pytest.raises(GraphError, match="features"):
        digit_feeds(load_graph(example_path("abc")), drawn_digit(pad))


def test_lenet_steps_show_real_feature_maps_and_gradients_bit_for_bit():
    g = lenet()
    feeds = digit_feeds(g, *sample_digit(0))
    s = StepSession(g, feeds=feeds)
    assert s.batch == 1
    fwd = []
    while s.position < s.n_forward:
        assert s.step().kind in ("step", "forward_done")
        fwd.append(s.record())
    bwd = []
    while not s.done:
        s.step()
        bwd.append(s.record())
    assert len(fwd) == 15 and [r.phase for r in bwd] == ["backward"] * len(bwd)
    full = Executor(g).run(feeds)
    for rec in fwd:
        for k, y in enumerate(rec.outputs):
            ref = full.values[(rec.node_id, k)]
            assert np.array_equal(y, ref) and y.dtype == ref.dtype, rec.node
    conv1 = next(r for r in fwd if r.node == "conv1").outputs[0]
    assert conv1.shape == (1, 6, 28, 28) and conv1.std() > 0  # a real feature map
    for rec in bwd:
        for g_in in rec.grad_inputs:
            assert g_in is None or np.isfinite(g_in).all()
    ex = s.stepper.executor
    assert ex.grads.keys() == full.grads.keys()
    for key, grad in full.grads.items():
        assert np.array_equal(ex.grads[key], grad), key
    assert ex.weight_grads.keys() == full.weight_grads.keys()
    for key, grad in full.weight_grads.items():
        assert np.array_equal(ex.weight_grads[key], grad), key
    w = s.tensor("conv1", weight="W", grad=True)
    assert w.thumbnail.kind == "grid" and w.summary.norm > 0
    maps = s.tensor("conv1")
    assert maps.thumbnail.tiles == (2, 3) and maps.thumbnail.examples == 1
    cr = chain_rule(s, "conv1")
    assert [t.target for t in cr.terms] == ["input 'x'", "weight 'W'", "weight 'b'"]
    assert cr.terms[1].downstream.shape == (6, 1, 5, 5)


def test_stepping_back_through_lenet_replays_identically():
    g = lenet()
    s = StepSession(g, feeds=digit_feeds(g, *sample_digit(1)))
    s.evaluate()
    loss = s.value("loss").copy()
    wgrad = s.weight_grad("fc3", "W").copy()
    s.go_to(s.n_forward - 3)
    assert s.weight_grad("fc3", "W") is None and s.value("loss") is None
    s.evaluate()
    assert np.array_equal(s.value("loss"), loss)
    assert np.array_equal(s.weight_grad("fc3", "W"), wgrad)


def test_a_batch_lets_the_view_pick_the_example_shown():
    g = lenet()
    one, two = (digit_feeds(g, *sample_digit(i)) for i in (0, 1))
    feeds = {k: np.concatenate([one[k], two[k]]) for k in one}
    s = StepSession(g, feeds=feeds)
    s.run_to("conv1", "forward")
    assert s.batch == 2
    first, second = (s.tensor("conv1", example=i).thumbnail for i in (0, 1))
    assert (first.examples, second.example) == (2, 1)
    assert not np.array_equal(first.data, second.data)
    image = s.tensor("image", example=1, full=True).thumbnail
    np.testing.assert_array_equal(image.data, two["image"][0, 0])
