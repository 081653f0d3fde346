"""fastclip.schedules against PyTorch's lr_scheduler classes, stepped side by side."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastclip
from fastclip import schedules as S

L = torch.optim.lr_scheduler
LR = 0.1


def torch_lrs(make, n, lr=LR):
    """The lr PyTorch uses at steps 0 .. n-1 (read before each optimiser step)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return np.array(out, dtype=np.float64)


CASES = [
    ("StepLR", lambda o: L.StepLR(o, 30, 0.5), S.step(LR, 30, 0.5), 400),
    ("MultiStepLR", lambda o: L.MultiStepLR(o, [50, 120, 300], 0.3),
     S.multistep(LR, [50, 120, 300], 0.3), 400),
    ("ExponentialLR", lambda o: L.ExponentialLR(o, 0.99), S.exponential(LR, 1, 0.99), 500),
    ("PolynomialLR", lambda o: L.PolynomialLR(o, total_iters=300, power=2.0),
     S.polynomial(LR, decay_steps=300, end_value=0.0, power=2.0), 400),
    ("PolynomialLR-linear", lambda o: L.PolynomialLR(o, total_iters=250),
     S.polynomial(LR, decay_steps=250), 300),
    ("CosineAnnealingLR", lambda o: L.CosineAnnealingLR(o, T_max=300, eta_min=0.001),
     S.cosine(LR, 300, alpha=0.001 / LR), 301),
    ("CosineAnnealingLR-0", lambda o: L.CosineAnnealingLR(o, T_max=200),
     S.cosine(LR, 200), 200),
    ("CosineAnnealingWarmRestarts", lambda o: L.CosineAnnealingWarmRestarts(o, 50, eta_min=1e-3),
     S.cosine_restarts(LR, 50, eta_min=1e-3), 500),
    ("CosineAnnealingWarmRestarts-mult",
     lambda o: L.CosineAnnealingWarmRestarts(o, 10, T_mult=2, eta_min=1e-4),
     S.cosine_restarts(LR, 10, t_mul=2, eta_min=1e-4), 700),
    ("OneCycleLR", lambda o: L.OneCycleLR(o, max_lr=0.2, total_steps=400),
     S.one_cycle(0.2, 400), 400),
    ("OneCycleLR-linear-3", lambda o: L.OneCycleLR(
        o, max_lr=0.2, total_steps=350, pct_start=0.2, anneal_strategy="linear",
        div_factor=10, final_div_factor=100, three_phase=True),
     S.one_cycle(0.2, 350, pct_start=0.2, anneal_strategy="linear", div_factor=10,
                 final_div_factor=100, three_phase=True), 350),
    ("OneCycleLR-cos-3", lambda o: L.OneCycleLR(
        o, max_lr=0.05, total_steps=333, pct_start=0.35, three_phase=True),
     S.one_cycle(0.05, 333, pct_start=0.35, three_phase=True), 333),
    ("CyclicLR", lambda o: L.CyclicLR(o, 0.001, 0.1, step_size_up=20),
     S.cyclic(0.001, 0.1, 20), 400),
    ("CyclicLR-tri2", lambda o: L.CyclicLR(o, 0.001, 0.1, step_size_up=20, step_size_down=35,
                                           mode="triangular2"),
     S.cyclic(0.001, 0.1, 20, 35, mode="triangular2"), 400),
    ("CyclicLR-exp", lambda o: L.CyclicLR(o, 0.001, 0.1, step_size_up=15, mode="exp_range",
                                          gamma=0.995),
     S.cyclic(0.001, 0.1, 15, mode="exp_range", gamma=0.995), 400),
    ("LinearLR", lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=50),
     S.linear(LR * 0.25, LR * 1.0, 50), 300),
    ("LinearLR-down", lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=120),
     S.linear(LR, LR * 0.1, 120), 300),
]


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("name,make,ours,n", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(name, make, ours, n, impl):
    expected = torch_lrs(make, n)
    steps = np.arange(n)
    with fastclip.use_implementation(impl):
        got_array = ours(steps)
        got_scalar = np.array([ours(int(t)) for t in steps])
    np.testing.assert_allclose(got_array, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got_scalar, expected, rtol=1e-12, atol=0)


def test_resume_anywhere_matches_torch():
    # the closed form at step k equals PyTorch after k steps: no replay needed
    expected = torch_lrs(lambda o: L.CosineAnnealingWarmRestarts(o, 10, T_mult=2), 400)
    s = S.cosine_restarts(LR, 10, t_mul=2)
    for k in (0, 9, 10, 29, 30, 69, 70, 150, 310, 399):
        assert s(k) == pytest.approx(expected[k], rel=1e-12)


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("kw", [
    {},
    {"mode": "max", "patience": 3, "cooldown": 2, "factor": 0.5},
    {"threshold_mode": "abs", "threshold": 0.05, "patience": 1, "min_lr": 1e-3},
    {"mode": "max", "threshold_mode": "abs", "threshold": 0.02, "eps": 1e-3, "factor": 0.7},
    {"patience": 0, "cooldown": 4, "factor": 0.9, "min_lr": 0.02},
])
def test_reduce_on_plateau_matches_torch(kw, impl, rng):
    metrics = np.cumsum(rng.standard_normal(400)) * 0.05 + 3.0
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR)
    tsched = L.ReduceLROnPlateau(opt, **kw)
    with fastclip.use_implementation(impl):
        ours = S.reduce_on_plateau(LR, **kw)
    reductions = 0
    for m in metrics:
        opt.step()
        tsched.step(float(m))
        got = ours.step(float(m))
        want = opt.param_groups[0]["lr"]
        assert got == pytest.approx(want, rel=1e-12, abs=0)
        assert ours(0) == got
        reductions += got < LR
        assert ours.state_dict()["num_bad_epochs"] == tsched.num_bad_epochs
        assert ours.state_dict()["cooldown_counter"] == tsched.cooldown_counter
        assert ours.state_dict()["best"] == tsched.best
    assert reductions > 0
