"""The training recipe the CLI and the Training panel share (core.train.recipe)."""

import ast
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.data.datasets import ArrayDataset, Normalizer, train_val_split
from core.errors import StudioError
from core.graph import Graph
from core.serialize import load_graph
from core.train import OPTIMIZERS
from core.train.recipe import (
    DEFAULT_LR,
    FULL_BATCH_FEED,
    TRAIN_DEFAULTS,
    TrainSettings,
    default_augment,
    image_training_data,
    make_training_optimizer,
    normalized_test_set,
    prepare_full_batch,
    training_data,
    training_problem,
)
from examples import example_path

ROOT = Path(__file__).resolve().parent.parent


def fake_images(n=200, seed=0):
    """MNIST-like arrays whose first images are dark and last ones bright, so a normalizer
    fitted on more than the training split has another mean."""
    rng = np.random.default_rng(seed)
    level = np.linspace(10, 240, n)[:, None, None]
    train_x = np.clip(level + rng.normal(0, 5, (n, 28, 28)), 0, 255).astype(np.uint8)
    test_x = np.full((20, 28, 28), 255, np.uint8)
    return SimpleNamespace(train_x=train_x, train_y=rng.integers(0, 10, n).astype(np.uint8),
                           test_x=test_x, test_y=np.zeros(20, np.uint8))


def dense_graph() -> Graph:
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 1, 28, 28), role="features")
    t = g.add("input", name="t", shape=(None,), role="target")
    z = g.add("dense", g.add("flatten", x), units=10, name="fc")
    g.set_loss(g.add("softmax_cross_entropy", z, t, name="loss"))
    return g


def test_the_normalizer_is_fitted_on_the_training_split_only():
    images = fake_images()
    data = image_training_data(dense_graph(), images, "fake", val_split=0.25, seed=3)
    full = ArrayDataset(images.train_x, images.train_y)
    train_raw, val_raw = train_val_split(full, 0.25, 3)
    want = Normalizer.fit(train_raw.x, scale=1 / 255)
    assert data.extra["data"]["normalizer"] == want.to_dict()
    assert want.to_dict() != Normalizer.fit(images.train_x, scale=1 / 255).to_dict()
    assert (len(data.train), len(data.val), len(data.test)) == (len(train_raw), len(val_raw), 20)
    np.testing.assert_allclose(data.test.x, want.apply(images.test_x, "float32"))
    assert data.extra["data"] == {"set": "mnist", "source": "files",
                                  "normalizer": want.to_dict(), "val_split": 0.25,
                                  "limit": None}


def test_the_default_learning_rate_depends_on_the_optimizer():
    for name in OPTIMIZERS:
        opt, lr = make_training_optimizer(name)
        assert (opt.name, lr, opt.lr) == (name, DEFAULT_LR[name], DEFAULT_LR[name])
    opt, lr = make_training_optimizer("Adam", lr=0.05)
    assert (opt.name, lr, opt.lr) == ("adam", 0.05, 0.05)
    with pytest.raises(ValueError):
        make_training_optimizer("sgd", lr=-1.0)


def test_panel_settings_default_to_the_command_line_defaults():
    s = TrainSettings()
    shared = {f.name for f in fields(s)} & set(TRAIN_DEFAULTS)
    assert shared == {"batch_size", "seed", "val_split", "optimizer", "schedule"}
    assert {k: getattr(s, k) for k in shared} == {k: TRAIN_DEFAULTS[k] for k in shared}
    assert s.lr == DEFAULT_LR[TRAIN_DEFAULTS["optimizer"]]


def test_training_problem_says_what_is_missing():
    g = dense_graph()
    assert training_problem(g) is None
    g.set_loss(None)
    assert training_problem(g).startswith("choose a loss node first")
    g = dense_graph()
    g.add("input", name="x2", shape=(None, 2), role="features")
    assert "several features inputs ('x', 'x2')" in training_problem(g)
    g = Graph("float32")
    x = g.add("input", name="x", shape=(None, 2), role="features")
    g.set_loss(g.add("sum", x, name="loss"))
    assert training_problem(g).startswith("nothing to train")


def test_full_batch_feeds_one_zero_sample_and_keeps_the_stored_target():
    g = Graph("float64")
    t = g.add("input", name="t", shape=(None,), role="target")
    w = g.add("parameter", name="w", shape=(1,))
    g.set_loss(g.add("squared_error", w, t, name="loss"))
    data = prepare_full_batch(g)
    assert g.node("t").params["role"] == "value"
    assert g.node(FULL_BATCH_FEED).params["role"] == "features"
    assert data.train.x.shape == (1, 1) and not data.train.x.any()
    assert (data.val, data.test, data.extra) == (None, None, {"data": {"set": "graph"}})


def test_training_data_follows_the_source_the_panel_chose():
    heard = []
    data, full = training_data(dense_graph(), TrainSettings(source="sample", limit=500),
                               heard.append)
    assert not full and heard == ["Reading the embedded MNIST sample…"]
    assert (len(data.train) + len(data.val), len(data.test)) == (500, 1000)
    assert 40 <= len(data.val) <= 60  # a tenth (the default split), per class
    assert data.extra["data"]["source"] == "sample"
    with pytest.raises(StudioError, match="holds no values"):
        training_data(dense_graph(), TrainSettings(source="graph"))
    with pytest.raises(StudioError, match="choose a folder"):
        training_data(dense_graph(), TrainSettings(source="folder"))
    xor = load_graph(example_path("xor_mlp"))
    data, full = training_data(xor, TrainSettings(source="graph"))
    assert not full and len(data.train) == 4 and data.test is None


def test_augment_fill_is_a_black_pixel_after_normalization():
    norm = Normalizer(mean=0.2, std=0.5, scale=1 / 255)
    aug = default_augment({"data": {"normalizer": norm.to_dict()}})
    assert (aug.shift, aug.rotation) == (2, 10.0)
    assert aug.fill == pytest.approx(-0.4)
    assert default_augment({"data": {"set": "graph"}}).fill == 0.0


def _imports(path: Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_checkpoint_and_trainer_import_downwards_only():
    train = ROOT / "core" / "train"
    assert "core.train.trainer" not in _imports(train / "checkpoint.py")
    assert "core.train.crossval" not in _imports(train / "trainer.py")
    assert not {m for m in _imports(train / "recipe.py") if m.startswith(("app", "widgets"))}


def test_the_window_side_of_training_loads_neither_the_cli_nor_app_from_widgets():
    # a fresh interpreter: the panel's settings and a whole worker run, then what got loaded
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from widgets.theme import get_theme\n"
        "from widgets.train_panel import TrainPanel\n"
        "from core.train.recipe import DEFAULT_LR\n"
        "panel = TrainPanel(get_theme('light'), DEFAULT_LR, ['sgd', 'momentum'])\n"
        "settings = panel.settings()\n"
        "widgets_ok = not [m for m in sys.modules if m == 'app' or m.startswith('app.')]\n"
        "from app.training import TrainingWorker\n"
        "from core.serialize import load_graph\n"
        "from examples import example_path\n"
        "settings.source, settings.epochs = 'graph', 1\n"
        "w = TrainingWorker(load_graph(example_path('xor_mlp')), settings)\n"
        "done, failed = [], []\n"
        "w.done.connect(done.append)\n"
        "w.failed.connect(lambda *a: failed.append(a))\n"
        "w.run()\n"
        "print(widgets_ok, 'app.train_cli' in sys.modules, len(done), failed)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "True False 1 []"


def test_evaluation_normalizes_the_test_set_as_the_checkpoint_says():
    images = fake_images()
    saved = Normalizer(mean=0.5, std=0.25, scale=1 / 255)
    test = normalized_test_set(dense_graph(), images, saved)
    np.testing.assert_allclose(test.x, saved.apply(images.test_x, "float32"))
    # an old checkpoint without a normalizer: fitted on all training images, as before
    fitted = Normalizer.fit(images.train_x, scale=1 / 255)
    test = normalized_test_set(dense_graph(), images)
    np.testing.assert_allclose(test.x, fitted.apply(images.test_x, "float32"))
    assert (test.name, test.x.dtype, len(test)) == ("test", np.float32, 20)
