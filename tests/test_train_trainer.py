"""The trainer: learning on the embedded sample, checkpoints, NaN reports, control, k-fold."""

import json
import threading

import numpy as np
import pytest

from core.data.datasets import ArrayDataset, Normalizer
from core.data.mnist import load_mnist
from core.errors import FileFormatError, GraphError, NonFiniteError
from core.graph import Graph
from core.ops.base import REGISTRY, get_op, register_op
from core.ops.losses import SoftmaxCrossEntropy
from core.serialize import load_graph
from core.train import (
    EarlyStopping,
    Trainer,
    cross_validate,
    load_weights,
    make_optimizer,
    parse_schedule,
)
from examples import example_path


@pytest.fixture(scope="module")
def sample():
    data = load_mnist(source="sample")
    norm = Normalizer.fit(data.train_x, scale=1 / 255)
    return (ArrayDataset(norm.apply(data.train_x), data.train_y, "train"),
            ArrayDataset(norm.apply(data.test_x), data.test_y, "test"))


def small_cnn(dropout=True) -> Graph:
    g = Graph("float32", name="small cnn")
    x = g.add("input", name="image", shape=(None, 1, 28, 28), role="features")
    t = g.add("input", name="label", shape=(None,), role="target")
    h = g.add("conv2d", x, name="conv", out_channels=4, kernel=(5, 5), stride=(2, 2))
    h = g.add("max_pool2d", g.add("relu", h), name="pool", kernel=(2, 2), stride=(2, 2))
    h = g.add("flatten", h)
    if dropout:
        h = g.add("dropout", h, name="drop", p=0.3)
    z = g.add("dense", h, name="fc", units=10)
    g.set_loss(g.add("softmax_cross_entropy", z, t, name="loss"))
    return g


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    return ArrayDataset((centres[y] + rng.normal(scale=0.6, size=(n, 2))).astype(np.float32), y)


def blob_graph() -> Graph:
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 2), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    z = g.add("dense", g.add("tanh", g.add("dense", x, units=8)), units=3, name="out")
    g.set_loss(g.add("softmax_cross_entropy", z, t, name="loss"))
    return g


def test_mlp_preset_learns_the_embedded_sample(sample):
    """The 784-30-10 sigmoid MLP reaches ≥ 88 % on the sample's 1,000 test digits in 3 epochs."""
    train, test = sample
    g = load_graph(example_path("mlp_784_30_10"))
    tr = Trainer(g, make_optimizer("momentum", lr=0.1, momentum=0.9), batch_size=32, seed=0)
    result = tr.fit(train, epochs=3)
    ev = tr.evaluate(test)
    assert result.status == "completed" and result.iterations == 3 * 157
    assert ev.accuracy >= 0.88, ev.table()
    assert ev.confusion.sum() == 1000 and np.all(ev.auc > 0.95)


def test_small_cnn_learns_the_embedded_sample(sample):
    """A one-conv CNN reaches ≥ 85 % test accuracy on the sample after 2 epochs."""
    train, test = sample
    tr = Trainer(small_cnn(dropout=False), make_optimizer("adam", lr=0.003), batch_size=64)
    tr.fit(train, epochs=2)
    assert tr.evaluate(test).accuracy >= 0.85


def test_callbacks_report_loss_rate_norms_and_validation(sample):
    train, test = sample
    train = train.subset(np.arange(256))
    batches, epochs = [], []
    tr = Trainer(small_cnn(), make_optimizer("sgd", lr=0.1),
                 parse_schedule("step:step_size=1,gamma=0.5", 0.1), batch_size=64)
    tr.fit(train, test.subset(np.arange(100)), epochs=2, on_batch=batches.append,
           on_epoch=epochs.append)
    assert len(batches) == 8 and [b.batch for b in batches[:4]] == [0, 1, 2, 3]
    assert set(batches[0].grad_norms) == {"conv.W", "conv.b", "fc.W", "fc.b"}
    assert all(v > 0 for v in batches[0].grad_norms.values())
    assert batches[0].lr == 0.1 and batches[-1].lr == 0.05
    assert batches[0].grad_norm == pytest.approx(
        np.sqrt(sum(v ** 2 for v in batches[0].grad_norms.values())))
    assert [e.epoch for e in epochs] == [0, 1]
    assert 0 <= epochs[1].val_accuracy <= 1 and np.isfinite(epochs[1].val_loss)
    assert epochs[1].images_per_second > 0


def _fit_from_scratch(train, epochs, ckpt=None, resume=None):
    g = small_cnn()
    tr = Trainer(g, make_optimizer("adam", lr=0.01),
                 parse_schedule("plateau:factor=0.5,patience=0", 0.01, warmup=0.5),
                 batch_size=32, seed=7)
    if resume is not None:
        tr.load_checkpoint(resume)
    tr.fit(train, train.subset(np.arange(64)), epochs, checkpoint=ckpt)
    return tr


def test_checkpoint_resume_continues_exactly(sample, tmp_path):
    """Two epochs in one go = one epoch, save, load into a fresh graph, one more epoch."""
    train = sample[0].subset(np.arange(320))
    straight = _fit_from_scratch(train, 2)
    ckpt = tmp_path / "run.npz"
    _fit_from_scratch(train, 1, ckpt=ckpt)
    resumed = _fit_from_scratch(train, 2, resume=ckpt)
    a, b = straight.tensors(), resumed.tensors()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    timing = ("seconds", "images_per_second")
    assert [{k: v for k, v in h.items() if k not in timing} for h in straight.history] == \
        [{k: v for k, v in h.items() if k not in timing} for h in resumed.history]
    assert resumed.optimizer.steps == straight.optimizer.steps == 20
    assert resumed.schedule.current == straight.schedule.current


def test_checkpoint_is_plain_npz_and_json(sample, tmp_path):
    train = sample[0].subset(np.arange(64))
    ckpt = tmp_path / "c.npz"
    tr = _fit_from_scratch(train, 1, ckpt=ckpt)
    with np.load(ckpt, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        assert "weights/" + tr.graph.node("conv").id + "/W" in z.files
    g = small_cnn()
    meta = load_weights(g, ckpt)
    assert meta["epoch"] == 1 and meta["optimizer"]["name"] == "adam"
    assert np.array_equal(g.node("conv").weights["W"], tr.graph.node("conv").weights["W"])


def test_checkpoint_for_another_graph_is_a_clear_error(sample, tmp_path):
    ckpt = tmp_path / "c.npz"
    _fit_from_scratch(sample[0].subset(np.arange(64)), 1, ckpt=ckpt)
    with pytest.raises(FileFormatError, match="another graph"):
        load_weights(blob_graph(), ckpt)
    other = small_cnn()
    other.set_params("fc", units=5)
    with pytest.raises(FileFormatError, match="shape"):
        Trainer(other).load_checkpoint(ckpt)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FileFormatError, match="not a checkpoint"):
        load_weights(small_cnn(), tmp_path / "junk.npz")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_stops_training_and_names_the_node():
    """log of a negative number: the report names the log node, not just 'loss is NaN'."""
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 2), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    h = g.add("dense", x, units=3, name="fc")
    z = g.add("log", h, name="bad_log")
    g.set_loss(g.add("softmax_cross_entropy", z, t, name="loss"))
    data = ArrayDataset(np.array([[1, -1], [-1, 1]] * 4, np.float32), np.array([0, 1] * 4))
    tr = Trainer(g, make_optimizer("sgd", lr=0.1), batch_size=4)
    before = {k: v.copy() for k, v in tr.tensors().items()} if tr.tensors() else {}
    with pytest.raises(NonFiniteError) as err:
        tr.fit(data, epochs=1)
    assert err.value.node == "bad_log" and err.value.phase == "forward"
    assert "epoch 1" in str(err.value) and "bad_log" in str(err.value)
    for k, v in before.items():  # the failing batch did not update anything
        assert np.array_equal(tr.tensors()[k], v)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_training_reports_a_non_finite_node():
    """A learning rate far too large makes a regression blow up; the report names a node."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    y = (x @ np.array([[1.0], [2.0]], np.float32))
    g = Graph("float32")
    xi = g.add("input", name="x", shape=(None, 2), role="features")
    ti = g.add("input", name="y", shape=(None, 1), role="target")
    g.set_loss(g.add("squared_error", g.add("dense", xi, units=1, name="fc"), ti, name="loss"))
    tr = Trainer(g, make_optimizer("sgd", lr=10.0), batch_size=16)
    with pytest.raises(NonFiniteError) as err:
        tr.fit(ArrayDataset(x, y), epochs=50)
    assert err.value.node in ("fc", "loss")
    assert 0 < tr.iteration < 200


def test_cancel_from_a_callback_stops_after_that_batch():
    tr = Trainer(blob_graph(), make_optimizer("sgd", lr=0.1), batch_size=10)

    def on_batch(info):
        if info.iteration == 3:
            tr.cancel()

    result = tr.fit(blobs(), epochs=3, on_batch=on_batch)
    assert result.status == "cancelled" and result.iterations == 3 and result.epochs == 0


def test_pause_and_resume_from_another_thread():
    tr = Trainer(blob_graph(), make_optimizer("sgd", lr=0.1), batch_size=10)
    paused_at = threading.Event()

    def on_batch(info):
        if info.iteration == 2:
            tr.pause()
            paused_at.set()

    box = {}
    worker = threading.Thread(target=lambda: box.setdefault(
        "r", tr.fit(blobs(), epochs=1, on_batch=on_batch)))
    worker.start()
    assert paused_at.wait(10)
    worker.join(0.3)
    assert worker.is_alive() and tr.paused and tr.iteration == 2
    tr.resume()
    worker.join(10)
    assert not worker.is_alive() and box["r"].status == "completed" and tr.iteration == 12


def test_cancel_wakes_a_paused_trainer():
    tr = Trainer(blob_graph(), batch_size=10)
    tr.pause()
    worker = threading.Thread(target=lambda: tr.fit(blobs(), epochs=1))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive()
    tr.cancel()
    worker.join(10)
    assert not worker.is_alive() and tr.iteration == 0


def test_max_iterations():
    tr = Trainer(blob_graph(), batch_size=10)
    assert tr.fit(blobs(), epochs=5, max_iterations=7).status == "max_iterations"
    assert tr.iteration == 7


def test_early_stopping_restores_the_best_weights():
    data = blobs()
    tr = Trainer(blob_graph(), make_optimizer("sgd", lr=0.0), batch_size=40)
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    result = tr.fit(data, data, epochs=20, early_stopping=stopper)
    assert result.status == "early_stopped" and result.epochs == 3
    assert result.best_epoch == 0


def test_xor_preset_learns_from_the_values_stored_in_it():
    g = load_graph(example_path("xor_mlp"))
    x, t = g.node("x").value, g.node("label").value
    tr = Trainer(g, make_optimizer("adam", lr=0.05), batch_size=4, seed=1)
    tr.fit(ArrayDataset(x, t), epochs=300)
    ev = tr.evaluate(ArrayDataset(x, t))
    assert ev.accuracy == 1.0 and ev.loss < 0.1


def test_k_fold_cross_validation():
    seen = []
    cv = cross_validate(blob_graph, blobs(150), k=3, epochs=20,
                        optimizer=lambda: make_optimizer("adam", lr=0.05), batch_size=16,
                        on_fold=lambda i, ev: seen.append(i))
    assert seen == [0, 1, 2] and len(cv.folds) == 3
    assert sum(int(f.support.sum()) for f in cv.folds) == 150
    assert cv.mean_accuracy > 0.9 and cv.std_accuracy >= 0


def test_graph_without_features_or_loss_is_refused():
    g = blob_graph()
    g.set_loss(None)
    with pytest.raises(GraphError, match="no loss"):
        Trainer(g)
    g2 = Graph()
    a = g2.add("parameter", name="a", shape=(2,))
    g2.set_loss(g2.add("sum", g2.add("square", a)))
    with pytest.raises(GraphError, match="features"):
        Trainer(g2)


# ------------------------------------------------- checkpoints checked before use
def _save(tr, path):
    tr.save_checkpoint(path)
    with np.load(path, allow_pickle=False) as z:
        return {k: np.array(z[k]) for k in z.files}


def _rewrite(path, arrays):
    np.savez(path, **arrays)


def _weights_of(g):
    return {(n.id, w): v.copy() for n in g.nodes.values() for w, v in n.weights.items()}


def test_checkpoint_of_another_graph_with_the_same_node_ids_is_refused(tmp_path):
    """Same ids n1…, other ops: refused before any weight is created or changed."""
    ckpt = tmp_path / "blob.npz"
    _save(Trainer(blob_graph()), ckpt)
    other = Graph("float32")
    x = other.add("input", name="x", shape=(None, 2), role="features")
    t = other.add("input", name="t", shape=(None,), role="target")
    z = other.add("dense", x, units=3, name="out")
    other.set_loss(other.add("softmax_cross_entropy", z, t, name="loss"))
    with pytest.raises(FileFormatError, match="another graph"):
        load_weights(other, ckpt)
    assert _weights_of(other) == {}


def test_checkpoint_with_a_missing_tensor_is_refused_and_changes_nothing(tmp_path):
    ckpt = tmp_path / "c.npz"
    arrays = _save(Trainer(blob_graph(), seed=1), ckpt)
    out_id = [k for k in arrays if k.startswith("weights/") and k.endswith("/b")][-1]
    del arrays[out_id]
    _rewrite(ckpt, arrays)
    target = blob_graph()
    target.initialize(5)
    before = _weights_of(target)
    with pytest.raises(FileFormatError, match="missing") as err:
        load_weights(target, ckpt)
    assert out_id in str(err.value)
    after = _weights_of(target)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_checkpoint_with_a_wrong_shape_late_in_the_file_changes_nothing(tmp_path):
    """The first arrays fit, a later one does not: nothing is half-applied."""
    ckpt = tmp_path / "c.npz"
    arrays = _save(Trainer(blob_graph(), seed=1), ckpt)
    last = sorted(k for k in arrays if k.startswith("weights/"))[-1]
    arrays[last] = np.zeros(arrays[last].shape + (2,), np.float32)
    _rewrite(ckpt, arrays)
    target = blob_graph()
    tr = Trainer(target, seed=5)
    before = _weights_of(target)
    with pytest.raises(FileFormatError, match="shape"):
        tr.load_checkpoint(ckpt)
    assert all(np.array_equal(before[k], v) for k, v in _weights_of(target).items())
    assert tr.epoch == 0 and tr.seed == 5


def test_checkpoint_with_an_unknown_weight_name_or_bad_state_is_refused(tmp_path):
    ckpt = tmp_path / "c.npz"
    arrays = _save(Trainer(blob_graph()), ckpt)
    w_key = sorted(k for k in arrays if k.startswith("weights/"))[0]
    bad = dict(arrays)
    bad[w_key.rsplit("/", 1)[0] + "/gamma"] = np.ones(3, np.float32)
    _rewrite(ckpt, bad)
    with pytest.raises(FileFormatError, match="has no weight .gamma."):
        load_weights(blob_graph(), ckpt)
    bad = dict(arrays)
    bad[w_key.replace("weights/", "state/").rsplit("/", 1)[0] + "/running_mean"] = np.zeros(3)
    _rewrite(ckpt, bad)
    # a dense layer keeps no state at all
    with pytest.raises(FileFormatError, match="keeps no state .running_mean."):
        load_weights(blob_graph(), ckpt)


def test_batch_norm_state_shape_is_checked(tmp_path):
    def bn_graph(units):
        g = Graph("float32")
        x = g.add("input", name="x", shape=(None, 2), role="features")
        t = g.add("input", name="t", shape=(None,), role="target")
        h = g.add("batch_norm", g.add("dense", x, units=units, name="fc"), name="bn")
        g.set_loss(g.add("softmax_cross_entropy", g.add("dense", h, units=3, name="out"), t,
                         name="loss"))
        return g

    tr = Trainer(bn_graph(4), make_optimizer("sgd", lr=0.1), batch_size=40)
    tr.fit(blobs(), epochs=1)
    ckpt = tmp_path / "bn.npz"
    arrays = _save(tr, ckpt)
    g = bn_graph(4)
    load_weights(g, ckpt)
    assert np.array_equal(g.node("bn").state["running_mean"], tr.graph.node("bn").state[
        "running_mean"])
    key = [k for k in arrays if k.endswith("/running_mean")][0]
    arrays[key] = np.zeros(5, np.float32)
    _rewrite(ckpt, arrays)
    with pytest.raises(FileFormatError, match="running_mean"):
        load_weights(bn_graph(4), ckpt)
    # a NaN running variance made every prediction NaN: a wrong accuracy, no error
    arrays[key] = np.zeros(4, np.float32)
    var = key.replace("running_mean", "running_var")
    arrays[var] = np.full(4, np.nan, np.float32)
    _rewrite(ckpt, arrays)
    with pytest.raises(FileFormatError, match="running_var: holds NaN or Inf"):
        load_weights(bn_graph(4), ckpt)


def test_early_stopping_progress_is_saved_and_resumed(tmp_path):
    data = blobs()
    ckpt = tmp_path / "c.npz"
    tr = Trainer(blob_graph(), make_optimizer("sgd", lr=0.0), batch_size=40)
    tr.fit(data, data, epochs=2, early_stopping=EarlyStopping(patience=2), checkpoint=ckpt)
    tr2 = Trainer(blob_graph(), batch_size=40)
    tr2.load_checkpoint(ckpt)
    stopper = EarlyStopping(patience=2)
    result = tr2.fit(data, data, epochs=20, early_stopping=stopper)
    # epochs 1 and 2 (0-based) did not improve on epoch 0: stop after epoch 2, as in one run
    assert result.status == "early_stopped" and result.epochs == 3 and stopper.best_epoch == 0


def _meta_only(path, meta):
    np.savez(path, **{"meta.json": np.array(json.dumps(meta))})


@pytest.mark.parametrize("case", ["truncated", "npy", "json", "meta_list", "no_epoch"])
def test_files_that_are_not_checkpoints_are_clear_errors(tmp_path, case):
    good = tmp_path / "good.npz"
    _save(Trainer(blob_graph()), good)
    path = tmp_path / "bad.npz"
    if case == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        expect = "damaged or truncated"
    elif case == "npy":
        path = tmp_path / "w.npy"
        np.save(path, np.zeros(3))
        expect = "not an .npz archive"
    elif case == "json":
        path.write_text('{"format": "backprop-studio-checkpoint"}')
        expect = "not an .npz archive"
    elif case == "meta_list":
        _meta_only(path, [1, 2])
        expect = "meta.json: must be a JSON object"
    else:
        _meta_only(path, {"format": "backprop-studio-checkpoint", "version": 1})
        expect = "meta.json.epoch"
    g = blob_graph()
    with pytest.raises(FileFormatError, match=expect) as err:
        Trainer(g).load_checkpoint(path)
    assert str(path) in str(err.value) and "allow_pickle" not in str(err.value)


def test_large_finite_float32_gradients_are_not_reported_as_non_finite():
    """Gradients ~1e20 are finite in float32; the global norm must be too (and clip them)."""
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 2), role="features")
    w = g.add("parameter", name="W", shape=(2, 1), init="ones")
    g.set_loss(g.add("sum", g.add("matmul", x, w), name="loss"))
    tr = Trainer(g, make_optimizer("sgd", lr=1.0, clip_norm=1.0), batch_size=4)
    info = tr.train_step(np.full((4, 2), 1e20, np.float32), np.zeros(4))
    assert info.grad_norm == pytest.approx(np.sqrt(2) * 4e20, rel=1e-5)
    assert info.grad_norms["W"] == pytest.approx(info.grad_norm)
    assert np.all(np.isfinite(g.node("W").value)) and np.all(g.node("W").value < 1)


def test_predict_and_evaluate_without_a_prediction_input_say_so():
    g = Graph("float32")
    g.add("input", name="x", shape=(None, 2), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    g.set_loss(g.add("sum", t, name="loss"))
    tr = Trainer(g)
    for call in (lambda: tr.predict(np.zeros((2, 2), np.float32)),
                 lambda: tr.evaluate(ArrayDataset(np.zeros((2, 2), np.float32), np.zeros(2)))):
        with pytest.raises(GraphError, match="loss 'loss' holds the predictions") as err:
            call()
        assert err.value.nodes == ("loss",)


def test_has_scores_says_whether_the_loss_has_a_prediction_input():
    g = Graph("float32")
    g.add("input", name="x", shape=(None, 2), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    g.set_loss(g.add("sum", t, name="loss"))
    assert Trainer(g).has_scores is False
    assert Trainer(blob_graph()).has_scores is True


@pytest.fixture
def logits_loss():
    """A loss the trainer has never heard of by id, declaring that it reads logits."""

    @register_op("test_logits_loss")
    class _TestLogitsLoss(SoftmaxCrossEntropy):
        label = "Test logits loss"
        scores = "logits"

    try:
        yield "test_logits_loss"
    finally:
        del REGISTRY["test_logits_loss"]


def test_a_new_loss_declaring_logits_reports_accuracy_and_probabilities(logits_loss):
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 2), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    z = g.add("dense", x, units=3, name="out")
    g.set_loss(g.add(logits_loss, z, t, name="loss"))
    data = blobs()
    tr = Trainer(g, make_optimizer("sgd", lr=0.5), batch_size=16)
    tr.fit(data, epochs=10)
    assert tr.history[-1]["train_accuracy"] > 0.9
    probs = tr.predict(data.x)
    # read as logits, the scores go through softmax: probabilities, not raw scores
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert probs.min() >= 0.0
    assert tr.evaluate(data).accuracy > 0.9


def test_each_loss_says_what_its_prediction_input_holds():
    from_logits = get_op("binary_cross_entropy")(from_logits=True)
    kinds = {"softmax_cross_entropy": "logits", "nll": "log_probs", "squared_error": "scores",
             "hinge": "scores", "binary_cross_entropy": "prob"}
    assert {k: get_op(k)().score_kind() for k in kinds} == kinds
    assert from_logits.score_kind() == "logit"
    assert get_op("relu")().score_kind() is None
