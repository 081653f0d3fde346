"""The optimiser step plan: parameters and state are validated once, each step checks
only the gradients and sqnorms, and the results are those of fused_step."""

from __future__ import annotations

import numpy as np
import pytest

import fastclip
from fastclip import _dispatch
from fastclip._checks import optim as _co
from fastclip.optim import SGD, Adam, AdamW, RMSprop

_fam = _dispatch.family("optim")
IMPLS = ["c", "python"] if _fam.compiled is not None else ["python"]


@pytest.fixture(params=IMPLS)
def impl(request):
    with fastclip.use_implementation(request.param):
        yield _fam.impl


CASES = [
    (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, "sgd"),
    (Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}, "adam"),
    (AdamW, {"lr": 0.01}, "adam"),
    (RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}, "rmsprop"),
]


def _params(rng):
    base = rng.standard_normal((40, 30))
    return [rng.standard_normal((8, 5)).astype(np.float32),
            np.asfortranarray(rng.standard_normal((6, 7))),
            base[::2, 1::3],  # a strided view: updated through a work copy
            rng.standard_normal(4)]


@pytest.mark.parametrize("cls, kw, kind", CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("clip", [{"clip_norm": 0.5}, {"clip_value": 0.1}, {}])
def test_plan_steps_equal_fused_step(impl, cls, kw, kind, clip):
    rng = np.random.default_rng(3)
    params = _params(rng)
    ref_params = [p.copy() for p in params]
    opt = cls(params, **kw, **clip)
    kernel = dict(opt._kernel)
    states = [tuple(np.zeros_like(p, order=_co.layout_order(p)) for _ in opt._names)
              for p in ref_params]
    for t in range(6):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        sq = np.array([float(np.sum(np.asarray(g, np.float64) ** 2)) for g in grads])
        use_sq = t % 2 == 1
        n1 = opt.step(grads, sqnorms=sq if use_sq else None)
        n2, bad = impl.fused_step(kind, ref_params, grads, states, lr=opt._lr, step=t + 1,
                                  sqnorms=sq if use_sq else None, **clip, **kernel)
        assert bad == -1
        assert n1 == n2
        for a, b in zip(params, ref_params):
            np.testing.assert_array_equal(a, b)


def test_steps_do_not_revalidate_params_or_state(monkeypatch):
    calls = []
    for name in ("check_params_list", "check_states", "check_clip"):
        real = getattr(_co, name)

        def spy(*a, _real=real, _name=name, **k):
            calls.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(_co, name, spy)
    with fastclip.use_implementation("python"):
        w = [np.ones(3), np.ones(2)]
        opt = Adam(w, lr=0.1)
        calls.clear()
        for _ in range(5):
            opt.step([np.ones(3), np.ones(2)])
    assert calls == []


def test_readonly_after_construction_is_caught_at_step(impl):
    w = np.ones(3)
    v = np.ones(2)
    opt = SGD([w, v], lr=0.1, momentum=0.9)
    opt.step([np.ones(3), np.ones(2)])
    before = (w.copy(), v.copy(), opt.state_dict())
    v.flags.writeable = False
    with pytest.raises(ValueError, match=r"^params\[1\] is read-only"):
        opt.step([np.ones(3), np.ones(2)])
    np.testing.assert_array_equal(w, before[0])
    np.testing.assert_array_equal(v, before[1])
    assert opt.step_count == 1
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["momentum_buffer"],
                                  before[2]["state"][0]["momentum_buffer"])


@pytest.mark.parametrize("bad, exc, msg", [
    ([np.ones(3)], ValueError, r"grads has 1 arrays but params has 2"),
    ([np.ones(3), np.ones(3)], ValueError, r"grads\[1\] has shape \(3,\)"),
    ([np.ones(3), np.ones(2, np.float32)], TypeError, r"grads\[1\] has dtype float32"),
])
def test_bad_grads_at_step_modify_nothing(impl, bad, exc, msg):
    w, v = np.ones(3), np.ones(2)
    opt = Adam([w, v], lr=0.1)
    with pytest.raises(exc, match=msg):
        opt.step(bad)
    np.testing.assert_array_equal(w, np.ones(3))
    assert opt.step_count == 0


def test_switching_implementation_rebuilds_the_plan():
    if len(IMPLS) < 2:
        pytest.skip("the compiled extension is not built")
    rng = np.random.default_rng(5)
    grads = [[rng.standard_normal(4)] for _ in range(6)]
    results = []
    for order in (["c"] * 6, ["c", "python"] * 3):
        w = np.ones(4)
        opt = Adam([w], lr=0.05, clip_norm=1.0)
        for name, g in zip(order, grads):
            with fastclip.use_implementation(name):
                opt.step(g)
        results.append(w.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)
