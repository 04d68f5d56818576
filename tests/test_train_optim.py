"""Optimizer update rules: hand-computed steps, and torch.optim step by step where installed."""

import math

import numpy as np
import pytest

from core.train.optim import OPTIMIZERS, Adam, Momentum, global_norm, make_optimizer

KEY = ("n1", None)


def _run(opt, p0, grads):
    p = np.array(p0, dtype=np.float64)
    for g in grads:
        opt.step({KEY: p}, {KEY: np.array(g, dtype=np.float64)})
    return p


def test_sgd_step_is_theta_minus_lr_times_gradient():
    p = _run(make_optimizer("sgd", lr=0.5), [1.0, -2.0], [[0.2, -0.4]])
    assert p.tolist() == [0.9, -1.8]


def test_momentum_two_steps_by_hand():
    """v1 = g1; v2 = 0.9·v1 + g2; θ2 = θ0 − η(v1 + v2)."""
    p = _run(Momentum(lr=0.1, momentum=0.9), [1.0], [[1.0], [2.0]])
    v1, v2 = 1.0, 0.9 * 1.0 + 2.0
    assert p[0] == pytest.approx(1.0 - 0.1 * v1 - 0.1 * v2, abs=1e-15)


def test_nesterov_step_looks_ahead():
    """θ1 = θ0 − η(g + μ·v1) with v1 = g on the first step."""
    p = _run(make_optimizer("nesterov", lr=0.1, momentum=0.9), [0.0], [[1.0]])
    assert p[0] == pytest.approx(-0.1 * (1.0 + 0.9 * 1.0))


def test_adam_first_step_is_lr_times_sign():
    """With bias correction m̂ = g and v̂ = g², so the first step is η·g/(|g| + ε)."""
    p = _run(Adam(lr=0.01), [0.0, 0.0], [[3.0, -0.5]])
    assert p == pytest.approx([-0.01, 0.01], rel=1e-6)


def test_adagrad_two_steps_by_hand():
    p = _run(make_optimizer("adagrad", lr=0.1, eps=0.0), [0.0], [[2.0], [1.0]])
    assert p[0] == pytest.approx(-0.1 * 2 / 2 - 0.1 * 1 / math.sqrt(5))


def test_rmsprop_first_step_by_hand():
    p = _run(make_optimizer("rmsprop", lr=0.01, alpha=0.9, eps=0.0), [0.0], [[2.0]])
    assert p[0] == pytest.approx(-0.01 * 2 / math.sqrt(0.1 * 4))


def test_adadelta_first_step_by_hand():
    eps, rho = 1e-6, 0.9
    p = _run(make_optimizer("adadelta", lr=1.0, rho=rho, eps=eps), [0.0], [[2.0]])
    v = (1 - rho) * 4
    assert p[0] == pytest.approx(-math.sqrt(eps) / math.sqrt(v + eps) * 2)


def test_weight_decay_adds_lambda_theta_to_the_gradient():
    p = _run(make_optimizer("sgd", lr=0.1, weight_decay=0.5), [2.0], [[1.0]])
    assert p[0] == pytest.approx(2.0 - 0.1 * (1.0 + 0.5 * 2.0))


def test_clipping_rescales_by_the_global_norm():
    opt = make_optimizer("sgd", lr=1.0, clip_norm=1.0)
    a, b = np.zeros(2), np.zeros(1)
    opt.step({"a": a, "b": b}, {"a": np.array([3.0, 0.0]), "b": np.array([4.0])})
    assert opt.last_grad_norm == pytest.approx(5.0)
    assert np.concatenate([a, b]) == pytest.approx([-0.6, 0.0, -0.8], rel=1e-5)


def test_small_gradients_are_not_clipped():
    opt = make_optimizer("sgd", lr=1.0, clip_norm=10.0)
    a = np.zeros(1)
    opt.step({"a": a}, {"a": np.array([3.0])})
    assert a[0] == -3.0


def test_momentum_buffer_is_flushed_of_denormals():
    """Buffers that decay below float32's smallest normal number become exact zeros."""
    opt = Momentum(lr=0.0, momentum=0.5)
    p = np.zeros(3, np.float32)
    opt.step({KEY: p}, {KEY: np.array([1e-37, 1.0, 0.0], np.float32)})
    for _ in range(10):
        opt.step({KEY: p}, {KEY: np.zeros(3, np.float32)})
    v = opt.state["velocity"][KEY]
    tiny = np.finfo(np.float32).tiny
    assert v[0] == 0.0 and v[1] > tiny
    assert not np.any((v != 0) & (np.abs(v) < tiny))


def test_float32_parameters_stay_float32_and_update_in_place():
    for name in OPTIMIZERS:
        opt = make_optimizer(name, lr=0.01)
        p = np.ones((2, 2), np.float32)
        before = p
        opt.step({KEY: p}, {KEY: np.full((2, 2), 0.5, np.float32)})
        assert p is before and p.dtype == np.float32, name
        assert np.all(p < 1.0), name
        for bufs in opt.state.values():
            for buf in bufs.values():
                assert buf.dtype == np.float32


def test_missing_gradient_leaves_the_tensor_alone():
    opt = make_optimizer("adam")
    p = np.ones(2)
    opt.step({KEY: p, "other": np.ones(1)}, {"other": np.ones(1)})
    assert p.tolist() == [1.0, 1.0]


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(ValueError, match="adam"):
        make_optimizer("adamw")


TORCH_CASES = [
    ("sgd", {"lr": 0.1}, "SGD", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.01}, "SGD", {"lr": 0.1, "weight_decay": 0.01}),
    ("momentum", {"lr": 0.05, "momentum": 0.9}, "SGD", {"lr": 0.05, "momentum": 0.9}),
    ("nesterov", {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-3}, "SGD",
     {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3}),
    ("rmsprop", {"lr": 0.01}, "RMSprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5, "alpha": 0.9}, "RMSprop",
     {"lr": 0.01, "momentum": 0.5, "alpha": 0.9}),
    ("adam", {"lr": 0.01}, "Adam", {"lr": 0.01}),
    ("adam", {"lr": 0.003, "beta1": 0.8, "beta2": 0.95, "weight_decay": 0.01}, "Adam",
     {"lr": 0.003, "betas": (0.8, 0.95), "weight_decay": 0.01}),
    ("adagrad", {"lr": 0.1}, "Adagrad", {"lr": 0.1}),
    ("adadelta", {"lr": 1.0}, "Adadelta", {"lr": 1.0}),
    ("adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1}, "Adadelta",
     {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("name,kw,tname,tkw", TORCH_CASES)
def test_matches_torch_optim_over_several_steps(name, kw, tname, tkw):
    """Six steps on two tensors agree with torch.optim to float64 rounding."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    p0 = [rng.normal(size=(3, 4)), rng.normal(size=(5,))]
    grads = [[rng.normal(size=(3, 4)), rng.normal(size=(5,))] for _ in range(6)]
    ours = [p.copy() for p in p0]
    opt = make_optimizer(name, **kw)
    tparams = [torch.tensor(p, requires_grad=True) for p in p0]
    topt = getattr(torch.optim, tname)(tparams, **tkw)
    for gs in grads:
        opt.step({i: p for i, p in enumerate(ours)}, {i: g for i, g in enumerate(gs)})
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        topt.step()
    for p, tp in zip(ours, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_clipping_matches_torch_clip_grad_norm():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    p0, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) * 10
    ours = p0.copy()
    make_optimizer("sgd", lr=0.1, clip_norm=0.5).step({KEY: ours}, {KEY: g})
    tp = torch.tensor(p0, requires_grad=True)
    tp.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_([tp], 0.5)
    torch.optim.SGD([tp], lr=0.1).step()
    np.testing.assert_allclose(ours, tp.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("kw", [{"lr": float("nan")}, {"lr": float("inf")},
                                {"weight_decay": float("nan")}, {"clip_norm": float("nan")}])
def test_non_finite_settings_are_refused(kw):
    with pytest.raises(ValueError, match="finite"):
        make_optimizer("sgd", **{"lr": 0.1, **kw})


def test_global_norm_of_large_float32_gradients_does_not_overflow():
    g = np.full(4, 1e20, np.float32)  # finite, but its squares overflow float32
    per = []
    norm = global_norm([g, g], per)
    assert norm == pytest.approx(np.sqrt(8) * 1e20, rel=1e-6)
    assert per == pytest.approx([2e20, 2e20], rel=1e-6)
