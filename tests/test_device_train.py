"""Training on the CuPy stand-in (a NumPy-backed device that refuses silent conversion to NumPy):
LeNet-5 and a small CNN with batch norm and dropout, every optimizer, against the CPU; seeded
runs repeat themselves; checkpoints move between the devices; device choice and its errors."""

import numpy as np
import pytest
from cupy_standin import install, uninstall_cupy

from core.data.datasets import ArrayDataset, Augment
from core.errors import StudioError
from core.executor import Executor
from core.graph import Graph
from core.kernels import backend
from core.kernels.backend import DeviceError, device_status, resolve_device
from core.serialize import load_graph
from core.train import Trainer
from core.train.optim import OPTIMIZERS, make_optimizer
from examples import resolve

RATES = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "rmsprop": 1e-3, "adam": 1e-3,
         "adagrad": 0.02, "adadelta": 1.0}


@pytest.fixture
def cp(monkeypatch):
    return install(monkeypatch)


def _images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.normal(size=(n, 1, 28, 28)).astype(np.float32),
                        rng.integers(0, 10, n), name="random digits")


def _small_cnn():
    """Conv, batch norm, avg and max pool, dropout, dense: every kind of layer state."""
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 1, 28, 28), role="features")
    # no bias before batch norm: its gradient is zero up to rounding, which Adam would amplify
    h = g.add("conv2d", x, out_channels=4, kernel=(5, 5), stride=(2, 2), bias=False)
    h = g.add("batch_norm", h)
    h = g.add("relu", h)
    h = g.add("avg_pool2d", h, kernel=(2, 2), stride=(2, 2))
    h = g.add("max_pool2d", h, kernel=(2, 2), stride=(1, 1))
    h = g.add("dropout", g.add("flatten", h), p=0.3)
    z = g.add("dense", h, units=10)
    t = g.add("input", name="t", shape=(None,), role="target")
    g.set_loss(g.add("softmax_cross_entropy", z, t, name="loss"))
    return g


def _train(graph, device, optimizer="momentum", steps=3, **kw):
    tr = Trainer(graph, make_optimizer(optimizer, lr=RATES[optimizer]), batch_size=16, seed=3,
                 device=device, **kw)
    result = tr.fit(_images(), epochs=1, max_iterations=steps)
    return tr, result


def _weights(graph):
    return {(n.id, w): v for n in graph.nodes.values() for w, v in n.weights.items()}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_lenet5_trains_on_the_device_like_on_the_cpu(cp, optimizer):
    """A few steps of LeNet-5 with each optimizer give the CPU's losses and weights within
    float32 rounding; afterwards the weights are NumPy arrays again, in the same graph."""
    g_cpu, g_dev = load_graph(resolve("lenet5")), load_graph(resolve("lenet5"))
    cpu, _ = _train(g_cpu, "cpu", optimizer)
    dev, _ = _train(g_dev, "cuda", optimizer)
    assert dev.device == "cuda" and cpu.device == "cpu"
    h_cpu, h_dev = cpu._train_ex, dev._train_ex
    assert h_dev.device == "cuda" and h_cpu.iteration == h_dev.iteration == 3
    for key, w in _weights(g_cpu).items():
        d = _weights(g_dev)[key]
        assert type(d) is np.ndarray, f"{key} left on the device"
        np.testing.assert_allclose(d, w, rtol=2e-4, atol=2e-5, err_msg=f"{optimizer} {key}")
    for name in dev.optimizer.slots:
        for key, buf in dev.optimizer.state[name].items():
            np.testing.assert_allclose(buf, cpu.optimizer.state[name][key], rtol=2e-4,
                                       atol=2e-6, err_msg=f"{optimizer} {name} {key}")


def test_batch_losses_and_accuracy_agree_step_by_step(cp):
    """The figures each batch reports (loss, accuracy, gradient norms) agree between devices."""
    reports = {}
    for device in ("cpu", "cuda"):
        g = load_graph(resolve("mlp_784_30_10"))
        tr = Trainer(g, make_optimizer("sgd", lr=0.1), batch_size=16, seed=1, device=device)
        seen = []
        tr.fit(_images(), epochs=2, on_batch=seen.append)
        reports[device] = seen
    assert len(reports["cpu"]) == len(reports["cuda"]) == 6
    for a, b in zip(reports["cpu"], reports["cuda"]):
        assert b.loss == pytest.approx(a.loss, rel=1e-5)
        assert b.accuracy == a.accuracy
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-5)
        assert b.grad_norms == pytest.approx(a.grad_norms, rel=1e-5)


def test_cnn_with_batch_norm_and_dropout_is_reproducible_on_the_device(cp):
    """Two seeded runs on the device give the same numbers bit for bit (dropout draws from the
    device's generator, seeded per node and step); the running statistics come back to the host."""
    runs = []
    for _ in range(2):
        g = _small_cnn()
        _train(g, "cuda", "adam", steps=3)
        runs.append(g)
    for key, w in _weights(runs[0]).items():
        np.testing.assert_array_equal(_weights(runs[1])[key], w, err_msg=str(key))
    bn = next(n for n in runs[0].nodes.values() if n.op_id == "batch_norm")
    assert type(bn.state["running_mean"]) is np.ndarray
    other = next(n for n in runs[1].nodes.values() if n.op_id == "batch_norm")
    np.testing.assert_array_equal(bn.state["running_var"], other.state["running_var"])


def test_cnn_without_dropout_matches_the_cpu(cp):
    """Batch norm (training and evaluation), both pools and the evaluation report agree."""
    results = {}
    for device in ("cpu", "cuda"):
        g = _small_cnn()
        g.set_params(next(n for n in g.nodes.values() if n.op_id == "dropout").id, p=0.0)
        tr, _ = _train(g, device, "adam", steps=3)
        results[device] = (g, tr.evaluate(_images(32, seed=5)))
    (g_cpu, ev_cpu), (g_dev, ev_dev) = results["cpu"], results["cuda"]
    for key, w in _weights(g_cpu).items():
        np.testing.assert_allclose(_weights(g_dev)[key], w, rtol=2e-4, atol=2e-5)
    assert ev_dev.loss == pytest.approx(ev_cpu.loss, rel=1e-5)
    assert ev_dev.accuracy == ev_cpu.accuracy
    np.testing.assert_array_equal(ev_dev.confusion, ev_cpu.confusion)


def test_augmented_batches_are_made_on_the_device_like_on_the_cpu(cp):
    """Random shifts and rotations (drawn on the host, applied on the device) give the
    CPU's training run."""
    weights = {}
    for device in ("cpu", "cuda"):
        g = load_graph(resolve("mlp_784_30_10"))
        tr = Trainer(g, make_optimizer("sgd", lr=0.1), batch_size=16, seed=2, device=device,
                     augment=Augment(shift=2, rotation=10.0))
        tr.fit(_images(), epochs=1)
        weights[device] = _weights(g)
    for key, w in weights["cpu"].items():
        np.testing.assert_allclose(weights["cuda"][key], w, rtol=1e-4, atol=1e-5)


def test_checkpoint_saved_on_the_device_loads_and_continues_on_the_cpu(cp, tmp_path):
    """A checkpoint written during a device run holds host arrays: a CPU trainer loads it and
    evaluates to the device's numbers, and a device trainer loads a CPU checkpoint back."""
    ckpt = tmp_path / "run.npz"
    g = load_graph(resolve("lenet5"))
    dev = Trainer(g, make_optimizer("adam", lr=1e-3), batch_size=16, seed=0, device="cuda")
    dev.fit(_images(), epochs=1, checkpoint=ckpt)
    test = _images(32, seed=9)
    ev_dev = dev.evaluate(test)

    g_cpu = load_graph(resolve("lenet5"))
    cpu = Trainer(g_cpu, make_optimizer("adam", lr=1e-3), batch_size=16, seed=0, device="cpu")
    cpu.load_checkpoint(ckpt)
    assert cpu.optimizer.name == "adam" and cpu.epoch == 1
    ev_cpu = cpu.evaluate(test)
    assert ev_cpu.loss == pytest.approx(ev_dev.loss, rel=1e-5)
    np.testing.assert_array_equal(ev_cpu.confusion, ev_dev.confusion)

    cpu.fit(_images(), epochs=2, checkpoint=ckpt)
    again = Trainer(load_graph(resolve("lenet5")), batch_size=16, device="cuda")
    again.load_checkpoint(ckpt)
    assert again.evaluate(test).loss == pytest.approx(cpu.evaluate(test).loss, rel=1e-5)
    again.fit(_images(), epochs=3)  # the loaded host buffers join the device run
    assert again.epoch == 3


def test_executor_on_the_device_keeps_values_there(cp):
    """A forward and backward run on the device leaves every value and gradient on it, and the
    graph's own weights (host arrays) unchanged."""
    g = load_graph(resolve("lenet5"))
    g.initialize(0)
    before = {k: v.copy() for k, v in _weights(g).items()}
    ex = Executor(g, device="cuda")
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    ex.run({n.name: (x if n.params.get("role") == "features" else np.array([3, 4]))
            for n in g.nodes.values() if n.op_id == "input"})
    assert all(isinstance(v, cp.ndarray) for v in ex.values.values())
    assert all(isinstance(v, cp.ndarray) for v in ex.weight_grads.values())
    for key, w in _weights(g).items():
        assert type(w) is np.ndarray
        np.testing.assert_array_equal(w, before[key])


def test_auto_uses_the_device_when_there_and_the_cpu_otherwise(monkeypatch):
    """device="auto" picks CUDA where CuPy finds a device, the CPU where it does not;
    "cuda" without one is an error naming what is missing."""
    install(monkeypatch)
    assert resolve_device("auto") == "cuda"
    assert device_status()["cuda"].available
    install(monkeypatch, devices=0)
    assert resolve_device("auto") == "cpu"
    status = device_status()["cuda"]
    assert not status.available and "no CUDA device" in status.reason
    uninstall_cupy(monkeypatch)
    assert resolve_device("auto") == "cpu"
    status = device_status()["cuda"]
    assert not status.available and "CuPy is not installed" in status.reason
    with pytest.raises(DeviceError, match="CuPy is not installed.*gpu"):
        Trainer(load_graph(resolve("lenet5")), device="cuda")
    assert issubclass(DeviceError, StudioError)  # the command line prints it as one line


def test_the_environment_variable_chooses_the_device_for_scripts(monkeypatch):
    """$BACKPROP_STUDIO_DEVICE sets the device of a Trainer made without one; a bad value
    names the variable."""
    install(monkeypatch)
    monkeypatch.setenv(backend.DEVICE_ENV, "cuda")
    assert Trainer(load_graph(resolve("lenet5"))).device == "cuda"
    assert Trainer(load_graph(resolve("lenet5")), device="cpu").device == "cpu"
    monkeypatch.setenv(backend.DEVICE_ENV, "gpu")
    with pytest.raises(DeviceError, match="BACKPROP_STUDIO_DEVICE"):
        Trainer(load_graph(resolve("lenet5")))
    monkeypatch.delenv(backend.DEVICE_ENV)
    assert Trainer(load_graph(resolve("lenet5"))).device == "cpu"


def test_a_training_epoch_on_the_device_copies_no_arrays_between_host_and_device(cp):
    """Once the weights and the data set are on the device, an epoch moves only the shuffled
    order there and a few numbers per batch back (loss, accuracy, gradient norms)."""
    from cupy_standin import TRANSFERS

    g = load_graph(resolve("lenet5"))
    data = _images()
    tr = Trainer(g, make_optimizer("adam", lr=1e-3), batch_size=16, seed=0, device="cuda")
    tensors = len(tr.tensors())
    with tr._on_device():
        tr.fit(data, epochs=1)  # copies the weights and the data set to the device
        TRANSFERS.clear()
        tr.fit(data, epochs=2)
        moved = list(TRANSFERS)
    to_device = [n for kind, n in moved if kind == "to_device"]
    to_host = [n for kind, n in moved if kind == "to_host"]
    assert to_device == [len(data)], to_device  # the epoch's order of the samples
    assert max(to_host) <= tensors, to_host  # the gradient norms, one number per tensor
    # three batches, five reads each: the target bounds check (2), loss, norms and accuracy
    assert len(to_host) <= 3 * 5, to_host
