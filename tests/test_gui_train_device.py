"""The Training panel's device choice: CPU, or CUDA through CuPy where it can run."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

import numpy as np
from cupy_standin import install, uninstall_cupy
from gui_helpers import dialogs, make_window  # noqa: F401

from core.kernels.backend import device_status
from examples import example_path


def _cuda_item(panel):
    combo = panel.device
    return combo.model().item(combo.findData("cuda"))


def test_without_cupy_cuda_is_greyed_out_with_the_reason_and_training_runs_on_the_cpu(
        make_window, monkeypatch):
    """on a machine without CuPy the Device field offers CUDA greyed out, its tooltip says
    what is missing, and a run asks for the CPU"""
    uninstall_cupy(monkeypatch)
    win = make_window()
    panel = win.train_panel
    panel.set_devices(device_status())
    item = _cuda_item(panel)
    assert not item.isEnabled()
    assert "CuPy is not installed" in item.toolTip()
    assert panel.device.device() == "cpu"
    assert panel.settings().device == "cpu"


def test_training_on_cuda_runs_there_and_puts_host_weights_into_the_graph(make_window,
                                                                           monkeypatch, qtbot):
    """with CuPy and a GPU (here the NumPy-backed stand-in), choosing CUDA and pressing
    Train runs on the device; the trained weights come back into the graph as NumPy arrays"""
    install(monkeypatch)
    win = make_window()
    assert win.files.open_example(example_path("logistic_regression_mnist"))
    panel = win.train_panel
    panel.set_devices(device_status())
    assert _cuda_item(panel).isEnabled()
    panel.device.setCurrentIndex(panel.device.findData("cuda"))
    panel.epochs.setValue(1)
    panel.limit.setValue(500)
    win.act_train.trigger()
    assert not panel.device.isEnabled()  # fixed while the run goes on
    qtbot.waitUntil(lambda: not win.training.is_training(), timeout=30_000)
    assert "Training finished on the GPU" in panel.status_label.text()
    weights = [w for n in win.document.graph.nodes.values() for w in n.weights.values()]
    assert weights and all(type(w) is np.ndarray for w in weights)
    assert panel.accuracy_label.text().endswith("%")


def test_the_window_tells_the_training_panel_which_devices_it_found(make_window, monkeypatch,
                                                                     qtbot):
    """once the window has looked for CuPy after its first paint, the Training panel's CUDA
    entry stops saying it is being checked and gives the reason it cannot run"""
    uninstall_cupy(monkeypatch)
    win = make_window()
    win.stepping.probe_devices()  # as after the first paint (no-op if already started)
    qtbot.waitUntil(lambda: win.stepping.device_status is not None, timeout=10_000)
    qtbot.waitUntil(lambda: "Checking" not in _cuda_item(win.train_panel).toolTip(),
                    timeout=5_000)
    assert "CuPy is not installed" in _cuda_item(win.train_panel).toolTip()
    assert "CuPy is not installed" in win.step_device.model().item(
        win.step_device.findData("cuda")).toolTip()


def test_the_cpu_entry_names_the_blas_kernels_and_warns_of_a_pinned_core_type(make_window,
                                                                                monkeypatch):
    """the CPU entry's tooltip says which BLAS kernels train, and when the environment holds
    them below the CPU, says so there too"""
    from core.kernels import backend

    uninstall_cupy(monkeypatch)
    win = make_window()
    panel = win.train_panel
    combo = panel.device
    cpu = combo.model().item(combo.findData("cpu"))
    monkeypatch.setattr(backend, "blas_kernels", lambda: "openblas 9.9, Haswell kernels")
    monkeypatch.setattr(backend, "blas_kernel_hint", lambda: None)
    panel.set_devices(device_status())
    assert cpu.toolTip() == "CPU (NumPy; openblas 9.9, Haswell kernels)"
    monkeypatch.setattr(backend, "blas_kernel_hint", lambda: "held to Haswell kernels")
    panel.set_devices(device_status())
    assert cpu.toolTip().splitlines() == ["CPU (NumPy; openblas 9.9, Haswell kernels)",
                                          "held to Haswell kernels"]
    assert cpu.isEnabled()
