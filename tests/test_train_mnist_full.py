"""LeNet-5 on the full MNIST: ≥ 99.0 % test accuracy within 10 epochs (slow; the benchmark
benchmarks/bench_mnist_accuracy.py runs the same thing and prints the curve)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="canonical MNIST not at ../shared/data/mnist")
def test_lenet5_reaches_99_percent_on_full_mnist_within_10_epochs():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_mnist_accuracy.py"),
                          "--epochs", "10", "--lr", "0.01", "--batch-size", "64",
                          "--seed", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=4 * 3600)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(summary["test_accuracy_curve"]) == 10
    assert summary["target_reached_at_epoch"] is not None, summary["test_accuracy_curve"]
    assert summary["best_test_accuracy"] >= 0.99
    assert summary["peak_rss_mb"] < 2048
