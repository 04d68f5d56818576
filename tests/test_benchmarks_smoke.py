"""The benchmarks run, print the machine's load and say when their figures cannot be trusted.

Nothing here is timed: speed is printed by the benchmarks, never asserted.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_lenet
from benchmarks.machine import LoadCheck
from core.errors import DataError
from core.kernels import threads

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_bench_lenet_runs_both_thread_counts_and_prints_the_load():
    """A short synthetic run prints the load before and after, both thread counts, and the
    check that our losses do not depend on the thread count."""
    proc = _run("benchmarks/bench_lenet.py", "--synthetic", "--batches", "2", "--rounds", "1",
                "--warmup", "1", "--no-torch")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "load average (1 min) before the run" in out
    assert "before, " in out and " after" in out and "during the run" in out
    assert "SYNTHETIC" in out
    assert "1 thread " in out and "2 threads" in out
    assert "losses of all 2 steps bit-identical, final weights bit-identical" in out
    assert "speed-up 1→2 threads: ours" in out
    assert "where our time goes" in out
    assert "a speed-up of at most" in out  # what perfect sharing of the pool's ops would give
    # how long the second core sat idle, per op and over whole training steps
    assert "idle: the helper threads' time with no part to run" in out
    assert re.search(r"of which the helper threads ran no part for \d+\.\d\d ms \(\d+%", out)
    if (os.cpu_count() or 1) > 1:  # the convolutions hand their parts to the pool
        assert any("backward conv2d" in line and "*" in line for line in out.splitlines())


def test_bench_lenet_refuses_a_named_folder_without_mnist(tmp_path):
    """A folder the user names with --mnist must hold the files: a clear error, no traceback."""
    proc = _run("benchmarks/bench_lenet.py", "--mnist", str(tmp_path / "none"), "--no-torch")
    assert proc.returncode == 2
    assert "no such folder" in proc.stderr and "Traceback" not in proc.stderr


def test_without_full_mnist_the_sample_is_used_and_labelled(tmp_path, monkeypatch):
    """With no ../shared, no $BACKPROP_STUDIO_DATA and an empty cache, the benchmark uses the
    embedded sample and its description says it is not the full set."""
    monkeypatch.setattr(bench_lenet, "SHARED_MNIST", tmp_path / "shared" / "mnist")
    monkeypatch.delenv("BACKPROP_STUDIO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = bench_lenet._parse_args([])
    assert bench_lenet._mnist_folder(args) is None  # the memory child gets no --data either
    images, _, desc = bench_lenet.find_mnist(args)
    assert len(images) == 5000
    assert "SAMPLE" in desc and "NOT the full set" in desc
    with pytest.raises(DataError):
        bench_lenet.find_mnist(bench_lenet._parse_args(["--mnist", str(tmp_path)]))


def test_one_thread_means_our_layer_pool_stays_on_the_calling_thread(monkeypatch):
    """Under ``our_threads(1)`` every part runs on the calling thread; afterwards the pool
    shares parts again."""
    import threading

    monkeypatch.setattr(threads, "_WORKERS", 2)

    def names(wait_for_helper):
        seen, helper = set(), threading.Event()

        def part(_):
            name = threading.current_thread().name
            seen.add(name)
            if name.startswith(threads.POOL_PREFIX):
                helper.set()
            elif wait_for_helper:
                helper.wait(5)  # gives the helper thread time to take a part, however busy

        threads.run_parts(part, range(40))
        return seen

    with bench_lenet.our_threads(1) as n:
        assert n == 1
        assert names(False) == {threading.current_thread().name}
    assert threads._WORKERS == 2
    assert any(name.startswith(threads.POOL_PREFIX) for name in names(True))

def test_torch_equivalent_of_the_keras_preset_matches_its_shapes_and_weights():
    """The PyTorch network built from the Keras preset has its layers, and starts from its
    weights (dense weights transposed to torch's layout)."""
    torch = pytest.importorskip("torch")
    graph = bench_lenet.preset_graph("keras")
    model = bench_lenet.torch_model(torch, graph)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout", "Flatten",
                     "Linear", "ReLU", "Dropout", "Linear"]
    assert model[5].p == 0.25 and model[9].p == 0.5
    assert torch.equal(model[0].weight, torch.from_numpy(graph.node("conv1").weights["W"]))
    assert torch.equal(model[7].weight, torch.from_numpy(graph.node("fc1").weights["W"].T))
    model.eval()
    x = torch.zeros(2, 1, 28, 28)
    assert tuple(model(x).shape) == (2, 10)


def test_a_busy_machine_marks_the_figures_unreliable():
    """Other processes taking CPU during the run make every load-sensitive figure carry the
    UNRELIABLE tag and the report say MACHINE BUSY; a load average left over from our own
    earlier work does not, when nobody else ran; without a CPU share the load decides."""
    load = LoadCheck()
    load.load_before, load.load_after, load.others_share = 1.5, 1.6, 0.4
    assert not load.quiet
    assert "UNRELIABLE" in load.mark()
    assert "MACHINE BUSY" in load.report() and "above" in load.before()
    load.load_before, load.others_share = 0.6, 0.002
    assert load.quiet and load.mark() == ""
    assert "machine quiet" in load.report()
    load.load_before, load.others_share = 1.5, None
    assert not load.quiet


@pytest.mark.skipif(not hasattr(os, "getloadavg"), reason="no load average here")
def test_bench_load_and_accuracy_print_the_load_line():
    """The other two benchmarks print the load before and after their (tiny) runs; the
    accuracy benchmark on the sample says the target is not judged."""
    proc = _run("benchmarks/bench_load.py", "--eval-nodes", "50", "--load-nodes", "50")
    assert proc.returncode == 0, proc.stderr
    assert "load average (1 min) before the run" in proc.stdout
    assert "during the run" in proc.stdout and "peak RSS" in proc.stdout
    proc = _run("benchmarks/bench_mnist_accuracy.py", "--sample", "--epochs", "1",
                "--batch-size", "256")
    assert proc.returncode == 0, proc.stderr
    assert "load average (1 min) before the run" in proc.stdout
    assert "not judged (sample data)" in proc.stdout
    assert '"full_mnist": false' in proc.stdout and '"load": {' in proc.stdout


def test_bench_lenet_on_cuda_times_the_gpu_against_the_cpu_or_says_what_is_missing(
        monkeypatch, capsys):
    """--device cuda times our step on the GPU (here the NumPy-backed CuPy stand-in) and on
    the CPU and prints images/s and their ratio after the load line; without CuPy it is one
    message naming what is missing and exit code 2"""
    from cupy_standin import install, uninstall_cupy

    argv = ["--device", "cuda", "--synthetic", "--batches", "2", "--rounds", "1",
            "--warmup", "1", "--threads", "1", "--batch-size", "8", "--no-torch"]
    uninstall_cupy(monkeypatch)
    assert bench_lenet.main(argv) == 2
    assert "CuPy is not installed" in capsys.readouterr().err
    install(monkeypatch)
    assert bench_lenet.main(argv) == 0
    out = capsys.readouterr().out
    assert "ours, GPU" in out and "ours, CPU" in out and "images/s" in out
    assert out.index("load average (1 min)") < out.index("the images/s of ours on the CPU")


def test_count_open_child_opens_and_paints_the_graph_it_counts():
    """the process count_open.py runs under callgrind opens the graph (without valgrind here)"""
    for do_open in ("0", "1"):
        proc = _run("benchmarks/count_open.py", "--child", str(ROOT), do_open, "60")
        assert proc.returncode == 0, proc.stderr[-2000:]
