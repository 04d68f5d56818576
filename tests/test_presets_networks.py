"""Network presets: exact shapes and parameter counts, tidy layout, files match the builder."""

import functools

import numpy as np
import pytest

from core.executor import Executor
from core.serialize import dumps, load_graph
from examples import example_path
from examples.build_presets import PRESETS

TRAINING = ("lenet5", "keras_mnist_cnn", "mlp_784_30_10", "logistic_regression_mnist")

# published totals: LeCun-style LeNet-5 (ReLU/max-pool variant), the Keras mnist_cnn example,
# Nielsen's 784-30-10, AlexNet without groups (62,378,344) and torchvision's vgg16
PARAMETERS = {"lenet5": 61_706, "keras_mnist_cnn": 1_199_882, "mlp_784_30_10": 23_860,
              "logistic_regression_mnist": 7_850, "xor_mlp": 17,
              "alexnet": 62_378_344, "vgg16": 138_357_544}


@pytest.mark.parametrize("stem", sorted(PRESETS))
def test_file_is_what_the_builder_makes(stem):
    """examples/<stem>.json is exactly what examples/build_presets.py writes."""
    built = dumps(PRESETS[stem](), values=True, arrays=False)
    assert example_path(stem).read_text("utf-8") == built


@pytest.mark.parametrize("stem", sorted(PRESETS))
def test_parameter_count_is_exact(stem):
    assert load_graph(example_path(stem)).parameter_count() == PARAMETERS[stem]


@pytest.mark.parametrize("stem", sorted(PRESETS))
def test_has_name_description_loss_and_roles(stem):
    g = load_graph(example_path(stem))
    assert g.name and len(g.description) > 40 and g.loss is not None
    roles = sorted(n.params["role"] for n in g.nodes.values() if n.op_id == "input")
    assert roles == ["features", "target"]
    assert not g.infer_shapes().errors


@pytest.mark.parametrize("stem", TRAINING)
def test_training_presets_take_mnist_batches_in_float32(stem):
    g = load_graph(example_path(stem))
    assert g.dtype == "float32"
    assert g.node("image").params["shape"] == (None, 1, 28, 28)
    rep = g.infer_shapes()
    logits = g.nodes[g.in_edges(g.loss)["logits"].src]
    assert rep.shapes[logits.id][0] == (None, 10)


@pytest.mark.parametrize("stem", sorted(PRESETS))
def test_layout_runs_left_to_right_without_overlaps(stem):
    g = load_graph(example_path(stem))
    assert set(g.layout) == set(g.nodes)
    for e in g.edges:
        assert g.layout[e.src][0] < g.layout[e.dst][0], (g.nodes[e.src].name,
                                                         g.nodes[e.dst].name)
    spots = [tuple(p) for p in g.layout.values()]
    assert len(set(spots)) == len(spots)


def _shapes(stem):
    g = load_graph(example_path(stem))
    rep = g.infer_shapes()
    return {g.nodes[i].name: s[0] for i, s in rep.shapes.items()}


def test_alexnet_shapes():
    """227×227×3 → conv1 55×55×96 → 27 → 27×27×256 → 13 → 13×13×256 → 6×6×256 → 9216."""
    s = _shapes("alexnet")
    assert s["conv1"] == (None, 96, 55, 55)
    assert s["pool1"] == (None, 96, 27, 27)
    assert s["conv2"] == (None, 256, 27, 27)
    assert s["pool2"] == (None, 256, 13, 13)
    assert s["conv5"] == (None, 256, 13, 13)
    assert s["pool5"] == (None, 256, 6, 6)
    assert s["flatten"] == (None, 9216)
    assert s["fc8"] == (None, 1000)


def test_vgg16_shapes():
    s = _shapes("vgg16")
    assert s["conv1_2"] == (None, 64, 224, 224)
    assert s["pool3"] == (None, 256, 28, 28)
    assert s["pool5"] == (None, 512, 7, 7)
    assert s["flatten"] == (None, 25088)
    assert s["fc8"] == (None, 1000)
    assert sum(1 for n in load_graph(example_path("vgg16")).nodes.values()
               if n.op_id in ("conv2d", "dense")) == 16


def test_lenet5_shapes():
    s = _shapes("lenet5")
    assert s["conv1"] == (None, 6, 28, 28) and s["pool1"] == (None, 6, 14, 14)
    assert s["conv2"] == (None, 16, 10, 10) and s["pool2"] == (None, 16, 5, 5)
    assert s["flatten"] == (None, 400)


def _torch_counts_and_shapes(torch, layers, in_shape):
    # the "meta" device propagates shapes without allocating or computing anything
    net = torch.nn.Sequential(*layers)
    shapes = []
    x = torch.zeros((1,) + in_shape, device="meta")
    with torch.no_grad():
        for layer in net:
            x = layer(x)
            shapes.append(tuple(x.shape[1:]))
    return sum(p.numel() for p in net.parameters()), shapes


def _our_trunk(stem):
    g = load_graph(example_path(stem))
    rep = g.infer_shapes()
    out = []
    for n in g.order():
        if n.op_id in ("conv2d", "max_pool2d", "dense", "flatten"):
            out.append(tuple(rep.shapes[n.id][0][1:]))
    return g.parameter_count(), out


def test_alexnet_and_vgg16_match_torch_definitions():
    """Parameter totals and every layer's output shape agree with the same nets in torch.nn."""
    torch = pytest.importorskip("torch")

    class nn:  # noqa: N801 - torch.nn's layers, built on the "meta" device (no memory, no init)
        Conv2d = functools.partial(torch.nn.Conv2d, device="meta")
        Linear = functools.partial(torch.nn.Linear, device="meta")
        MaxPool2d, Flatten = torch.nn.MaxPool2d, torch.nn.Flatten

    alex = [nn.Conv2d(3, 96, 11, 4), nn.MaxPool2d(3, 2), nn.Conv2d(96, 256, 5, padding=2),
            nn.MaxPool2d(3, 2), nn.Conv2d(256, 384, 3, padding=1),
            nn.Conv2d(384, 384, 3, padding=1), nn.Conv2d(384, 256, 3, padding=1),
            nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(9216, 4096), nn.Linear(4096, 4096),
            nn.Linear(4096, 1000)]
    assert _torch_counts_and_shapes(torch, alex, (3, 227, 227)) == _our_trunk("alexnet")
    # torchvision.models.vgg16 (configuration "D"): same layers, same 138,357,544 parameters
    vgg, c_in = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        if v == "M":
            vgg.append(nn.MaxPool2d(2, 2))
        else:
            vgg.append(nn.Conv2d(c_in, v, 3, padding=1))
            c_in = v
    vgg += [nn.Flatten(), nn.Linear(25088, 4096), nn.Linear(4096, 4096), nn.Linear(4096, 1000)]
    assert _torch_counts_and_shapes(torch, vgg, (3, 224, 224)) == _our_trunk("vgg16")


def test_lenet5_loss_and_gradients_match_torch():
    """One float32 batch through LeNet-5 agrees with the same weights in PyTorch (float64)."""
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    g = load_graph(example_path("lenet5"))
    g.initialize(3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    ex = Executor(g, training=True, input_grads=False).run({"image": x, "label": y})
    tp = {f"{n.name}.{w}": torch.tensor(v.astype(np.float64), requires_grad=True)
          for n in g.nodes.values() for w, v in n.weights.items()}
    h = f.max_pool2d(f.relu(f.conv2d(torch.tensor(x, dtype=torch.float64), tp["conv1.W"],
                                     tp["conv1.b"], padding=2)), 2)
    h = f.max_pool2d(f.relu(f.conv2d(h, tp["conv2.W"], tp["conv2.b"])), 2).flatten(1)
    h = f.relu(h @ tp["fc1.W"] + tp["fc1.b"])
    h = f.relu(h @ tp["fc2.W"] + tp["fc2.b"])
    loss = f.cross_entropy(h @ tp["fc3.W"] + tp["fc3.b"], torch.tensor(y))
    loss.backward()
    assert float(ex.value("loss")) == pytest.approx(loss.item(), rel=1e-5)
    for key, t in tp.items():
        node, w = key.split(".")
        ref = t.grad.numpy()
        np.testing.assert_allclose(ex.weight_grad(node, w), ref, rtol=1e-4,
                                   atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("stem", TRAINING)
def test_training_presets_take_one_step(stem):
    from core.data.mnist import load_mnist
    from core.train import Trainer, make_optimizer

    data = load_mnist(source="sample")
    g = load_graph(example_path(stem))
    tr = Trainer(g, make_optimizer("sgd", lr=0.01), batch_size=8)
    info = tr.train_step(data.train_x[:8] / 255.0, data.train_y[:8], 0.01)
    assert np.isfinite(info.loss) and info.grad_norm > 0
