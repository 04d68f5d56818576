"""`backprop-studio train/evaluate --device`: a clear error when CUDA is missing, the CPU only when
asked with auto, and (on the CuPy stand-in) a run on the device whose checkpoint the CPU reads."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cupy_standin import install, uninstall_cupy

from app.cli import main
from core.kernels.backend import DEVICE_ENV

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ["logistic_regression_mnist", "--sample", "--epochs", "1", "--limit", "300"]


def _json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_train_on_cuda_without_cupy_is_one_clear_error(monkeypatch, capsys):
    """Asking for the GPU on a machine without CuPy prints one line saying what is missing
    and how to get it, trains nothing and exits non-zero."""
    uninstall_cupy(monkeypatch)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    code = main(["train", *SAMPLE, "--device", "cuda"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("backprop-studio train: error: device 'cuda'")
    assert "CuPy is not installed" in lines[0] and "backprop-studio[gpu]" in lines[0]
    assert "--device cpu" in lines[0]


def test_evaluate_on_cuda_without_a_gpu_is_an_error_too(monkeypatch, capsys, tmp_path):
    """evaluate --device cuda where CuPy finds no device says so (no traceback)."""
    install(monkeypatch, devices=0)
    code = main(["evaluate", "logistic_regression_mnist", "--checkpoint",
                 str(tmp_path / "none.npz"), "--sample", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "finds no CUDA device" in err and "Traceback" not in err


def test_the_environment_variable_asks_for_cuda_and_is_named_in_the_error(monkeypatch, capsys):
    """$BACKPROP_STUDIO_DEVICE=cuda without CuPy fails the same way and names the variable."""
    uninstall_cupy(monkeypatch)
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert main(["train", *SAMPLE]) == 2
    assert f"${DEVICE_ENV}" in capsys.readouterr().err


def test_auto_without_cuda_trains_on_the_cpu_and_says_so(monkeypatch, capsys):
    """--device auto falls back to the CPU, prints why, and the JSON line records the device."""
    uninstall_cupy(monkeypatch)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert main(["train", *SAMPLE, "--device", "auto"]) == 0
    out, err = capsys.readouterr()
    assert "device: cpu; cuda is not available: CuPy is not installed" in err
    assert _json_line(out)["device"] == "cpu"


def test_auto_trains_on_the_gpu_and_the_checkpoint_evaluates_on_the_cpu(monkeypatch, capsys,
                                                                      tmp_path):
    """With a CUDA device (the stand-in), --device auto trains there; evaluate --device cpu on
    its checkpoint gives the test accuracy the device run reported."""
    install(monkeypatch)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    ckpt = tmp_path / "gpu.npz"
    assert main(["train", *SAMPLE, "--device", "auto", "--out", str(ckpt)]) == 0
    out, err = capsys.readouterr()
    assert "device: cuda (NumPy stand-in)" in err
    trained = _json_line(out)
    assert trained["device"] == "cuda"
    assert main(["evaluate", "logistic_regression_mnist", "--checkpoint", str(ckpt), "--sample",
                 "--device", "cpu"]) == 0
    report = _json_line(capsys.readouterr().out)
    assert report["device"] == "cpu"
    assert report["accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)
    assert main(["evaluate", "logistic_regression_mnist", "--checkpoint", str(ckpt), "--sample",
                 "--device", "cuda"]) == 0
    assert _json_line(capsys.readouterr().out)["accuracy"] == report["accuracy"]


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_the_installed_command_falls_back_with_auto_and_refuses_cuda():
    """As a user runs it (a new process, no CuPy): auto trains on the CPU, cuda exits 2."""
    env = {k: v for k, v in __import__("os").environ.items() if k != DEVICE_ENV}
    run = [sys.executable, "-m", "app", "train", "xor_mlp", "--epochs", "1"]
    auto = subprocess.run(run + ["--device", "auto"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)
    assert auto.returncode == 0 and _json_line(auto.stdout)["device"] == "cpu"
    cuda = subprocess.run(run + ["--device", "cuda"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)
    assert cuda.returncode == 2 and "CuPy is not installed" in cuda.stderr
    assert "Traceback" not in cuda.stderr


def test_training_on_the_cpu_prints_the_blas_hint_unless_quiet(monkeypatch, capsys):
    """a core type that holds OpenBLAS below the CPU is mentioned once at the start of a run"""
    import app.train_cli as train_cli

    uninstall_cupy(monkeypatch)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(train_cli, "blas_kernel_hint", lambda: "the BLAS hint")
    assert main(["train", *SAMPLE]) == 0
    _, err = capsys.readouterr()
    assert err.count("note: the BLAS hint") == 1
    assert main(["train", *SAMPLE, "--quiet"]) == 0
    assert "BLAS hint" not in capsys.readouterr().err
