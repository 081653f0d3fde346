"""fastclip.optim: C path vs NumPy reference, state, layouts, bad input, non-finite steps."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastclip
_optim = pytest.importorskip("fastclip._optim", reason="the compiled extension is not built")
from fastclip import optim  # noqa: E402
from fastclip.reference import optim as ref

IMPLS = ["c", "python"]

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.2, 0.9), amsgrad=True)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.4, centered=True, momentum=0.2)),
    ("RMSprop", dict(lr=0.01, centered=True)),
]
CLIPS = [{}, {"clip_norm": 0.7}, {"clip_value": 0.2}]


@pytest.fixture(params=IMPLS)
def impl(request):
    with fastclip.use_implementation(request.param):
        yield request.param


def _make(name, params, **kw):
    return getattr(optim, name)(params, **kw)


def _snapshot(opt):
    return [p.copy() for p in opt.params], opt.state_dict()


def _assert_unchanged(opt, snap):
    params, sd = snap
    for a, b in zip(opt.params, params):
        np.testing.assert_array_equal(a, b)
    now = opt.state_dict()
    assert now["step_count"] == sd["step_count"]
    for e1, e2 in zip(now["state"], sd["state"]):
        for k in e1:
            np.testing.assert_array_equal(e1[k], e2[k])


# ---------------------------------------------------------------------------
# C vs reference
# ---------------------------------------------------------------------------
def _shapes():
    dims = st.integers(0, 6)
    return st.lists(st.lists(dims, min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


@given(
    shapes=_shapes(),
    config=st.sampled_from(CONFIGS),
    clip=st.sampled_from(CLIPS),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
    steps=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_c_matches_reference(shapes, config, clip, dtype, scale, steps, seed):
    name, kw = config
    rng = np.random.default_rng(seed)
    params = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]
    grads = [[np.asarray(rng.standard_normal(s) * scale, dtype=dtype) for s in shapes]
             for _ in range(steps)]
    out = {}
    for impl in IMPLS:
        ps = [p.copy() for p in params]
        with fastclip.use_implementation(impl):
            opt = _make(name, ps, **kw, **clip)
            norms = [opt.step(gs) for gs in grads]
        out[impl] = (ps, opt.state_dict(), norms)
    (pc, sc, nc), (pr, sr, nr) = out["c"], out["python"]
    np.testing.assert_allclose(nc, nr, rtol=1e-6 if dtype == np.float32 else 1e-13)
    if "clip_norm" in clip:
        # the norms are summed in different orders: the coefficients may differ by an ulp
        tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
        for a, b in zip(pc, pr):
            np.testing.assert_allclose(a, b, **tol)
        for e1, e2 in zip(sc["state"], sr["state"]):
            for k in e1:
                np.testing.assert_allclose(e1[k], e2[k], **tol)
    else:
        # same operations in the same order: bit for bit
        for a, b in zip(pc, pr):
            np.testing.assert_array_equal(a, b)
        for e1, e2 in zip(sc["state"], sr["state"]):
            for k in e1:
                np.testing.assert_array_equal(e1[k], e2[k])


@pytest.mark.parametrize("name,kw", CONFIGS[1::2])
def test_c_matches_reference_many_blocks(name, kw):
    # larger than one block (FC_BLOCK = 32768 elements) and than the parallel threshold
    rng = np.random.default_rng(0)
    shapes = [(300, 700), (700,), (70001,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    res = []
    for impl in IMPLS:
        ps = [p.copy() for p in params]
        with fastclip.use_implementation(impl):
            opt = _make(name, ps, **kw)
            opt.step(grads)
            opt.step(grads)
        res.append(ps)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Semantics
# ---------------------------------------------------------------------------
def test_sgd_by_hand(impl):
    w = np.array([1.0, 2.0])
    opt = optim.SGD([w], lr=0.5, momentum=0.9, dampening=0.5, clip_value=1.0)
    assert opt.step([np.array([3.0, -0.5])]) == pytest.approx(math.hypot(3.0, 0.5))
    # first step: buf = clipped gradient (no dampening), as torch
    np.testing.assert_allclose(w, [1.0 - 0.5 * 1.0, 2.0 + 0.5 * 0.5])
    opt.step([np.array([0.0, 0.0])])
    np.testing.assert_allclose(w, [0.5 - 0.5 * 0.9, 2.25 + 0.5 * 0.45])


def test_clipping_before_weight_decay(impl):
    # weight decay is added after clipping: the clipped gradient is 0.1 * g
    w = np.array([10.0])
    opt = optim.SGD([w], lr=1.0, weight_decay=0.5, clip_norm=1.0)
    norm = opt.step([np.array([10.0])])
    assert norm == 10.0
    coef = 1.0 / (10.0 + 1e-6)
    np.testing.assert_allclose(w, [10.0 - (10.0 * coef + 0.5 * 10.0)])


def test_adam_first_step_is_lr_sign(impl):
    w = np.zeros(3)
    opt = optim.Adam([w], lr=0.1, eps=0.0)
    opt.step([np.array([2.0, -3.0, 0.5])])
    np.testing.assert_allclose(w, [-0.1, 0.1, -0.1])


def test_grads_are_not_modified(impl):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    grads = [rng.standard_normal((4, 3)) * 10, rng.standard_normal(3) * 10]
    keep = [g.copy() for g in grads]
    for g in grads:
        g.flags.writeable = False
    for cls, kw in [(optim.SGD, dict(lr=0.1, clip_norm=1.0)), (optim.Adam, dict(clip_value=0.1))]:
        opt = cls(params, **kw)
        opt.step(grads)
    for g, k in zip(grads, keep):
        np.testing.assert_array_equal(g, k)


def test_sqnorms_skips_norm_pass(impl):
    rng = np.random.default_rng(2)
    params = [rng.standard_normal((5, 4)), rng.standard_normal(4)]
    grads = [rng.standard_normal((5, 4)) * 3, rng.standard_normal(4) * 3]
    sq = np.array([float(np.sum(g * g)) for g in grads])
    a = [p.copy() for p in params]
    b = [p.copy() for p in params]
    n1 = optim.Adam(a, clip_norm=1.0).step(grads)
    n2 = optim.Adam(b, clip_norm=1.0).step(grads, sqnorms=sq)
    assert n1 == pytest.approx(n2, rel=1e-14)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-13)
    # the norm comes from sqnorms only (not from the gradients)
    c = [p.copy() for p in params]
    assert optim.SGD(c, lr=0.1).step(grads, sqnorms=[9.0, 16.0]) == 5.0
    assert optim.SGD(c, lr=0.1).step(grads, sqnorms=(0, 0)) == 0.0


def test_lr_callable_and_scale(impl):
    calls = []

    def sched(step):
        calls.append(step)
        return 0.1 / (1 + step)

    w = np.zeros(2)
    opt = optim.SGD([w], lr=sched)
    assert opt.lr == pytest.approx(0.1)
    opt.step([np.ones(2)])
    np.testing.assert_allclose(w, [-0.1, -0.1])
    assert opt.step_count == 1
    assert opt.lr == pytest.approx(0.05)
    opt.lr_scale = 0.5
    assert opt.lr == pytest.approx(0.025)
    opt.step([np.ones(2)])
    np.testing.assert_allclose(w, [-0.125, -0.125])
    assert 0 in calls and 1 in calls
    f = optim.Adam([np.zeros(1)], lr=0.3)
    f.lr_scale = 2
    assert f.lr == pytest.approx(0.6)
    with pytest.raises(ValueError, match="lr_scale"):
        f.lr_scale = -1.0
    with pytest.raises(ValueError, match="lr_scale"):
        f.lr_scale = math.inf
    with pytest.raises(TypeError, match="lr_scale"):
        f.lr_scale = "1"


def test_attributes():
    w = np.zeros(3)
    opt = optim.AdamW([w], clip_norm=2.0)
    assert opt.params[0] is w
    assert opt.clip_norm == 2.0 and opt.clip_value is None
    assert opt.lr == 1e-3 and opt.lr_scale == 1.0 and opt.step_count == 0
    assert opt.hyperparams == dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                                   amsgrad=False)
    assert "AdamW" in repr(opt)
    assert optim.RMSprop([w]).lr == 1e-2
    assert fastclip.optim is optim


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts(impl, dtype):
    """Fortran, strided, negative-stride, 0-d and empty arrays give the same update as
    C-contiguous copies."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 8)).astype(dtype)
    params = [
        np.asfortranarray(rng.standard_normal((4, 5)).astype(dtype)),  # F param, C grad
        base[::2, 1::3],  # strided param
        rng.standard_normal(7).astype(dtype),  # C param, reversed grad
        np.array(1.5, dtype=dtype),  # 0-d
        np.zeros((0, 3), dtype=dtype),  # empty
        np.asfortranarray(rng.standard_normal((3, 2)).astype(dtype)),  # F param, F grad
    ]
    grads = [
        rng.standard_normal((4, 5)).astype(dtype),
        np.asfortranarray(rng.standard_normal((3, 3)).astype(dtype)),
        rng.standard_normal(14).astype(dtype)[::-2],
        np.array(-0.5, dtype=dtype),
        np.zeros((0, 3), dtype=dtype),
        np.asfortranarray(rng.standard_normal((3, 2)).astype(dtype)),
    ]
    dense = [np.ascontiguousarray(p) for p in params]
    base_before = base.copy()
    for name, kw in [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(amsgrad=True)),
                     ("RMSprop", dict(centered=True, momentum=0.1))]:
        # (value clipping: the norm of a strided array is summed in another order)
        a = _make(name, params, clip_value=0.5, **kw)
        b = _make(name, dense, clip_value=0.5, **kw)
        for _ in range(3):
            n1 = a.step(grads)
            assert n1 == pytest.approx(b.step([np.ascontiguousarray(g) for g in grads]),
                                       rel=1e-14)
        for x, y in zip(params, dense):
            np.testing.assert_array_equal(x, y)
    # elements of `base` outside the strided view are untouched
    mask = np.ones(base.shape, bool)
    mask[::2, 1::3] = False
    np.testing.assert_array_equal(base[mask], base_before[mask])


def test_mixed_dtypes(impl):
    a32 = np.ones(3, np.float32)
    a64 = np.ones(3, np.float64)
    opt = optim.Adam([a32, a64], lr=0.1)
    opt.step([np.full(3, 2.0, np.float32), np.full(3, 2.0)])
    assert a32.dtype == np.float32
    np.testing.assert_allclose(a32, 0.9, rtol=1e-6)
    np.testing.assert_allclose(a64, 0.9)


# ---------------------------------------------------------------------------
# Non-finite gradients
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name,kw", [CONFIGS[2], CONFIGS[4], CONFIGS[7]])
def test_nonfinite(impl, name, kw, bad):
    rng = np.random.default_rng(4)
    params = [rng.standard_normal((3, 2)), rng.standard_normal(4), rng.standard_normal(2)]
    grads = [rng.standard_normal((3, 2)), rng.standard_normal(4), rng.standard_normal(2)]
    opt = _make(name, params, clip_norm=1.0, **kw)
    opt.step(grads)
    snap = _snapshot(opt)
    bad_grads = [g.copy() for g in grads]
    bad_grads[1][2] = bad
    bad_grads[2][0] = bad
    with pytest.raises(FloatingPointError, match=r"grads\[1\]"):
        opt.step(bad_grads)
    _assert_unchanged(opt, snap)
    total = opt.step(bad_grads, on_nonfinite="skip")
    assert not math.isfinite(total)
    _assert_unchanged(opt, snap)
    assert opt.step_count == 1
    # with sqnorms
    sq = [1.0, bad if bad != -np.inf else np.nan, 2.0]
    with pytest.raises(FloatingPointError, match=r"grads\[1\]"):
        opt.step(grads, sqnorms=sq)
    _assert_unchanged(opt, snap)
    # a good step still works afterwards
    opt.step(grads)
    assert opt.step_count == 2


def test_nonfinite_value_clipping_still_checked(impl):
    w = np.zeros(2)
    opt = optim.SGD([w], lr=0.1, clip_value=1.0)
    with pytest.raises(FloatingPointError, match=r"grads\[0\]"):
        opt.step([np.array([np.nan, 1.0])])
    np.testing.assert_array_equal(w, 0.0)


# ---------------------------------------------------------------------------
# state_dict
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", CONFIGS)
def test_state_dict_round_trip(impl, name, kw):
    rng = np.random.default_rng(5)
    shapes = [(4, 3), (3,)]
    params = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(8)]
    a = _make(name, params, clip_norm=1.0, **kw)
    for gs in grads[:4]:
        a.step(gs)
    a.lr_scale = 0.5
    sd = a.state_dict()
    saved_params = [p.copy() for p in params]
    # the dict is a deep copy: the next steps do not change it
    for gs in grads[4:]:
        a.step(gs)
    assert sd["step_count"] == 4
    b_params = [p.copy() for p in saved_params]
    b = _make(name, b_params, clip_norm=1.0, **kw)
    b.load_state_dict(sd)
    assert b.step_count == 4 and b.lr_scale == 0.5
    for gs in grads[4:]:
        b.step(gs)
    for x, y in zip(params, b_params):
        np.testing.assert_array_equal(x, y)
    sa, sb = a.state_dict(), b.state_dict()
    for e1, e2 in zip(sa["state"], sb["state"]):
        assert set(e1) == set(e2)
        for k in e1:
            np.testing.assert_array_equal(e1[k], e2[k])
    # loading copies in: changing the dict afterwards does not change b
    for e in sd["state"]:
        for arr in e.values():
            arr[...] = 123.0
    assert all(not np.any(arr == 123.0) for e in b.state_dict()["state"] for arr in e.values())


def test_state_names():
    assert optim.SGD([np.zeros(1)], lr=0.1).state_dict()["state"] == [{}]
    assert set(optim.SGD([np.zeros(1)], lr=0.1, momentum=0.1).state_dict()["state"][0]) == {
        "momentum_buffer"}
    assert set(optim.Adam([np.zeros(1)], amsgrad=True).state_dict()["state"][0]) == {
        "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert set(optim.RMSprop([np.zeros(1)], centered=True, momentum=0.1)
               .state_dict()["state"][0]) == {"square_avg", "grad_avg", "momentum_buffer"}


def test_load_state_dict_validation(impl):
    w = [np.zeros((2, 3)), np.zeros(3)]
    opt = optim.Adam(w, amsgrad=True)
    opt.step([np.ones((2, 3)), np.ones(3)])
    good = opt.state_dict()
    snap = _snapshot(opt)

    def bad(mutate, exc, match):
        d = opt.state_dict()
        mutate(d)
        with pytest.raises(exc, match=match):
            opt.load_state_dict(d)
        _assert_unchanged(opt, snap)

    bad(lambda d: d.update(optimizer="SGD"), ValueError, "optimizer")
    bad(lambda d: d["hyperparams"].update(eps=1e-3), ValueError, "eps")
    bad(lambda d: d["hyperparams"].update(amsgrad=False), ValueError, "amsgrad")
    bad(lambda d: d.pop("lr_scale"), ValueError, "keys")
    bad(lambda d: d.update(step_count=-1), ValueError, "step_count")
    bad(lambda d: d.update(lr_scale=math.nan), ValueError, "lr_scale")
    bad(lambda d: d["state"].pop(), ValueError, "2 dicts")
    bad(lambda d: d["state"][1].pop("exp_avg"), ValueError, r"state'\]\[1\]")
    bad(lambda d: d["state"][0].update(exp_avg=np.zeros((3, 2))), ValueError,
        r"shape \(3, 2\) but params\[0\] has shape \(2, 3\)")
    bad(lambda d: d["state"][1].update(exp_avg_sq=np.zeros(3, np.float32)), TypeError,
        "dtype float32")
    bad(lambda d: d["state"][1].update(exp_avg_sq=[0.0, 0.0, 0.0]), TypeError, "ndarray")
    with pytest.raises(TypeError, match="dict"):
        opt.load_state_dict([good])
    opt.load_state_dict(good)
    _assert_unchanged(opt, snap)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,kw,exc,match",
    [
        (optim.SGD, dict(lr=-0.1), ValueError, "lr"),
        (optim.SGD, dict(lr=math.nan), ValueError, "lr"),
        (optim.SGD, dict(lr="0.1"), TypeError, "lr"),
        (optim.SGD, dict(lr=0.1, momentum=-0.5), ValueError, "momentum"),
        (optim.SGD, dict(lr=0.1, weight_decay=-1.0), ValueError, "weight_decay"),
        (optim.SGD, dict(lr=0.1, nesterov=True), ValueError, "nesterov"),
        (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
         "dampening"),
        (optim.SGD, dict(lr=0.1, nesterov=1), TypeError, "nesterov"),
        (optim.Adam, dict(lr=-1.0), ValueError, "lr"),
        (optim.Adam, dict(betas=(1.0, 0.9)), ValueError, r"betas\[0\]"),
        (optim.Adam, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
        (optim.Adam, dict(betas=0.9), TypeError, "betas"),
        (optim.Adam, dict(eps=-1e-8), ValueError, "eps"),
        (optim.Adam, dict(weight_decay=-0.1), ValueError, "weight_decay"),
        (optim.AdamW, dict(amsgrad="yes"), TypeError, "amsgrad"),
        (optim.RMSprop, dict(alpha=-0.1), ValueError, "alpha"),
        (optim.RMSprop, dict(eps=-1.0), ValueError, "eps"),
        (optim.RMSprop, dict(momentum=-1.0), ValueError, "momentum"),
        (optim.RMSprop, dict(centered=None), TypeError, "centered"),
        (optim.Adam, dict(clip_norm=1.0, clip_value=1.0), ValueError, "exclusive"),
        (optim.Adam, dict(clip_norm=-1.0), ValueError, "clip_norm"),
        (optim.Adam, dict(clip_value=math.nan), ValueError, "clip_value"),
        # infinite values would turn the parameters into inf or NaN at the first step
        (optim.SGD, dict(lr=0.1, weight_decay=math.inf), ValueError, "weight_decay"),
        (optim.SGD, dict(lr=0.1, momentum=math.inf), ValueError, "momentum"),
        (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=-math.inf), ValueError, "dampening"),
        (optim.Adam, dict(eps=math.inf), ValueError, "eps"),
        (optim.AdamW, dict(weight_decay=math.inf), ValueError, "weight_decay"),
        (optim.RMSprop, dict(alpha=1.5), ValueError, "alpha"),
        (optim.RMSprop, dict(alpha=math.inf), ValueError, "alpha"),
        (optim.RMSprop, dict(momentum=math.inf), ValueError, "momentum"),
        (optim.RMSprop, dict(weight_decay=math.inf), ValueError, "weight_decay"),
    ],
)
def test_bad_hyperparameters(cls, kw, exc, match):
    kw = dict(kw)
    if cls is optim.SGD:
        kw.setdefault("lr", 0.1)
    with pytest.raises(exc, match=match):
        cls([np.zeros(3)], **kw)


def test_bad_params():
    with pytest.raises(TypeError, match="single numpy.ndarray"):
        optim.SGD(np.zeros(3), lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        optim.SGD([np.zeros(3), np.zeros(3, np.int64)], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.SGD([[1.0, 2.0]], lr=0.1)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] is read-only"):
        optim.Adam([ro])
    base = np.zeros(10)
    with pytest.raises(ValueError, match="share memory"):
        optim.Adam([base[:6], base[4:]])
    with pytest.raises(TypeError, match="params"):
        optim.Adam(5)


def test_bad_step_inputs(impl):
    rng = np.random.default_rng(6)
    params = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    grads = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    for name, kw in [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", {}), ("RMSprop", {})]:
        opt = _make(name, params, clip_norm=1.0, **kw)
        opt.step(grads)
        snap = _snapshot(opt)
        cases = [
            ([grads[0]], {}, ValueError, "grads has 1 arrays but params has 2"),
            (grads + [grads[1]], {}, ValueError, "grads has 3 arrays but params has 2"),
            ([grads[0], np.zeros(5)], {}, ValueError,
             r"grads\[1\] has shape \(5,\) but params\[1\] has shape \(4,\)"),
            ([grads[0].T, grads[1]], {}, ValueError,
             r"grads\[0\] has shape \(2, 3\) but params\[0\] has shape \(3, 2\)"),
            ([grads[0], grads[1].astype(np.float32)], {}, TypeError,
             r"grads\[1\] has dtype float32 but params\[1\] has dtype float64"),
            ([grads[0], grads[1].astype(np.int64)], {}, TypeError, r"grads\[1\]"),
            ([grads[0], list(grads[1])], {}, TypeError, r"grads\[1\]"),
            (grads[0], {}, TypeError, "single numpy.ndarray"),
            (None, {}, TypeError, "grads"),
            ([grads[0], params[1]], {}, ValueError, r"grads\[1\] shares memory with params\[1\]"),
            ([params[1][:0].reshape(0), grads[1]], {}, ValueError, "shape"),
            (grads, dict(sqnorms=[1.0]), ValueError, "sqnorms"),
            (grads, dict(sqnorms=[1.0, -1.0]), ValueError, "sqnorms"),
            (grads, dict(sqnorms=["a", "b"]), TypeError, "sqnorms"),
            (grads, dict(on_nonfinite="ignore"), ValueError, "on_nonfinite"),
        ]
        for gs, kw2, exc, match in cases:
            with pytest.raises(exc, match=match):
                opt.step(gs, **kw2)
            _assert_unchanged(opt, snap)


def test_bad_lr_callable(impl):
    w = np.zeros(2)
    for fn, exc in [(lambda s: -0.1, ValueError), (lambda s: math.nan, ValueError),
                    (lambda s: "x", TypeError), (lambda s: None, TypeError)]:
        opt = optim.SGD([w], lr=fn)
        with pytest.raises(exc, match="lr callable returned"):
            opt.step([np.ones(2)])
        np.testing.assert_array_equal(w, 0.0)
        assert opt.step_count == 0


def test_fused_step_low_level(impl):
    # the private kernel entry points validate their inputs too (never crash)
    p = [np.zeros(3)]
    g = [np.ones(3)]
    for mod in (_optim, ref):
        with pytest.raises(ValueError, match="kind"):
            mod.fused_step("adagrad", p, g, [()], lr=0.1, step=1)
        with pytest.raises(ValueError, match="states"):
            mod.fused_step("adam", p, g, [()], lr=0.1, step=1)
        with pytest.raises(ValueError, match="states"):
            mod.fused_step("adam", p, g, [(np.zeros(3), np.zeros(3, np.float32))], lr=0.1, step=1)
        with pytest.raises(ValueError, match="step"):
            mod.fused_step("sgd", p, g, [()], lr=0.1, step=0)
        assert mod.fused_step("sgd", p, g, [()], lr=0.1, step=1) == (math.sqrt(3.0), -1)
        assert mod.state_names("rmsprop", momentum=0.1) == ("square_avg", "momentum_buffer")
    np.testing.assert_allclose(p[0], -0.2)


def test_load_state_dict_after_serialisation(impl, tmp_path):
    """betas as a list and numpy scalars (a JSON or npz round trip) are accepted."""
    w = [np.zeros(3)]
    opt = optim.Adam(w, amsgrad=True)
    opt.step([np.ones(3)])
    sd = opt.state_dict()
    sd["hyperparams"]["betas"] = list(sd["hyperparams"]["betas"])
    sd["hyperparams"]["eps"] = np.float64(sd["hyperparams"]["eps"])
    sd["step_count"] = np.int64(1)
    other = optim.Adam([np.zeros(3)], amsgrad=True)
    other.load_state_dict(sd)
    assert other.step_count == 1 and isinstance(other.step_count, int)
    sd["hyperparams"]["betas"] = [0.9, 0.99]
    with pytest.raises(ValueError, match="betas"):
        other.load_state_dict(sd)
    sd["hyperparams"]["betas"] = "ab"
    with pytest.raises(ValueError, match="betas"):
        other.load_state_dict(sd)


def test_byteswapped_grads(impl):
    w = np.zeros(3)
    opt = optim.SGD([w], lr=1.0)
    opt.step([np.array([1.0, 2.0, 3.0], dtype=">f8")])
    np.testing.assert_array_equal(w, [-1.0, -2.0, -3.0])
    with pytest.raises(TypeError, match="byte order"):
        optim.SGD([np.zeros(3, dtype=">f8")], lr=1.0)
