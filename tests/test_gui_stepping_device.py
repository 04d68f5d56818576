"""The Step toolbar's device choice: CPU always, CUDA when CuPy finds a GPU (here the NumPy-backed
stand-in), greyed out with the reason otherwise."""
# The fixtures come from gui_helpers; pytest passes them by name, which ruff reads as F811.
# ruff: noqa: F811

from __future__ import annotations

from cupy_standin import install, uninstall_cupy
from gui_helpers import dialogs, make_window  # noqa: F401

from examples import example_path


def _cuda_item(win):
    combo = win.step_device
    return combo.model().item(combo.findData("cuda"))


def _probed(win, qtbot):
    qtbot.waitUntil(lambda: win.stepping.device_status is not None, timeout=10000)


def test_with_a_gpu_cuda_can_be_chosen_and_stepping_runs_there(make_window, monkeypatch,
                                                              qtbot):
    """with CuPy and a GPU, the Step toolbar's CUDA entry is enabled and names the GPU;
    choosing it resets stepping onto the device, where Evaluate gives f = 2 and the
    gradients 2, 3, 1 as on the CPU"""
    install(monkeypatch)
    win = make_window()
    assert win.files.open_example(example_path("abc"))
    win.act_evaluate.trigger()
    _probed(win, qtbot)
    item = _cuda_item(win)
    assert item.isEnabled() and item.toolTip() == "NumPy stand-in"
    combo = win.step_device
    combo.setCurrentIndex(combo.findData("cuda"))
    combo.activated.emit(combo.currentIndex())
    st = win.stepping
    assert st.device == "cuda" and st.session.device == "cuda"
    assert st.session.position == 0
    assert "CUDA" in win.statusBar().currentMessage()
    win.act_evaluate.trigger()
    assert float(st.session.value("f")) == 2.0
    assert [float(st.session.grad(n)) for n in "abc"] == [2.0, 3.0, 1.0]
    assert win.settings.value("stepping/device") == "cuda"
    combo.setCurrentIndex(combo.findData("cpu"))
    combo.activated.emit(combo.currentIndex())
    assert st.session.device == "cpu"


def test_without_cupy_cuda_is_greyed_out_with_the_reason(make_window, monkeypatch, qtbot):
    """without CuPy the CUDA entry is greyed out and its tooltip says what to install; asking
    for it anyway leaves stepping on the CPU and says why in the status bar"""
    uninstall_cupy(monkeypatch)
    win = make_window()
    _probed(win, qtbot)
    item = _cuda_item(win)
    assert not item.isEnabled()
    assert item.toolTip().startswith("Not available: CuPy is not installed")
    assert not win.stepping.set_device("cuda")
    assert win.stepping.device == "cpu"
    assert win.step_device.currentData() == "cpu"
    assert "Cannot step on CUDA: CuPy is not installed" in win.statusBar().currentMessage()


def test_lenet5_on_cuda_draws_its_wires_and_tensors(make_window, monkeypatch, qtbot):
    """stepping LeNet-5 on CUDA draws heat maps on its tensor wires and the tensor view of a
    clicked wire, from host copies of the device's values"""
    install(monkeypatch)
    win = make_window()
    assert win.files.open_example(example_path("lenet5"))
    _probed(win, qtbot)
    assert win.stepping.set_device("cuda")
    win.act_run_forward.trigger()
    s = win.stepping.session
    assert s.device == "cuda" and s.position == s.n_forward
    overlay = win.scene.stepping
    edge = next(e for e in win.document.graph.edges
                if win.document.graph.nodes[e.src].name == "conv1")
    label = overlay._wires[edge]
    assert label.labels.pictures["value"] is not None  # a heat map of conv1's output
    win.step_ui.show_wire(edge)
    assert win.tensor_view.view is not None
    assert win.tensor_view.view.summary.shape == (6, 28, 28)  # the example shown
