"""fastclip.optim against torch.optim, step by step (50 steps, float64 to 1e-12)."""

import numpy as np
import pytest

import fastclip
from fastclip import optim

torch = pytest.importorskip("torch")

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]
STEPS = 50

CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.9), eps=1e-6, weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.2, amsgrad=True)),
    ("AdamW", dict(lr=0.01, betas=(0.2, 0.5), weight_decay=0.0)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.7)),
    ("RMSprop", dict(lr=0.005, alpha=0.3, eps=1e-4, centered=True, momentum=0.5, weight_decay=0.05)),
]
CLIPS = [None, ("clip_norm", 1.0), ("clip_value", 0.3)]


def _ids(c):
    return f"{c[0]}-" + "-".join(f"{k}={v}" for k, v in c[1].items())


def _data(seed, dtype):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    # gradients of varying scale: some steps clip, some do not
    grads = [
        [(rng.standard_normal(s) * (0.05 + 2.0 * (k % 3))).astype(dtype) for s in SHAPES]
        for k in range(STEPS)
    ]
    return params, grads


def _run_torch(name, kw, clip, params, grads, lr_fn=None):
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(tp, **kw)
    for k, gs in enumerate(grads):
        if lr_fn is not None:
            topt.param_groups[0]["lr"] = lr_fn(k)
        for t, g in zip(tp, gs):
            t.grad = torch.tensor(g.copy())
        if clip is not None and clip[0] == "clip_norm":
            torch.nn.utils.clip_grad_norm_(tp, clip[1])
        elif clip is not None:
            torch.nn.utils.clip_grad_value_(tp, clip[1])
        topt.step()
    return [t.detach().numpy() for t in tp], topt


def _run_fastclip(name, kw, clip, params, grads, lr=None):
    fp = [p.copy() for p in params]
    kw = dict(kw)
    if lr is not None:
        kw["lr"] = lr
    if clip is not None:
        kw[clip[0]] = clip[1]
    opt = getattr(optim, name)(fp, **kw)
    norms = []
    for gs in grads:
        norms.append(opt.step(gs))
    return fp, opt, norms


def _close(a, b, rtol):
    scale = max(float(np.max(np.abs(b))), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


# every clipping mode with the C kernels; the reference (compared with the C path in
# test_optim.py) with global-norm clipping
IMPL_CLIPS = [("c", c) for c in CLIPS] + [("python", CLIPS[1])]


@pytest.mark.parametrize(
    "impl,clip", IMPL_CLIPS, ids=lambda x: x if isinstance(x, str) else "none" if x is None else x[0]
)
@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_matches_torch_float64(config, clip, impl):
    name, kw = config
    params, grads = _data(7, np.float64)
    expected, topt = _run_torch(name, kw, clip, params, grads)
    with fastclip.use_implementation(impl):
        got, opt, _ = _run_fastclip(name, kw, clip, params, grads)
    for a, b in zip(got, expected):
        _close(a, b, 1e-12)
    assert opt.step_count == STEPS
    # the optimiser state matches torch's too
    sd = opt.state_dict()["state"]
    for i, t in enumerate(topt.param_groups[0]["params"]):
        for key, arr in sd[i].items():
            _close(arr, topt.state[t][key].numpy(), 1e-12)


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_schedule_lr_matches_torch(name, impl):
    kw = {"SGD": dict(momentum=0.9, nesterov=True), "Adam": dict(amsgrad=True),
          "AdamW": dict(weight_decay=0.1), "RMSprop": dict(centered=True, momentum=0.3)}[name]

    def sched(step):
        warm = min(1.0, (step + 1) / 10)
        return 0.02 * warm * 0.5 * (1 + np.cos(np.pi * step / STEPS))

    params, grads = _data(11, np.float64)
    expected, _ = _run_torch(name, dict(kw, lr=sched(0)), ("clip_norm", 0.5), params, grads,
                             lr_fn=sched)
    with fastclip.use_implementation(impl):
        got, opt, _ = _run_fastclip(name, kw, ("clip_norm", 0.5), params, grads, lr=sched)
    for a, b in zip(got, expected):
        _close(a, b, 1e-12)
    assert opt.lr == pytest.approx(sched(STEPS))


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_lr_scale_matches_torch_lr(name):
    params, grads = _data(3, np.float64)
    kw = {"SGD": dict(momentum=0.9), "Adam": {}, "RMSprop": {}}[name]
    expected, _ = _run_torch(name, dict(kw, lr=0.004), None, params, grads)
    fp = [p.copy() for p in params]
    opt = getattr(optim, name)(fp, lr=0.016, **kw)
    opt.lr_scale = 0.25
    for gs in grads:
        opt.step(gs)
    for a, b in zip(fp, expected):
        _close(a, b, 1e-12)


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("config", [CONFIGS[5], CONFIGS[9], CONFIGS[11], CONFIGS[17]], ids=_ids)
def test_matches_torch_float32(config, impl):
    name, kw = config
    params, grads = _data(5, np.float32)
    expected, _ = _run_torch(name, kw, ("clip_norm", 1.0), params, grads[:20])
    with fastclip.use_implementation(impl):
        got, _, _ = _run_fastclip(name, kw, ("clip_norm", 1.0), params, grads[:20])
    for a, b in zip(got, expected):
        assert a.dtype == np.float32
        _close(a, b, 2e-5)


def test_returned_norm_is_torch_total_norm():
    params, grads = _data(1, np.float64)
    fp = [p.copy() for p in params]
    opt = optim.SGD(fp, lr=0.1, clip_norm=1.0)
    for gs in grads[:5]:
        total = opt.step(gs)
        tn = torch.nn.utils.get_total_norm([torch.tensor(g) for g in gs])
        assert total == pytest.approx(float(tn), rel=1e-14)
