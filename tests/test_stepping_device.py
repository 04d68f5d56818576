"""Stepping on a device: the CuPy stand-in (a NumPy-backed device that refuses silent conversion
to NumPy) against the CPU. Steps, step back, wire labels, the chain rule, the tensor view and
breakpoint conditions agree within float32 rounding; only numbers and the arrays shown come
back to the host."""

import threading

import cupy_standin
import numpy as np
import pytest
from cupy_standin import install, uninstall_cupy

from core.graph import Graph
from core.kernels.backend import DeviceError
from core.serialize import load_graph
from core.stepping import StepMove, StepSession, chain_rule, digit_feeds, sample_digit
from examples import example_path

TOL = {"rtol": 2e-5, "atol": 1e-6}


@pytest.fixture
def cp(monkeypatch):
    return install(monkeypatch)


def _lenet_pair():
    sessions = []
    for device in ("cpu", "cuda"):
        g = load_graph(example_path("lenet5"))
        sessions.append(StepSession(g, feeds=digit_feeds(g, *sample_digit(3)), device=device))
    return sessions


def _same_summary(a, b, what):
    assert (a is None) == (b is None), what
    if a is None:
        return
    assert a.shape == b.shape and a.dtype == b.dtype and a.scalar == b.scalar, what
    assert (a.n_nan, a.n_inf) == (b.n_nan, b.n_inf), what
    for field in ("mean", "std", "norm", "min", "max", "rms"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), err_msg=f"{what} {field}",
                                   **TOL)


def _same_wires(cpu, dev):
    for wa, wb in zip(cpu.wires(), dev.wires()):
        what = f"{wa.edge.src}->{wa.edge.dst}"
        assert wa.state == wb.state, what
        _same_summary(wa.value, wb.value, what + " value")
        _same_summary(wa.grad, wb.grad, what + " grad")
        if wa.level is not None:
            assert wb.level == pytest.approx(wa.level, abs=1e-5)


def test_lenet5_steps_on_the_device_like_on_the_cpu(cp):
    """Stepping LeNet-5 forward, into backward and back again gives the CPU's wire labels
    at every stop, on a session that really runs on the device."""
    cpu, dev = _lenet_pair()
    assert dev.device == "cuda" and cpu.device == "cpu"
    for target in (3, dev.n_forward, dev.n_forward + 6, len(dev.steps)):
        for s in (cpu, dev):
            r = s.go_to(target - 1)
        assert r.kind == "target"
        _same_wires(cpu, dev)
    raw = dev.stepper.executor.values[(dev.graph.node("conv1").id, 0)]
    assert type(raw).__module__ == "cupy"  # the values stay on the device
    for s in (cpu, dev):
        for _ in range(4):
            s.step_back()
    assert cpu.position == dev.position == len(dev.steps) - 4
    _same_wires(cpu, dev)
    for s in (cpu, dev):
        assert s.step().kind == "step"
    _same_wires(cpu, dev)


def test_the_chain_rule_and_tensor_view_match_the_cpu(cp):
    """The chain-rule panel's numbers for f = a·b + c are the CPU's (1 × 2 = 2, 1 × 3 = 3),
    LeNet-5's tensor terms and the tensor view's statistics too; what the views read is a
    NumPy array."""
    runs = []
    for device in ("cpu", "cuda"):
        s = StepSession(load_graph(example_path("abc")), device=device)
        s.run_to("e", "backward")
        runs.append(chain_rule(s))
    for ta, tb in zip(runs[0].terms, runs[1].terms):
        assert tb.text == ta.text and tb.numbers == pytest.approx(ta.numbers)
    assert [t.text for t in runs[1].terms] == ["1.000 × 2.000 = 2.000", "1.000 × 3.000 = 3.000"]
    cpu, dev = _lenet_pair()
    for s in (cpu, dev):
        s.run_to("conv2", "backward")
    ra, rb = chain_rule(cpu), chain_rule(dev)
    assert [t.target for t in ra.terms] == [t.target for t in rb.terms]
    for ta, tb in zip(ra.terms, rb.terms):
        _same_summary(ta.downstream, tb.downstream, ta.target)
    va, vb = cpu.tensor("conv2", grad=True), dev.tensor("conv2", grad=True)
    _same_summary(va.summary, vb.summary, "tensor view")
    np.testing.assert_array_equal(va.counts, vb.counts)
    np.testing.assert_allclose(vb.thumbnail.data, va.thumbnail.data, **TOL)
    assert type(dev.value("conv2")) is np.ndarray
    assert type(dev.weight_grad("conv2", "W")) is np.ndarray
    assert dev.value("conv2") is dev.value("conv2")  # one host copy per array


def test_wire_labels_bring_back_only_numbers(cp):
    """Summarizing every wire of a device session copies single numbers to the host, never a
    tensor; the tensor view copies the tensor it shows."""
    _, dev = _lenet_pair()
    dev.run_to("conv1", "backward")
    cupy_standin.TRANSFERS.clear()
    dev.wires()
    assert cupy_standin.TRANSFERS and {n for kind, n in cupy_standin.TRANSFERS} == {1}
    dev.tensor("conv1")
    assert any(n > 1 for kind, n in cupy_standin.TRANSFERS if kind == "to_host")


def _log_graph():
    g = Graph("float32")
    x = g.add("input", name="x", shape=(4,), role="value", value=[1.0, 2.0, -1.0, 3.0])
    h = g.add("log", x, name="log")
    g.set_loss(g.add("mean", h, name="loss"))
    return g


def test_a_nan_breakpoint_stops_on_the_same_step_as_on_the_cpu(cp):
    """log of a negative number makes a NaN: Continue stops on log's forward step with the
    CPU's message (the counts are made on the device)."""
    reasons = []
    for device in ("cpu", "cuda"):
        s = StepSession(_log_graph(), device=device)
        reasons.append(s.continue_())
    a, b = reasons
    assert a.kind == b.kind == "nonfinite"
    assert (b.node, b.phase, b.index, b.message) == (a.node, a.phase, a.index, a.message)
    assert "1 NaN" in b.message


def test_a_gradient_norm_breakpoint_reads_the_norm_on_the_device(cp):
    """A gradient-norm condition on LeNet-5 stops on the same backward step with the same
    norm as on the CPU."""
    cpu, dev = _lenet_pair()
    for s in (cpu, dev):
        s.break_on_grad_norm(above=0.5)
    a, b = cpu.continue_(), dev.continue_()
    assert a.kind == b.kind == "exploding"
    assert (a.node, a.index, a.target) == (b.node, b.index, b.target)
    assert b.value == pytest.approx(a.value, rel=1e-5)


def test_a_move_run_on_a_thread_gives_the_same_numbers_on_the_device(cp):
    """A move started with begin() and run on another thread, then finished, leaves the
    session where a direct move does."""
    cpu, dev = _lenet_pair()
    cpu.run_forward()
    move = dev.begin("run_forward")
    assert isinstance(move, StepMove)
    t = threading.Thread(target=move.run)
    t.start()
    t.join(60)
    assert dev.finish(move).kind == "forward_done"
    _same_wires(cpu, dev)


def test_asking_for_cuda_without_cupy_says_what_is_missing(monkeypatch):
    """Without CuPy a CUDA session is one clear error naming what to install."""
    uninstall_cupy(monkeypatch)
    with pytest.raises(DeviceError, match="CuPy is not installed"):
        StepSession(load_graph(example_path("abc")), device="cuda")
