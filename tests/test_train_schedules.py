"""Learning-rate schedules: each rule's numbers, warm-up, plateau, save/restore, parsing."""

import math

import pytest

from core.train.schedules import (
    Constant,
    Cosine,
    Exponential,
    InverseSqrt,
    InverseTime,
    ReduceOnPlateau,
    StepDecay,
    WarmUp,
    make_schedule,
    parse_schedule,
)


def test_constant():
    s = Constant(0.1)
    assert [s.rate(e) for e in range(3)] == [0.1, 0.1, 0.1]


def test_step_decay_halves_every_two_epochs():
    s = StepDecay(0.1, step_size=2, gamma=0.5)
    assert [s.rate(e) for e in range(5)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_exponential_is_095_to_the_epoch():
    s = Exponential(1.0, gamma=0.95)
    assert s.rate(10) == pytest.approx(0.95 ** 10)
    assert s.current == pytest.approx(0.95 ** 10)


def test_inverse_time():
    s = InverseTime(0.2, decay=0.5)
    assert [s.rate(e) for e in range(3)] == pytest.approx([0.2, 0.2 / 1.5, 0.1])


def test_inverse_sqrt_counts_epochs_from_one():
    s = InverseSqrt(0.3)
    assert [s.rate(e) for e in range(4)] == pytest.approx([0.3, 0.3 / math.sqrt(2),
                                                           0.3 / math.sqrt(3), 0.15])


def test_cosine_goes_from_lr_to_min_lr():
    s = Cosine(0.1, epochs=4, min_lr=0.01)
    rates = [s.rate(e) for e in range(5)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[2] == pytest.approx(0.055)
    assert rates[4] == pytest.approx(0.01)
    assert rates == sorted(rates, reverse=True)


def test_cosine_matches_torch_cosine_annealing():
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6, eta_min=0.001)
    s = Cosine(0.1, epochs=6, min_lr=0.001)
    for e in range(6):
        assert s.rate(e) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        ref.step()


def test_warm_up_rises_linearly_per_batch_then_follows_the_inner_schedule():
    s = WarmUp(Exponential(0.1, gamma=0.5), warmup_epochs=1)
    assert [s.rate(0, b, 4) for b in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert s.rate(1, 0, 4) == pytest.approx(0.05)


def test_reduce_on_plateau_waits_for_patience_then_cuts():
    s = ReduceOnPlateau(0.1, factor=0.5, patience=1)
    s.rate(0)
    for metric in (1.0, 0.9, 0.95, 0.95):
        s.observe(metric)
    assert s.rate(4) == pytest.approx(0.05)
    s.observe(0.5)  # improvement resets the count
    s.observe(0.6)
    assert s.current == pytest.approx(0.05)


def test_reduce_on_plateau_matches_torch():
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1)
    s = ReduceOnPlateau(0.1, factor=0.5, patience=2, cooldown=1)
    for m in (1.0, 0.99, 1.0, 1.0, 1.0, 1.1, 1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6):
        s.observe(m)
        ref.step(m)
        assert s.current == pytest.approx(opt.param_groups[0]["lr"])


def test_state_round_trip_keeps_plateau_progress():
    s = ReduceOnPlateau(0.1, patience=2)
    for m in (1.0, 1.0, 1.0):
        s.observe(m)
    t = make_schedule(s.config())
    t.load_state(s.state())
    s.observe(1.0)
    t.observe(1.0)
    assert t.current == s.current == pytest.approx(0.05)


def test_parse_schedule_specs():
    assert isinstance(parse_schedule("constant", 0.1), Constant)
    s = parse_schedule("step:step_size=3,gamma=0.1", 0.1)
    assert isinstance(s, StepDecay) and s.step_size == 3 and s.gamma == 0.1
    c = parse_schedule("cosine", 0.1, epochs=7)
    assert c.epochs == 7
    w = parse_schedule("exponential:gamma=0.9", 0.1, warmup=2)
    assert isinstance(w, WarmUp) and isinstance(w.after, Exponential)
    assert make_schedule(w.config()).config() == w.config()


@pytest.mark.parametrize("bad", ["nope", "step:gamma", "step:gamma=x", "step:bogus=1"])
def test_parse_schedule_rejects_bad_specs(bad):
    with pytest.raises(ValueError):
        parse_schedule(bad, 0.1)


def test_non_finite_rates_and_negative_warm_up_are_refused():
    with pytest.raises(ValueError, match="finite"):
        make_schedule({"name": "constant", "lr": float("nan")})
    with pytest.raises(ValueError, match="finite"):
        parse_schedule("step:gamma=nan", 0.1)
    with pytest.raises(ValueError, match="warm-up"):
        parse_schedule("constant", 0.1, warmup=-1)
