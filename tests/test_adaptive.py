"""Adaptive clippers: C kernels vs NumPy reference, optax/zclip/AutoClip semantics, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastclip
from fastclip import AGC, AutoClip, ZClip
from fastclip._checks.adaptive import unit_split

C = pytest.importorskip("fastclip._adaptive", reason="the compiled extension is not built")
from fastclip.reference import adaptive as R

DTYPES = [np.float32, np.float64]
SHAPES = [(), (1,), (7,), (1, 6), (6, 1), (5, 3), (4, 2, 3), (2, 2, 3, 4), (0, 4), (3, 0), (1, 1, 1, 1, 9)]


# ---------------------------------------------------------------------------
# An independent transcription of optax.adaptive_grad_clip (float64 NumPy)
# ---------------------------------------------------------------------------
def optax_unitwise_norm(x):
    if np.squeeze(x).ndim <= 1:
        sq = np.sum(x * x, keepdims=True)
    elif x.ndim in (2, 3):
        sq = np.sum(x * x, axis=0, keepdims=True)
    elif x.ndim == 4:
        sq = np.sum(x * x, axis=(0, 1, 2), keepdims=True)
    else:
        raise ValueError
    return np.broadcast_to(np.sqrt(sq), x.shape)


def optax_agc(grads, params, clipping, eps=1e-3):
    out = []
    for g, p in zip(grads, params):
        gn, pn = optax_unitwise_norm(g), optax_unitwise_norm(p)
        mx = clipping * np.maximum(pn, eps)
        clipped = g * (mx / np.maximum(gn, 1e-6))
        out.append(np.where(gn < mx, g, clipped))
    return out


def layouts(a):
    """The same values in C order, Fortran order, reversed and strided views."""
    yield a.copy()
    yield np.array(a, order="F")
    if a.ndim:
        yield a[..., ::-1].copy()[..., ::-1]
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        v = big[..., ::2]
        v[...] = a
        yield v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_unitwise_norms_match_reference_and_optax(shape, dtype, rng):
    x = np.asarray(rng.standard_normal(shape)).astype(dtype)
    ref = R.unitwise_norms(x)
    opt = optax_unitwise_norm(x.astype(np.float64))
    for v in layouts(x):
        got = C.unitwise_norms(v)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    # optax broadcasts the unit norms back; compare unit by unit
    _, cols = unit_split(x.shape, "x")
    if x.size:
        if cols == 1:
            np.testing.assert_allclose(ref[0], opt.ravel()[0], rtol=1e-6)
        elif x.ndim == 4:
            np.testing.assert_allclose(ref, opt[0, 0, 0].ravel(), rtol=1e-6)
        else:
            np.testing.assert_allclose(ref, opt[0].ravel(), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_agc_matches_optax_and_reference(shape, dtype, rng):
    g = np.asarray(rng.standard_normal(shape) * 3).astype(dtype)
    p = np.asarray(rng.standard_normal(shape) * 0.5).astype(dtype)
    want = optax_agc([g.astype(np.float64)], [p.astype(np.float64)], 0.05)[0]
    for impl in (C, R):
        for v in layouts(g):
            before = v.copy()
            sb, sa, n = impl.adaptive_grad_clip_([v], [p], 0.05, 1e-3)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(v, want, rtol=tol, atol=tol)
            np.testing.assert_allclose(sb[0], np.sum(before.astype(np.float64) ** 2), rtol=1e-9)
            np.testing.assert_allclose(sa[0], np.sum(v.astype(np.float64) ** 2), rtol=1e-5)
            gn = np.atleast_1d(R.unitwise_norms(before))
            mx = 0.05 * np.maximum(np.atleast_1d(R.unitwise_norms(p)), 1e-3)
            assert n == int(np.count_nonzero(gn >= mx))


@given(
    rows=st.integers(0, 40),
    cols=st.integers(0, 40),
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    clipping=st.floats(1e-3, 10.0),
    eps=st.floats(0.0, 1.0),
    fortran=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_agc_c_vs_reference(rows, cols, dtype, scale, clipping, eps, fortran, seed):
    rng = np.random.default_rng(seed)
    g = (rng.standard_normal((rows, cols)) * scale).astype(dtype)
    p = rng.standard_normal((rows, cols)).astype(dtype)
    if fortran:
        g = np.asfortranarray(g)
    b = (rng.standard_normal(cols) * scale).astype(dtype)
    pb = rng.standard_normal(cols).astype(dtype)
    gc, gr = [g.copy(order="A"), b.copy()], [g.copy(order="A"), b.copy()]
    rc = C.adaptive_grad_clip_(gc, [p, pb], clipping, eps)
    rr = R.adaptive_grad_clip_(gr, [p, pb], clipping, eps)
    for x, y in zip(gc, gr):
        np.testing.assert_allclose(x, y, rtol=2e-6 if dtype == np.float32 else 1e-12, atol=0)
    np.testing.assert_allclose(rc[0], rr[0], rtol=1e-12)
    np.testing.assert_allclose(rc[1], rr[1], rtol=1e-9)
    assert rc[2] == rr[2]


def test_agc_large_arrays_parallel_path(rng):
    # big enough for the OpenMP path and for several row blocks
    for shape in [(784, 512), (300_000,), (20, 40_000)]:
        g = rng.standard_normal(shape).astype(np.float32)
        p = (rng.standard_normal(shape) * 0.01).astype(np.float32)
        a, b = g.copy(), g.copy()
        C.adaptive_grad_clip_([a], [p], 0.01)
        R.adaptive_grad_clip_([b], [p], 0.01)
        np.testing.assert_allclose(a, b, rtol=2e-6)
        np.testing.assert_allclose(C.unitwise_norms(g), R.unitwise_norms(g), rtol=1e-12)


@pytest.mark.parametrize("impl", [C, R])
def test_float64_extreme_values_rescaled(impl):
    g = np.array([[1e200, 1e-200], [1e200, 3e-200]])
    n = impl.unitwise_norms(g)
    np.testing.assert_allclose(n, [math.sqrt(2) * 1e200, math.sqrt(10) * 1e-200], rtol=1e-14)
    p = np.ones_like(g)
    sb, sa, n = impl.adaptive_grad_clip_([g], [p], 0.5, 1e-3)
    assert math.isinf(sb[0]) and sa[0] == pytest.approx(0.5 + 10e-400, rel=1e-12) and n == 1
    # column 0 clipped to 0.5 * sqrt(2), not zeroed by an overflowing norm
    np.testing.assert_allclose(np.linalg.norm(g[:, 0]), 0.5 * math.sqrt(2), rtol=1e-12)


@pytest.mark.parametrize("impl", [C, R])
def test_agc_nan_propagates_like_optax(impl):
    g = np.array([[1.0, 2.0], [np.nan, 1.0]])
    p = np.ones_like(g)
    impl.adaptive_grad_clip_([g], [p], 100.0)
    assert np.isnan(g[:, 0]).all() and np.array_equal(g[:, 1], [2.0, 1.0])


@pytest.mark.parametrize("impl", [C, R])
def test_agc_aliasing_grads_and_params(impl, rng):
    w = rng.standard_normal((6, 4))
    want = optax_agc([w], [w.copy()], 0.5)[0]
    impl.adaptive_grad_clip_([w], [w], 0.5)  # norms are taken before any write
    np.testing.assert_allclose(w, want, rtol=1e-12)


def test_agc_no_view_fallback_writes_back(rng):
    # a 3-d array whose trailing dims cannot be merged into one without a copy
    base = rng.standard_normal((4, 5, 6))
    g = np.swapaxes(base, 1, 2)  # shape (4, 6, 5), not reshapable as a view
    p = np.ones(g.shape)
    want = optax_agc([g.copy()], [p], 0.01)[0]
    C.adaptive_grad_clip_([g], [p], 0.01)
    np.testing.assert_allclose(g, want, rtol=1e-12)
    np.testing.assert_allclose(base, np.swapaxes(want, 1, 2), rtol=1e-12)


@pytest.mark.parametrize("impl", [C, R])
def test_agc_bad_input(impl):
    g = [np.ones((3, 2)), np.ones(2)]
    p = [np.ones((3, 2)), np.ones(2)]
    with pytest.raises(ValueError, match="clipping"):
        impl.adaptive_grad_clip_(g, p, 0.0)
    with pytest.raises(ValueError, match="eps"):
        impl.adaptive_grad_clip_(g, p, 0.1, -1.0)
    with pytest.raises(ValueError, match="params"):
        impl.adaptive_grad_clip_(g, p[:1], 0.1)
    with pytest.raises(ValueError, match=r"params\[1\]"):
        impl.adaptive_grad_clip_(g, [p[0], np.ones(3)], 0.1)
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        impl.adaptive_grad_clip_([np.ones((2, 2, 2, 2, 2))], [np.ones((2, 2, 2, 2, 2))])
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        impl.adaptive_grad_clip_([g[0], np.ones(2, np.int64)], p)
    ro = np.full((3, 2), 100.0)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        impl.adaptive_grad_clip_([np.full((3, 2), 100.0), ro], [p[0], p[0]])
    # nothing was modified by any failing call
    assert all((a == 1).all() for a in g)


# ---------------------------------------------------------------------------
# AGC class
# ---------------------------------------------------------------------------
def test_agc_class(rng):
    g = [rng.standard_normal((5, 3)) * 10, rng.standard_normal(3) * 10]
    p = [rng.standard_normal((5, 3)), rng.standard_normal(3)]
    want = optax_agc(g, p, 0.01)
    agc = AGC()
    out = agc(g, p)
    for o, w in zip(out, want):
        np.testing.assert_allclose(o, w, rtol=1e-12)
    assert agc.last_clipped == 4
    np.testing.assert_allclose(agc.last_norm, math.sqrt(sum(np.sum(x * x) for x in g)))
    np.testing.assert_allclose(agc.last_sqnorms, [np.sum(o * o) for o in out], rtol=1e-9)
    assert not np.shares_memory(out[0], g[0])
    norm = agc.clip_(g, p)
    assert norm == pytest.approx(agc.last_norm)
    for o, w in zip(g, want):
        np.testing.assert_allclose(o, w, rtol=1e-12)
    with pytest.raises(ValueError, match="params"):
        agc.clip_(g)
    with pytest.raises(ValueError, match="clipping"):
        AGC(clipping=-1)
    with pytest.raises(ValueError, match="eps"):
        AGC(eps=float("nan"))
    b = AGC(0.5, 0.1)
    b.load_state_dict(AGC(0.2, 0.3).state_dict())
    assert (b.clipping, b.eps) == (0.2, 0.3)
    with pytest.raises(ValueError, match="clipping"):
        b.load_state_dict({"clipping": 0.0, "eps": 0.1})
    assert (b.clipping, b.eps) == (0.2, 0.3)


# ---------------------------------------------------------------------------
# AutoClip: the authors' algorithm (np.percentile of the history, torch clip)
# ---------------------------------------------------------------------------
def autoclip_reference(norms, percentile, history_size=None):
    hist, coefs = [], []
    for n in norms:
        hist.append(n)
        if history_size:
            hist = hist[-history_size:]
        thr = float(np.percentile(hist, percentile))
        coefs.append(min(1.0, thr / (n + 1e-6)))
    return coefs


@pytest.mark.parametrize("percentile,size", [(10.0, None), (50.0, 7), (0.0, None), (100.0, 3), (37.5, 20)])
def test_autoclip_matches_reference_algorithm(percentile, size, rng):
    scales = np.exp(rng.standard_normal(60) * 1.5)
    grads0 = [rng.standard_normal((8, 4)), rng.standard_normal(4)]
    norms = [s * math.sqrt(sum(np.sum(g * g) for g in grads0)) for s in scales]
    coefs = autoclip_reference(norms, percentile, size)
    ac = AutoClip(percentile, history_size=size)
    for s, c in zip(scales, coefs):
        g = [x * s for x in grads0]
        orig = [x.copy() for x in g]
        norm = ac.clip_(g)
        assert norm == pytest.approx(math.sqrt(sum(np.sum(x * x) for x in orig)), rel=1e-12)
        for x, o in zip(g, orig):
            np.testing.assert_allclose(x, o * c if c < 1 else o, rtol=1e-12)
    assert len(ac.history) == (size or 60)
    np.testing.assert_allclose(ac.history, norms[-(size or 60):], rtol=1e-12)


def test_autoclip_sqnorms_and_nonfinite(rng):
    g = [rng.standard_normal(10)]
    ac = AutoClip()
    sq = np.array([float(np.sum(g[0] ** 2))])
    assert ac.clip_(g, sqnorms=sq) == pytest.approx(math.sqrt(sq[0]))
    bad = [np.array([1.0, np.inf])]
    assert math.isinf(ac.clip_(bad))
    assert np.array_equal(bad[0], [1.0, np.inf]) and len(ac.history) == 1
    with pytest.raises(ValueError, match="sqnorms"):
        ac.clip_(g, sqnorms=[1.0, 2.0])
    with pytest.raises(ValueError, match="percentile"):
        AutoClip(101)
    with pytest.raises(ValueError, match="history_size"):
        AutoClip(history_size=0)
    with pytest.raises(TypeError, match="history_size"):
        AutoClip(history_size=2.5)


def test_autoclip_state_dict_roundtrip(rng):
    a = AutoClip(25.0, history_size=5)
    for s in [1.0, 3.0, 0.5, 8.0, 2.0, 4.0]:
        a.clip_([np.full(4, s)])
    b = AutoClip()
    b.load_state_dict(a.state_dict())
    assert b.percentile == 25.0 and b.history_size == 5
    np.testing.assert_array_equal(a.history, b.history)
    for s in [9.0, 0.1, 3.0]:
        x, y = [np.full(4, s)], [np.full(4, s)]
        a.clip_(x)
        b.clip_(y)
        np.testing.assert_array_equal(x[0], y[0])
    with pytest.raises(ValueError, match="history"):
        b.load_state_dict({"percentile": 10, "history_size": 2, "history": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"percentile": 10})


# ---------------------------------------------------------------------------
# ZClip: a transcription of the zclip package's ZClip.step on norms
# ---------------------------------------------------------------------------
class ZClipPackage:
    def __init__(self, alpha=0.97, z_thresh=2.5, max_grad_norm=None, eps=1e-6, warmup_steps=25,
                 mode="zscore", clip_option="adaptive_scaling", clip_factor=1.0,
                 skip_update_on_spike=False):
        self.__dict__.update(locals())
        self.buffer, self.initialized, self.mean, self.var = [], False, None, None

    def step(self, total_norm):
        """Returns the coefficient applied to the gradients."""
        if not self.initialized:
            self.buffer.append(total_norm)
            if len(self.buffer) >= self.warmup_steps:
                self.mean = sum(self.buffer) / len(self.buffer)
                self.var = sum((x - self.mean) ** 2 for x in self.buffer) / len(self.buffer)
                self.initialized = True
                self.buffer = []
            if self.max_grad_norm is not None:
                return min(1.0, self.max_grad_norm / (total_norm + 1e-6))
            return 1.0
        std = self.var**0.5
        clip_val = None
        if self.mode == "percentile":
            thr = self.mean + self.z_thresh * std
            if total_norm > thr:
                clip_val = thr
        else:
            z = (total_norm - self.mean) / (std + self.eps)
            if z > self.z_thresh:
                if self.clip_option == "adaptive_scaling":
                    eta = z / self.z_thresh
                    clip_val = (self.mean + (self.z_thresh * std) / eta) * self.clip_factor
                else:
                    clip_val = self.mean
        eff = clip_val if clip_val is not None else total_norm
        if self.max_grad_norm is not None:
            eff = min(eff, self.max_grad_norm)
        coef = eff / (total_norm + 1e-6) if total_norm > eff else 1.0
        if not (clip_val is not None and self.skip_update_on_spike):
            x = clip_val if clip_val is not None else total_norm
            self.mean = self.alpha * self.mean + (1 - self.alpha) * x
            self.var = self.alpha * self.var + (1 - self.alpha) * (x - self.mean) ** 2
        return coef


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"mode": "percentile"},
        {"clip_option": "mean"},
        {"max_grad_norm": 3.0, "warmup_steps": 5},
        {"alpha": 0.8, "z_thresh": 1.5, "clip_factor": 0.5, "skip_update_on_spike": True},
    ],
)
def test_zclip_matches_package(kwargs, rng):
    base = [rng.standard_normal((6, 3)), rng.standard_normal(3)]
    n0 = math.sqrt(sum(np.sum(x * x) for x in base))
    scales = np.exp(rng.standard_normal(120) * 0.3)
    scales[[40, 41, 80, 100]] = [20.0, 50.0, 8.0, 200.0]  # spikes
    ref = ZClipPackage(**kwargs)
    zc = ZClip(**kwargs)
    clipped = 0
    for s in scales:
        g = [x * s for x in base]
        orig = [x.copy() for x in g]
        coef = ref.step(n0 * s)
        zc.clip_(g)
        clipped += coef < 1.0
        for x, o in zip(g, orig):
            np.testing.assert_allclose(x, o * coef if coef < 1.0 else o, rtol=1e-12)
        if ref.initialized:
            assert zc.mean == pytest.approx(ref.mean, rel=1e-12)
            assert zc.var == pytest.approx(ref.var, rel=1e-12)
    assert clipped >= 3


def test_zclip_validation_and_state(rng):
    for kw, name in [({"mode": "median"}, "mode"), ({"clip_option": "max"}, "clip_option"),
                     ({"alpha": 1.0}, "alpha"), ({"z_thresh": 0}, "z_thresh"),
                     ({"warmup_steps": 0}, "warmup_steps"), ({"clip_factor": -1}, "clip_factor"),
                     ({"max_grad_norm": 0.0}, "max_grad_norm"), ({"eps": -1e-9}, "eps")]:
        with pytest.raises(ValueError, match=name):
            ZClip(**kw)
    a = ZClip(warmup_steps=3)
    for s in [1.0, 1.2, 0.9, 1.1, 30.0]:
        a.clip_([np.full(3, s)])
    b = ZClip()
    b.load_state_dict(a.state_dict())
    assert b.warmup_steps == 3 and b.mean == a.mean and b.var == a.var
    for s in [1.0, 40.0, 0.7]:
        x, y = [np.full(3, s)], [np.full(3, s)]
        a.clip_(x)
        b.clip_(y)
        np.testing.assert_array_equal(x[0], y[0])
    st_ = a.state_dict()
    st_["mode"] = "bogus"
    with pytest.raises(ValueError, match="mode"):
        b.load_state_dict(st_)
    assert b.mode == "zscore"
    nan = [np.array([np.nan, 1.0])]
    mean = b.mean
    assert math.isnan(b.clip_(nan)) and b.mean == mean


def test_call_leaves_inputs_and_returns_single_array(rng):
    g = rng.standard_normal(50).astype(np.float32) * 100
    orig = g.copy()
    z = ZClip(max_grad_norm=1.0)
    out = z(g)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert np.array_equal(g, orig)
    assert np.linalg.norm(out) == pytest.approx(1.0, rel=1e-5)


def test_public_functions_dispatch():
    x = [np.ones((3, 2), np.float32)]
    with fastclip.use_implementation("python"):
        a = fastclip.unitwise_norms(x)
    with fastclip.use_implementation("c"):
        b = fastclip.unitwise_norms(x)
    np.testing.assert_allclose(a[0], b[0])
    g = [np.full((3, 2), 5.0)]
    sb, sa, n = fastclip.adaptive_grad_clip_(g, [np.ones((3, 2))], 0.1)
    assert n == 2 and sb[0] == pytest.approx(150.0) and sa[0] == pytest.approx(0.06, rel=1e-6)


def test_agc_kernel_independent_of_thread_count():
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, numpy as np, fastclip._adaptive as A\n"
        "rng = np.random.default_rng(5)\n"
        "h = hashlib.sha256()\n"
        "for shape in [(784, 512), (300_000,), (20, 40_000)]:\n"
        "    for order in 'CF':\n"
        "        g = np.array(rng.standard_normal(shape), dtype=np.float32, order=order)\n"
        "        p = np.array(rng.standard_normal(shape) * 0.01, dtype=np.float32, order=order)\n"
        "        sb, sa, n = A.adaptive_grad_clip_([g], [p], 0.01)\n"
        "        h.update(g.tobytes()); h.update(sb.tobytes()); h.update(sa.tobytes())\n"
        "        h.update(A.unitwise_norms(p).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout.strip().splitlines()[-1])
    assert outs[0] == outs[1]


@given(
    shape=st.sampled_from([(3, 4, 5), (2, 3, 4, 5), (6, 1, 4), (1, 1, 7), (5,), ()]),
    dtype=st.sampled_from(DTYPES),
    perm_seed=st.integers(0, 1000),
    step=st.sampled_from([1, 2, -1]),
    seed=st.integers(0, 2**31),
)
def test_agc_any_layout_c_vs_reference(shape, dtype, perm_seed, step, seed):
    """Transposed, strided and reversed views (some with no (rows, cols) view: copy path)."""
    rng = np.random.default_rng(seed)
    order = np.random.default_rng(perm_seed).permutation(len(shape))
    base_shape = tuple(np.array(shape)[order]) if shape else ()
    big = rng.standard_normal(tuple(d * abs(step) for d in base_shape)).astype(dtype)
    sl = tuple(slice(None, None, step) for _ in base_shape)
    view = np.transpose(big[sl], np.argsort(order)) if shape else np.asarray(big)
    assert view.shape == shape
    p = np.asarray(rng.standard_normal(shape)).astype(dtype)
    a = view.copy()
    C.adaptive_grad_clip_([view], [p], 0.05)
    R.adaptive_grad_clip_([a], [p], 0.05)
    np.testing.assert_allclose(view, a, rtol=2e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(C.unitwise_norms(view), R.unitwise_norms(a), rtol=1e-6)


def test_clipper_state_dicts_are_checked_before_anything_changes():
    """A bad last_threshold (or history) is an error naming it, and the clipper keeps
    all of its state, settings included."""
    z = ZClip(warmup_steps=3)
    st = ZClip(warmup_steps=3, alpha=0.5).state_dict()
    st.update(mean=2.0, var=1.0, last_threshold="bad")
    with pytest.raises(TypeError, match="last_threshold"):
        z.load_state_dict(st)
    assert z.alpha != 0.5 and z.mean is None
    a = AutoClip(percentile=10)
    for bad, exc in (({"last_threshold": "x"}, TypeError), ({"history": ["a"]}, TypeError)):
        state = {"percentile": 50, "history_size": None, "history": [3.0],
                 "last_threshold": None, **bad}
        with pytest.raises(exc, match="last_threshold|history"):
            a.load_state_dict(state)
        assert a.percentile == 10 and len(a._window) == 0
    a.load_state_dict({"percentile": 50, "history_size": None, "history": [3.0],
                       "last_threshold": None})
    assert a.percentile == 50 and math.isnan(a.last_threshold)


def test_zclip_skip_update_on_spike_must_be_a_bool():
    with pytest.raises(TypeError, match="skip_update_on_spike"):
        ZClip(skip_update_on_spike="False")
    assert ZClip(skip_update_on_spike=np.True_).skip_update_on_spike is True


def test_clippers_and_optimisers_refuse_masked_sqnorms():
    from fastclip import optim
    sq = np.ma.array([100.0], mask=[1])
    for clipper in (AutoClip(), ZClip()):
        g = [np.ones(2)]
        with pytest.raises(TypeError, match="sqnorms is a numpy.ma.MaskedArray"):
            clipper.clip_(g, sqnorms=sq)
        assert (g[0] == 1).all()
    p = [np.ones(2)]
    with pytest.raises(TypeError, match="sqnorms is a numpy.ma.MaskedArray"):
        optim.SGD(p, lr=0.1, clip_norm=1.0).step([np.ones(2)], sqnorms=sq)
    assert (p[0] == 1).all()


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_agc_leaves_a_non_finite_step_untouched(bad):
    """As the module documents for every clipper: a non-finite global norm leaves the
    gradients as they are (the unit-wise pass would zero or NaN the finite entries of
    the units it scales), whether AGC computes the sums of squares or is given them."""
    for given in (False, True):
        g = np.full((3, 2), 10.0)
        g[0, 0] = bad
        b = np.full(2, 10.0)
        before = [g.copy(), b.copy()]
        agc = AGC(0.1)
        sq = np.array([np.sum(g * g), np.sum(b * b)]) if given else None
        norm = agc.clip_([g, b], [np.ones((3, 2)), np.ones(2)], sqnorms=sq)
        assert not math.isfinite(norm) and agc.last_clipped == 0
        np.testing.assert_array_equal(g, before[0])
        np.testing.assert_array_equal(b, before[1])


@pytest.mark.parametrize("impl_name", ["c", "python"])
def test_clippers_use_the_norm_of_float64_gradients_beyond_the_squares_range(impl_name):
    """Norms above ~1.3e154 (squares overflow) or below ~1e-162 (squares underflow)
    are finite and nonzero: the clippers use them, as get_total_norm does."""
    with fastclip.use_implementation(impl_name):
        g = np.array([3e160, 4e160])
        assert AutoClip().clip_(g) == 5e160
        g = np.array([3e160, 4e160])
        z = ZClip(max_grad_norm=1.0)
        assert z.clip_(g) == 5e160 and z.last_clipped == 1
        np.testing.assert_allclose(g, [0.6, 0.8])
        G = np.array([[3e160], [4e160]])
        a = AGC(0.01)
        assert a.clip_(G, np.ones((2, 1))) == 5e160 and a.last_clipped == 1
        assert np.isfinite(G).all() and (np.abs(G) < 0.02).all()
        tiny = AutoClip()
        assert tiny.clip_(np.array([3e-170, 4e-170])) == pytest.approx(5e-170, rel=1e-15)
        assert tiny.history[0] == pytest.approx(5e-170, rel=1e-15)
        assert AutoClip().clip_(np.zeros(3)) == 0.0


def test_zclip_with_eps_zero_and_no_spread_clips_a_rise():
    z = ZClip(eps=0.0, warmup_steps=1)
    z.clip_(np.array([1.0]))  # warm-up over, variance 0
    g = np.array([2.0])
    assert z.clip_(g) == 2.0 and z.last_clipped == 1 and g[0] < 1.0 + 1e-6
    g = np.array([1.0])
    assert z.clip_(g) == 1.0


def test_autoclip_with_one_norm_of_history_does_not_bound_spikes():
    a = AutoClip(10.0, history_size=1)
    for _ in range(3):
        a.clip_(np.array([1.0]))
    assert not a.bounds_spikes
    b = AutoClip(10.0, history_size=2)
    b.clip_(np.array([1.0]))
    assert b.bounds_spikes


@pytest.mark.parametrize("change,match", [({"mean": math.inf}, "mean"),
                                          ({"var": math.inf}, "var"),
                                          ({"mean": -1.0}, "mean"),
                                          ({"buffer": [1.0, -1.0]}, "buffer")])
def test_zclip_state_with_impossible_statistics_is_refused(change, match):
    z = ZClip(warmup_steps=2)
    z.clip_(np.array([1.0])), z.clip_(np.array([2.0]))
    sd = z.state_dict()
    if "buffer" in change:
        sd.update(mean=None, var=None)
    with pytest.raises(ValueError, match=match):
        z.load_state_dict({**sd, **change})
    assert z.state_dict()["mean"] == sd["mean"] or "buffer" in change


def test_zclip_state_buffer_must_fit_the_warm_up():
    z = ZClip(warmup_steps=3)
    sd = z.state_dict()
    with pytest.raises(ValueError, match="warmup_steps"):
        z.load_state_dict({**sd, "buffer": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="last_threshold"):
        AutoClip().load_state_dict({**AutoClip().state_dict(), "last_threshold": -5.0})


@pytest.mark.parametrize("make", [AutoClip, ZClip])
def test_sqnorms_holding_none_is_a_type_error(make):
    g = [np.ones(2), np.ones(2)]
    with pytest.raises(TypeError, match="sqnorms"):
        make().clip_(g, sqnorms=[None, 1.0])
    assert all((a == 1).all() for a in g)


@pytest.mark.parametrize("cls", [AGC, AutoClip, ZClip])
def test_fit_refuses_a_clipper_class(cls):
    from fastclip import nn, optim

    m = nn.MLP([4, 3], rng=0)
    X = np.ones((8, 4))
    y = np.zeros(8, dtype=int)
    with pytest.raises(TypeError, match=rf"{cls.__name__}\(\)"):
        fastclip.fit(m, X, y, optimizer=optim.SGD(m.parameters(), lr=0.1), clipper=cls,
                     epochs=1, batch_size=4, progress=False)


def test_clippers_take_fastclip_parameters_as_clip_grad_norm_does(rng):
    from fastclip import nn

    model = nn.MLP([4, 6, 3], rng=0)
    for p in model.parameters():
        p.grad = (rng.standard_normal(p.data.shape) * 50).astype(p.data.dtype)
    model.parameters()[1].grad = None  # skipped, as torch does
    have = [p for p in model.parameters() if p.grad is not None]
    arrays = [p.grad.copy() for p in have]
    vals = [p.data for p in have]
    a, b = AGC(0.01), AGC(0.01)
    assert a.clip_(model.parameters()) == b.clip_(arrays, vals)
    assert a.last_clipped == b.last_clipped > 0
    for p, x in zip(have, arrays):
        np.testing.assert_array_equal(p.grad, x)
    z, w = AutoClip(percentile=0.0), AutoClip(percentile=0.0)
    z.clip_([np.ones(2)])
    w.clip_([np.ones(2)])
    assert z.clip_(model.parameters()) == w.clip_(arrays)
    assert z.last_clipped == 1
    for p, x in zip(have, arrays):
        np.testing.assert_array_equal(p.grad, x)
    with pytest.raises(TypeError, match=r"^grads mixes parameters"):
        z.clip_([model.parameters()[0], np.ones(2)])


def test_call_keeps_the_structure_of_a_dict(rng):
    g = {"w": rng.standard_normal((3, 2)) * 100, "b": rng.standard_normal(2) * 100}
    out = ZClip(warmup_steps=1, max_grad_norm=1.0)({"w": g["w"], "b": g["b"]})
    assert isinstance(out, dict) and list(out) == ["w", "b"]
    want = ZClip(warmup_steps=1, max_grad_norm=1.0)([g["w"], g["b"]])
    np.testing.assert_array_equal(out["w"], want[0])
    np.testing.assert_array_equal(out["b"], want[1])
    sq = fastclip.unitwise_norms({"w": g["w"], "b": g["b"]})
    np.testing.assert_allclose(sq["w"], np.linalg.norm(g["w"], axis=0))
