"""The train and evaluate subcommands, run as a user would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    import os

    full_env = dict(os.environ)
    full_env.pop("BACKPROP_STUDIO_DATA", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=300)


def test_train_on_the_sample_then_evaluate_the_checkpoint(tmp_path):
    ckpt = tmp_path / "logreg.npz"
    out = run("train", "logistic_regression_mnist", "--sample", "--epochs", "2",
              "--optimizer", "sgd", "--lr", "0.05", "--schedule", "exponential:gamma=0.5",
              "--limit", "2000", "--seed", "3", "--out", str(ckpt))
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["iterations"] == 2 * 29  # 1,800 training images in batches of 64
    assert metrics["test_accuracy"] > 0.8 and len(metrics["epoch_seconds"]) == 2
    assert "epoch 2/2" in out.stderr and "img/s" in out.stderr
    ev = run("evaluate", "logistic_regression_mnist", "--checkpoint", str(ckpt))
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert result["accuracy"] == metrics["test_accuracy"] and result["samples"] == 1000
    assert "confusion matrix" in ev.stdout and "precision" in ev.stdout


def test_resume_continues_from_the_checkpoint(tmp_path):
    ckpt = tmp_path / "c.npz"
    args = ("train", "logistic_regression_mnist", "--sample", "--limit", "600",
            "--val-split", "0", "--quiet")
    assert run(*args, "--epochs", "1", "--out", str(ckpt)).returncode == 0
    out = run(*args, "--epochs", "2", "--resume", str(ckpt))
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["epochs"] == 2 and metrics["iterations"] == 2 * 10
    assert "resumed" in out.stderr


def test_xor_preset_trains_on_its_stored_values():
    out = run("train", "xor_mlp", "--epochs", "400", "--batch-size", "4", "--optimizer",
              "adam", "--lr", "0.05", "--seed", "1", "--quiet")
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["train_accuracy"] == 1.0 and "stored" in metrics["data"]


def test_missing_data_is_a_clear_error(tmp_path):
    out = run("train", "lenet5", "--data", str(tmp_path), env={"XDG_CACHE_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert "--sample" in out.stderr and "--download" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_preset_and_bad_checkpoint_are_clear_errors(tmp_path):
    out = run("train", "no_such_preset", "--sample")
    assert out.returncode == 2 and "no preset named" in out.stderr
    (tmp_path / "x.npz").write_bytes(b"junk")
    out = run("evaluate", "lenet5", "--checkpoint", str(tmp_path / "x.npz"), "--sample")
    assert out.returncode == 2 and "not a checkpoint" in out.stderr


@pytest.mark.parametrize("spec", ["bogus", "step:gamma"])
def test_bad_schedule_is_reported(spec):
    out = run("train", "logistic_regression_mnist", "--sample", "--schedule", spec)
    assert out.returncode != 0 and "schedule" in out.stderr and "Traceback" not in out.stderr


def test_evaluate_refuses_a_checkpoint_of_another_graph(tmp_path):
    """The reviewer's repro: an MLP checkpoint evaluated on logistic regression."""
    ckpt = tmp_path / "mlp.npz"
    out = run("train", "mlp_784_30_10", "--sample", "--limit", "200", "--epochs", "1",
              "--quiet", "--out", str(ckpt))
    assert out.returncode == 0, out.stderr
    ev = run("evaluate", "logistic_regression_mnist", "--checkpoint", str(ckpt), "--sample")
    assert ev.returncode == 2, ev.stdout
    assert "another graph" in ev.stderr and str(ckpt) in ev.stderr
    assert "Traceback" not in ev.stderr and ev.stdout == ""


def test_resume_takes_its_settings_from_the_checkpoint(tmp_path):
    """Seed, batch size, split, limit and optimizer come from the checkpoint and are reported."""
    ckpt = tmp_path / "c.npz"
    first = run("train", "logistic_regression_mnist", "--sample", "--limit", "300",
                "--val-split", "0.2", "--seed", "3", "--batch-size", "32", "--optimizer",
                "sgd", "--lr", "0.05", "--epochs", "1", "--quiet", "--out", str(ckpt))
    assert first.returncode == 0, first.stderr
    out = run("train", "logistic_regression_mnist", "--epochs", "2", "--resume", str(ckpt),
              "--out", str(ckpt))
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert (metrics["seed"], metrics["batch_size"], metrics["optimizer"], metrics["lr"]) == \
        (3, 32, "sgd", 0.05)
    assert metrics["iterations"] == 2 * 8  # 241 training images in batches of 32, both epochs
    assert "241 samples, 59 for validation" in out.stderr and "seed 3" in out.stderr
    for flag, value in (("--seed", "4"), ("--val-split", "0.5"), ("--batch-size", "64"),
                        ("--lr", "0.1"), ("--optimizer", "adam"), ("--limit", "500")):
        bad = run("train", "logistic_regression_mnist", "--sample", "--epochs", "3",
                  "--resume", str(ckpt), flag, value)
        assert bad.returncode == 2, (flag, bad.stdout)
        assert f"{flag} {value} differs from the checkpoint" in bad.stderr
        assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("extra, expect", [
    (("--limit", "-1"), "--limit -1: must be at least 1"),
    (("--limit", "3", "--val-split", "0.9"), "leaves none for training"),
    (("--out", "/nonexistent_dir/x.npz"), "--out /nonexistent_dir/x.npz: the folder"),
])
def test_bad_training_options_fail_before_training(extra, expect):
    out = run("train", "logistic_regression_mnist", "--sample", "--epochs", "1", *extra)
    assert out.returncode == 2 and expect in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "epoch 1/1" not in out.stderr


def test_evaluate_a_graph_values_checkpoint_without_stored_values(tmp_path):
    """xor_mlp trained on its stored values, evaluated on the same graph with the values gone."""
    ckpt = tmp_path / "xor.npz"
    assert run("train", "xor_mlp", "--epochs", "2", "--quiet", "--out", str(ckpt)).returncode == 0
    doc = json.loads((ROOT / "examples" / "xor_mlp.json").read_text())
    for node in doc["nodes"]:
        node.pop("value", None)
    bare = tmp_path / "xor_bare.json"
    bare.write_text(json.dumps(doc))
    out = run("evaluate", str(bare), "--checkpoint", str(ckpt))
    assert out.returncode == 2 and "hold no values" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    other = run("evaluate", "mlp_784_30_10", "--checkpoint", str(ckpt), "--sample")
    assert other.returncode == 2 and "another graph" in other.stderr


@pytest.mark.parametrize("extra, expect", [
    (("--lr", "nan"), "--lr nan: must be a finite number"),
    (("--lr", "inf"), "--lr inf: must be a finite number"),
    (("--warmup", "-1"), "--warmup -1: the number of warm-up epochs must be ≥ 0"),
    (("--early-stop", "0"), "--early-stop 0: the patience must be at least 1"),
    (("--schedule", "exponential:gamma=nan"), "needs a finite number"),
])
def test_non_finite_or_out_of_range_numbers_are_refused(extra, expect):
    out = run("train", "logistic_regression_mnist", "--sample", "--epochs", "1", "--limit",
              "100", "--quiet", *extra)
    assert out.returncode == 2 and expect in out.stderr, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.parametrize("data, where", [
    ({"set": "mnist", "source": "sample", "normalizer": {"mean": "x"}},
     "meta.json.data.normalizer"),
    ({"set": 5}, "meta.json.data.set"),
    ([1, 2], "meta.json.data"),
])
def test_evaluate_with_malformed_data_settings_is_a_clear_error(tmp_path, data, where):
    from core.serialize import load_graph
    from core.train import Trainer
    from examples import example_path

    ckpt = tmp_path / "c.npz"
    tr = Trainer(load_graph(example_path("logistic_regression_mnist")))
    tr.extra_meta = {"data": data}
    tr.save_checkpoint(ckpt)
    out = run("evaluate", "logistic_regression_mnist", "--checkpoint", str(ckpt))
    assert out.returncode == 2 and f"{ckpt}: {where}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
