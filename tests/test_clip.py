"""fastclip._clip (C) against fastclip.reference.clip (NumPy): same results, same errors.

Also: the implementation switch, "a coefficient of 1 writes nothing", determinism
across OpenMP thread counts, and 64-bit element counts.
"""

from __future__ import annotations

import math
import mmap
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

C = pytest.importorskip("fastclip._clip", reason="the compiled extension is not built")

import fastclip  # noqa: E402
from fastclip import _common, _dispatch  # noqa: E402
from fastclip.reference import clip as R  # noqa: E402

_fam = _dispatch.family("clip")

DTYPES = [np.float32, np.float64]
NORM_TYPES = [1.0, 2.0, math.inf, 0.5, 3.0]
LAYOUTS = ["C", "F", "step", "neg", "T", "slice2d", "zerod"]

# --------------------------------------------------------------------------------------
# helpers


def _view(values: np.ndarray, layout: str) -> np.ndarray:
    """An array with ``values``' elements (in some order) in the given memory layout.

    Always a fresh array (or a view of a fresh base), writeable.
    """
    v = np.asarray(values)
    if layout == "C":
        return v.copy()
    if layout == "F":
        return np.array(v.reshape(_shape2(v.size)), order="F", copy=True)
    if layout == "step":  # every other element of a bigger buffer
        base = np.full(2 * v.size + 1, 7.0, dtype=v.dtype)
        base[1::2] = v.ravel()
        return base[1::2]
    if layout == "neg":  # negative stride
        base = np.full(v.size + 2, 7.0, dtype=v.dtype)
        base[1:-1] = v.ravel()[::-1]
        return base[-2:0:-1]
    if layout == "T":  # transposed 3-d view
        n = v.size
        a, b = _shape2(n)
        return v.reshape(a, b, 1).copy().transpose(2, 1, 0)
    if layout == "slice2d":  # rows and columns skipped, columns reversed
        a, b = _shape2(v.size)
        base = np.full((2 * a + 1, 3 * b + 2), 7.0, dtype=v.dtype)
        view = base[1::2, -2:0:-3][:a, :b]
        view[...] = v.reshape(a, b)
        return view
    if layout == "zerod":
        return np.array(v.ravel()[0] if v.size else 0.0, dtype=v.dtype)
    raise ValueError(layout)


def _shape2(n: int) -> tuple[int, int]:
    if n == 0:
        return (0, 3)
    for a in range(math.isqrt(n), 0, -1):
        if n % a == 0:
            return (a, n // a)
    return (1, n)


def _close(x, y, rtol):
    """Equal within rtol, NaN equal to NaN, infinities equal by sign."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    assert x.shape == y.shape
    np.testing.assert_allclose(x, y, rtol=rtol, atol=0, equal_nan=True)


def _outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 (compared between the implementations)
        return ("err", type(exc), str(exc))


def _same_error(a, b):
    assert a[0] == b[0] == "err"
    assert a[1] is b[1], (a, b)
    assert a[2] == b[2], (a, b)


def _rtol(dtype):
    return 1e-6 if np.dtype(dtype) == np.float32 else 1e-12


# --------------------------------------------------------------------------------------
# strategies


@st.composite
def grad_lists(draw, max_arrays=4, max_size=40, specials=True):
    """A list of (values, layout) with a common or mixed dtype, huge/tiny magnitudes,
    NaN/inf and signed zeros sometimes."""
    n = draw(st.integers(0, max_arrays))
    mixed = draw(st.booleans())
    dtype0 = draw(st.sampled_from(DTYPES))
    out = []
    for _ in range(n):
        dtype = draw(st.sampled_from(DTYPES)) if mixed else dtype0
        size = draw(st.integers(0, max_size))
        vals = np.array(
            draw(st.lists(st.floats(-8.0, 8.0, width=32), min_size=size, max_size=size)),
            dtype=np.float64,
        )
        if dtype == np.float64:
            scale = draw(st.sampled_from([1.0, 1.0, 1e200, 1e-200, 1e300, 1e-300]))
        else:
            scale = draw(st.sampled_from([1.0, 1.0, 1e30, 1e-30]))
        vals = vals * scale
        if specials and size and draw(st.integers(0, 4)) == 0:
            k = draw(st.integers(1, min(3, size)))
            idx = draw(st.lists(st.integers(0, size - 1), min_size=k, max_size=k))
            vals[idx] = draw(
                st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -0.0]), min_size=k, max_size=k)
            )
        layout = draw(st.sampled_from(LAYOUTS))
        out.append((vals.astype(dtype), layout))
    return out


def _build(spec):
    return [_view(v, layout) for v, layout in spec]


def _copies(arrs):
    return [np.array(a, copy=True, order="K") for a in arrs]


norm_types = st.sampled_from(NORM_TYPES + ["inf"])


# --------------------------------------------------------------------------------------
# norms


@given(spec=grad_lists(), p=norm_types)
def test_array_norms_matches_reference(spec, p):
    arrs = _build(spec)
    before = _copies(arrs)
    got = C.array_norms(arrs, p)
    want = R.array_norms(arrs, p)
    assert got.dtype == np.float64 and got.shape == (len(arrs),)
    _close(got, want, 1e-12)
    for a, b in zip(arrs, before):  # read-only functions write nothing
        np.testing.assert_array_equal(a, b)


@given(spec=grad_lists(), p=norm_types, check=st.booleans())
def test_get_total_norm_matches_reference(spec, p, check):
    arrs = _build(spec)
    got = _outcome(C.get_total_norm, arrs, p, check)
    want = _outcome(R.get_total_norm, arrs, p, check)
    if want[0] == "err":
        _same_error(got, want)
        assert want[1] is FloatingPointError
    else:
        assert got[0] == "ok", got
        assert isinstance(got[1], float)
        _close(got[1], want[1], 1e-12)


@given(spec=grad_lists(max_arrays=1), p=norm_types)
def test_single_array_input(spec, p):
    assume(len(spec) == 1)
    (a,) = _build(spec)
    got = C.array_norms(a, p)
    assert got.shape == (1,)
    _close(got, R.array_norms(a, p), 1e-12)
    _close(C.get_total_norm(a, p), R.get_total_norm(a, p), 1e-12)


def test_generator_and_tuple_inputs():
    arrs = [np.arange(5.0), np.ones((2, 3), np.float32)]
    want = R.get_total_norm(arrs)
    assert C.get_total_norm(tuple(arrs)) == want
    assert C.get_total_norm(a for a in arrs) == want
    assert R.get_total_norm(a for a in arrs) == want
    assert C.get_total_norm([]) == R.get_total_norm([]) == 0.0
    assert C.array_norms([]).shape == (0,)


# --------------------------------------------------------------------------------------
# in-place functions


@st.composite
def max_norm_for(draw, total):
    f = draw(st.sampled_from([0.0, 1e-3, 0.5, 0.999999, 1.0, 1.000001, 2.0, math.inf]))
    if math.isfinite(total) and total > 0:
        return f * total if math.isfinite(f) else f
    return draw(st.sampled_from([0.0, 0.5, 1.0, 1e300, math.inf]))


@given(spec=grad_lists(), p=norm_types, check=st.booleans(), data=st.data())
def test_clip_grad_norm_matches_reference(spec, p, check, data):
    a_c, a_r = _build(spec), _build(spec)
    before = _copies(a_c)
    total = R.get_total_norm(_build(spec), p)
    max_norm = data.draw(max_norm_for(total))
    got = _outcome(C.clip_grad_norm_, a_c, max_norm, p, check)
    want = _outcome(R.clip_grad_norm_, a_r, max_norm, p, check)
    if want[0] == "err":
        _same_error(got, want)
        for a, b in zip(a_c, before):  # nothing modified
            np.testing.assert_array_equal(a, b)
            assert a.tobytes() == b.tobytes()
        return
    assert got[0] == "ok", got
    _close(got[1], want[1], 1e-12)
    for x, y, (v, _) in zip(a_c, a_r, spec):
        assert x.dtype == v.dtype
        _close(x, y, _rtol(x.dtype))


@given(spec=grad_lists(), data=st.data())
def test_clip_grads_with_norm_matches_reference(spec, data):
    a_c, a_r = _build(spec), _build(spec)
    total = data.draw(st.sampled_from([0.0, 1e-300, 0.5, 3.0, 1e300, math.inf, math.nan]))
    max_norm = data.draw(st.sampled_from([0.0, 0.25, 1.0, 7.0, math.inf]))
    assert C.clip_grads_with_norm_(a_c, max_norm, total) is None
    R.clip_grads_with_norm_(a_r, max_norm, total)
    for x, y in zip(a_c, a_r):
        _close(x, y, _rtol(x.dtype))


@given(spec=grad_lists(), clip_value=st.sampled_from([0.0, 1e-30, 0.5, 3.0, 1e200, math.inf]))
def test_clip_grad_value_matches_reference(spec, clip_value):
    a_c, a_r = _build(spec), _build(spec)
    C.clip_grad_value_(a_c, clip_value)
    R.clip_grad_value_(a_r, clip_value)
    for x, y in zip(a_c, a_r):
        np.testing.assert_array_equal(x, y)  # exact: a clamp rounds nothing


@given(spec=grad_lists())
def test_zero_nans_matches_reference(spec):
    a_c, a_r = _build(spec), _build(spec)
    expected = sum(int(np.isnan(a).sum()) for a in a_c)  # layouts may keep a subset
    nc = C.zero_nans_(a_c)
    nr = R.zero_nans_(a_r)
    assert nc == nr == expected
    for x, y in zip(a_c, a_r):
        np.testing.assert_array_equal(x, y)
        assert not np.isnan(x).any()


# --------------------------------------------------------------------------------------
# out-of-place functions


def _check_new_arrays(outs, inputs):
    for o, i in zip(outs, inputs):
        assert isinstance(o, np.ndarray)
        assert o.shape == i.shape and o.dtype == i.dtype
        assert not np.shares_memory(o, i)


@given(
    spec=grad_lists(),
    lo=st.sampled_from([-math.inf, -1e200, -2.0, -0.5, 0.0, 0.5]),
    width=st.sampled_from([0.0, 1e-3, 1.0, 4.0, math.inf]),
)
def test_clip_by_value_matches_reference(spec, lo, width):
    arrs = _build(spec)
    before = _copies(arrs)
    hi = lo + width
    got = _outcome(C.clip_by_value, arrs, lo, hi)
    want = _outcome(R.clip_by_value, arrs, lo, hi)
    if want[0] == "err":
        _same_error(got, want)
        return
    _check_new_arrays(got[1], arrs)
    for x, y in zip(got[1], want[1]):
        np.testing.assert_array_equal(x, y)
    for a, b in zip(arrs, before):
        np.testing.assert_array_equal(a, b)


@given(spec=grad_lists(), clip_norm=st.sampled_from([1e-300, 0.1, 1.0, 5.0, 1e300]))
def test_clip_by_norm_matches_reference(spec, clip_norm):
    arrs = _build(spec)
    before = _copies(arrs)
    got = C.clip_by_norm(arrs, clip_norm)
    want = R.clip_by_norm(arrs, clip_norm)
    _check_new_arrays(got, arrs)
    for x, y in zip(got, want):
        _close(x, y, _rtol(x.dtype))
    for a, b in zip(arrs, before):
        np.testing.assert_array_equal(a, b)


@given(
    spec=grad_lists(),
    clip_norm=st.sampled_from([1e-300, 0.1, 1.0, 5.0, 1e300]),
    use_norm=st.sampled_from([None, None, 0.0, 2.0, 1e200, math.inf, math.nan]),
)
def test_clip_by_global_norm_matches_reference(spec, clip_norm, use_norm):
    arrs = _build(spec)
    before = _copies(arrs)
    got, g_c = C.clip_by_global_norm(arrs, clip_norm, use_norm)
    want, g_r = R.clip_by_global_norm(arrs, clip_norm, use_norm)
    assert isinstance(got, list)
    _close(g_c, g_r, 1e-12)
    _check_new_arrays(got, arrs)
    for x, y in zip(got, want):
        _close(x, y, _rtol(x.dtype))
    for a, b in zip(arrs, before):
        np.testing.assert_array_equal(a, b)


def test_single_array_returns_array():
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    for impl in (C, R):
        assert isinstance(impl.clip_by_value(x, -1, 1), np.ndarray)
        assert isinstance(impl.clip_by_norm(x, 1.0), np.ndarray)
        outs, _ = impl.clip_by_global_norm(x, 1.0)
        assert isinstance(outs, list) and len(outs) == 1


# --------------------------------------------------------------------------------------
# layouts at sizes that cross block boundaries and go parallel


def _large_views(dtype):
    """Views of ~100k-300k elements: 2-d/3-d strided, negative strides, Fortran."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((700, 900)).astype(dtype)
    cube = rng.standard_normal((40, 50, 60)).astype(dtype)
    return [
        base[::2, ::-3],  # 2-d, negative column stride
        np.asfortranarray(rng.standard_normal((333, 401)).astype(dtype)),
        cube.transpose(2, 0, 1)[:, 1:, ::2],  # 3-d, permuted
        rng.standard_normal(300_001).astype(dtype)[::-1],
        rng.standard_normal(200_003).astype(dtype),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_strided_views_match_reference(dtype):
    views = _large_views(dtype)
    for p in NORM_TYPES:
        _close(C.array_norms(views, p), R.array_norms(views, p), 1e-12)
    a_c, a_r = _large_views(dtype), _large_views(dtype)
    _close(C.clip_grad_norm_(a_c, 1.0), R.clip_grad_norm_(a_r, 1.0), 1e-12)
    for x, y in zip(a_c, a_r):
        _close(x, y, _rtol(dtype))
    _close(C.clip_grad_norm_(a_c, 0.5, 3.0), R.clip_grad_norm_(a_r, 0.5, 3.0), 1e-12)
    for x, y in zip(a_c, a_r):
        _close(x, y, _rtol(dtype))
    outs_c, g_c = C.clip_by_global_norm(views, 0.1)
    outs_r, g_r = R.clip_by_global_norm(views, 0.1)
    _close(g_c, g_r, 1e-12)
    for x, y in zip(outs_c, outs_r):
        _close(x, y, _rtol(dtype))
    for x, y in zip(C.clip_by_value(views, -0.3, 0.2), R.clip_by_value(views, -0.3, 0.2)):
        np.testing.assert_array_equal(x, y)
    # clipping a view leaves the rest of its base untouched
    rng = np.random.default_rng(3)
    base = rng.standard_normal((700, 900)).astype(dtype)
    b0 = base.copy()
    C.clip_grad_value_(base[1::2, ::-2], 0.1)
    mask = np.zeros(base.shape, bool)
    mask[1::2, ::-2] = True
    np.testing.assert_array_equal(base[~mask], b0[~mask])
    np.testing.assert_array_equal(base[mask], np.clip(b0[mask], dtype(-0.1), dtype(0.1)))


# --------------------------------------------------------------------------------------
# magnitudes NumPy gets wrong


@pytest.mark.parametrize("impl", [C, R], ids=["c", "python"])
def test_huge_and_tiny_float64_norms(impl):
    huge = [np.full(4, 1e200), np.full((2, 2), -1e200)]
    tiny = [np.full(4, 1e-200), np.full(4, 3e-200)[::-1]]
    with np.errstate(over="ignore", under="ignore"):
        assert not np.isfinite(np.sqrt(sum(np.vdot(g, g) for g in huge)))  # NumPy: inf
        assert np.sqrt(sum(np.vdot(g, g) for g in tiny)) == 0.0  # NumPy: 0
    assert impl.get_total_norm(huge) == pytest.approx(math.sqrt(8) * 1e200, rel=1e-15)
    assert impl.get_total_norm(tiny) == pytest.approx(math.sqrt(40) * 1e-200, rel=1e-15)
    _close(impl.array_norms(tiny), [2e-200, 6e-200], 1e-15)
    assert impl.get_total_norm(huge, 1) == pytest.approx(8e200, rel=1e-15)
    assert impl.get_total_norm(huge, 3) == pytest.approx(8 ** (1 / 3) * 1e200, rel=1e-14)
    assert impl.get_total_norm(huge, 0.5) == pytest.approx(64e200, rel=1e-14)
    assert impl.get_total_norm(huge, math.inf) == 1e200
    # the true norm is not representable: inf
    assert impl.get_total_norm([np.full(3, 1.5e308)], 1) == math.inf
    # clipping huge gradients gives finite, clipped gradients
    g = [a.copy() for a in huge]
    total = impl.clip_grad_norm_(g, 1.0)
    assert total == pytest.approx(math.sqrt(8) * 1e200, rel=1e-15)
    assert impl.get_total_norm(g) == pytest.approx(1.0, rel=1e-12)


# --------------------------------------------------------------------------------------
# the implementation switch


def test_set_implementation_switches(monkeypatch):
    calls = []
    real = R.clip_grad_norm_

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(R, "clip_grad_norm_", spy)
    previous = fastclip.get_implementation()
    try:
        fastclip.set_implementation("python")
        assert fastclip.get_implementation() == "python"
        assert _fam.impl is R
        fastclip.clip_grad_norm_([np.ones(3)], 1.0)
        assert len(calls) == 1
        fastclip.set_implementation("c")
        assert _fam.impl is C
        fastclip.clip_grad_norm_([np.ones(3)], 1.0)
        assert len(calls) == 1
        with fastclip.use_implementation("python"):
            fastclip.clip_grad_norm_([np.ones(3)], 1.0)
            assert len(calls) == 2
        assert fastclip.get_implementation() == "c"
        with pytest.raises(ValueError, match="name must be one of"):
            fastclip.set_implementation("fortran")
        assert fastclip.get_implementation() == "c"
    finally:
        fastclip.set_implementation(previous)


def _run_children(jobs, timeout: float = 300):
    """Run ``[(argv_tail, env_extra), ...]`` as ``python -c ...`` children concurrently;
    returns their CompletedProcess-like (returncode, stdout, stderr) in order."""
    procs = []
    for code, args, env_extra in jobs:
        env = dict(os.environ)
        env.update(env_extra)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(code), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    out = []
    for pr in procs:
        so, se = pr.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(pr.args, pr.returncode, so, se))
    return out


def _marked(stdout: str, marker: str = "RESULT ") -> str:
    """The child's result line (stdout may also hold build messages)."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(marker)]
    assert len(lines) == 1, stdout
    return lines[0][len(marker) :]


def test_environment_variable_selects_implementation():
    code = """
        import fastclip
        from fastclip import _common, _dispatch
        fastclip.clip_grad_norm_([__import__("numpy").ones(2)], 1.0)
        print("RESULT", fastclip.get_implementation(), _dispatch.family("clip").impl.__name__)
    """
    cases = [("python", "fastclip.reference.clip"), ("c", "fastclip._clip"), ("cuda", None)]
    results = _run_children([(code, (), {"FASTCLIP_IMPLEMENTATION": v}) for v, _ in cases])
    for (value, mod), r in zip(cases, results):
        if mod is None:
            assert r.returncode != 0
            assert "FASTCLIP_IMPLEMENTATION must be one of" in r.stderr
        else:
            assert r.returncode == 0, r.stderr
            assert _marked(r.stdout) == f"{value} {mod}"


# --------------------------------------------------------------------------------------
# a coefficient of 1 writes nothing


_NO_WRITE_CHILD = """
    import ctypes, mmap, sys
    import numpy as np
    from fastclip import _clip
    from fastclip.reference import clip as ref

    impls = [_clip, ref] if sys.argv[1] == "both" else [_clip if sys.argv[1] == "c" else ref]
    page = mmap.PAGESIZE
    n = 4 * page // 4
    buf = mmap.mmap(-1, 4 * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    a = np.frombuffer(buf, dtype=np.float32, count=n)
    a[:] = np.linspace(-1, 1, n, dtype=np.float32)
    b = np.frombuffer(buf, dtype=np.float32, count=n)[: n // 2]
    c = np.frombuffer(buf, dtype=np.float32, count=n)[n // 2 :][::-3]
    assert a.flags.writeable
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    # From here on any write to the buffer is a segmentation fault.
    assert libc.mprotect(addr, 4 * page, mmap.PROT_READ) == 0
    for impl in impls:
        total = impl.clip_grad_norm_([b, c], 1e9)
        impl.clip_grad_norm_(b, 1e9, norm_type=float("inf"))
        impl.clip_grad_norm_([c, b], 1e9, norm_type=3.0, error_if_nonfinite=True)
        impl.clip_grads_with_norm_([b, c], 5.0, 1.0)
        impl.clip_grads_with_norm_([b, c], float("inf"), 3.0)
    print("RESULT", repr(total), flush=True)
    if sys.argv[2] == "write":  # proves a write would have been caught
        impls[0].clip_grad_norm_([b, c], 1e-3)
    print("RESULT-AFTER", flush=True)
"""


def test_coefficient_one_writes_nothing():
    """The arrays live in memory made read-only with mprotect (NumPy still sees them as
    writeable): any write, even of an unchanged value, kills the child."""
    jobs = [
        (_NO_WRITE_CHILD, ("both", "nowrite"), {}),
        (_NO_WRITE_CHILD, ("c", "write"), {}),
        (_NO_WRITE_CHILD, ("python", "write"), {}),
    ]
    results = _run_children(jobs)
    for (_, (impl, mode), _), r in zip(jobs, results):
        if mode == "nowrite":
            assert r.returncode == 0, (impl, r.stderr)
            assert float(_marked(r.stdout)) > 0
            assert "RESULT-AFTER" in r.stdout
        else:  # control: with clipping the same child dies writing to protected memory
            assert r.returncode != 0, impl
            assert "RESULT-AFTER" not in r.stdout


# --------------------------------------------------------------------------------------
# determinism across thread counts


_DETERMINISM_CHILD = """
    import hashlib, math
    import numpy as np
    from fastclip import _clip, _common

    rng = np.random.default_rng(2024)
    h = hashlib.sha256()
    base = rng.standard_normal((1000, 1000))  # float64
    grads = [  # 1.6M elements: well above the parallel threshold, 50 blocks
        rng.standard_normal(700_001).astype(np.float32) * np.float32(1e3),
        base[::-1, ::2],                               # strided float64
        np.asfortranarray(rng.standard_normal((700, 571)).astype(np.float32)),
        rng.standard_normal(5),
    ]
    for p in (2.0, 1.0, math.inf, 3.0):
        h.update(_clip.array_norms(grads, p).tobytes())
        h.update(np.float64(_clip.get_total_norm(grads, p)).tobytes())
    tiny = [g * 1e-200 for g in grads if g.dtype == np.float64]
    h.update(_clip.array_norms(tiny).tobytes())
    t = _clip.clip_grad_norm_(grads, 10.0)
    h.update(np.float64(t).tobytes())
    for g in grads:
        h.update(np.ascontiguousarray(g).tobytes())
    _clip.clip_grad_value_(grads, 1e-4)
    for g in grads:
        h.update(np.ascontiguousarray(g).tobytes())
    outs, gn = _clip.clip_by_global_norm(grads, 1e-3)
    h.update(np.float64(gn).tobytes())
    for o in outs:
        h.update(o.tobytes())
    print("RESULT", _common.max_threads(), h.hexdigest(), flush=True)
"""


def test_results_bit_identical_across_thread_counts():
    counts = (1, 2, 3, 8)
    results = _run_children(
        [
            (_DETERMINISM_CHILD, (), {"OMP_NUM_THREADS": str(n), "OMP_DYNAMIC": "false"})
            for n in counts
        ]
    )
    digests = {}
    for n, r in zip(counts, results):
        assert r.returncode == 0, r.stderr
        threads, digest = _marked(r.stdout).split()
        # the thread count is capped at the processors available (fc_threads.h)
        cap = min(_common.num_procs(), _common.MAX_THREADS)
        assert int(threads) == (min(n, cap) if _common.openmp_enabled() else 1)
        digests[n] = digest
    assert len(set(digests.values())) == 1, digests


# --------------------------------------------------------------------------------------
# 64-bit counts


def test_norm_over_more_than_2_31_elements_without_memory():
    n = 2**31 + 10
    x = np.broadcast_to(np.float32(1), (n,))  # stride 0: no memory
    assert x.size > 2**31
    assert C.get_total_norm([x]) == math.sqrt(n)  # exact: every square is 1


def test_inplace_views_with_byte_offsets_beyond_4_gib():
    """Strided in-place views spanning 8.6 GB of (mostly untouched) virtual memory."""
    n = 2**31 + 1024
    buf = mmap.mmap(-1, n * 4)  # anonymous: only the pages written below are allocated
    try:
        a = np.frombuffer(buf, dtype=np.float32)
        assert a.size > 2**31 and a.flags.writeable
        v = a[:: 2**16]  # 32769 elements, 256 KiB apart
        w = a[: 2**31].reshape(-1, 2**14)[:: 2**12, :: -(2**13)]  # 2-d, negative stride
        v[:] = 2.0
        v[-1] = 3.0
        w[:] = -1.0  # w and v share no element
        assert not np.shares_memory(v, w)
        want = math.sqrt((v.size - 1) * 4.0 + 9.0 + w.size)
        assert C.get_total_norm([v, w]) == pytest.approx(want, rel=1e-14)
        total = C.clip_grad_norm_([v, w], 1.0)
        assert total == pytest.approx(want, rel=1e-14)
        coef = np.float32(1.0 / (want + 1e-6))
        assert a[2**31 + 1024 - 1024] == np.float32(3.0) * coef  # element 2**31: last of v
        assert np.all(v[:-1] == np.float32(2.0) * coef)
        assert np.all(w == np.float32(-1.0) * coef)
        C.clip_grad_value_([v, w], 1e-3)
        assert a[2**31] == np.float32(1e-3) and np.all(w == np.float32(-1e-3))
        del a, v, w
    finally:
        buf.close()


def test_inplace_clip_of_more_than_2_31_elements():
    """A real 8.6 GB float32 array. Opt-in (FASTCLIP_BIG_TESTS=1): filling it takes
    20-50 s on a VM, beyond the time budget of the default run."""
    psutil = pytest.importorskip("psutil")
    if os.environ.get("FASTCLIP_BIG_TESTS") != "1":
        pytest.skip("set FASTCLIP_BIG_TESTS=1 to clip a real 2**31+1000-element array (8.6 GB)")
    need = 14 * 2**30
    avail = psutil.virtual_memory().available
    if avail < need:
        pytest.skip(
            f"needs >= 14 GiB of available memory for an 8.6 GB array, "
            f"{avail / 2**30:.1f} GiB available"
        )
    n = 2**31 + 1000
    a = np.full(n, 0.5, dtype=np.float32)
    try:
        a[-1] = 1.5
        total = C.clip_grad_norm_(a, 1.0)
        want = math.sqrt((n - 1) * 0.25 + 2.25)
        assert total == pytest.approx(want, rel=1e-12)
        coef = np.float32(1.0 / (want + 1e-6))
        v, last = np.float32(0.5) * coef, np.float32(1.5) * coef
        step = 1 << 28
        for s in range(0, n - 1, step):  # every element, chunk by chunk
            chunk = a[s : min(s + step, n - 1)]
            assert np.count_nonzero(chunk != v) == 0, s
        assert a[-1] == last
    finally:
        del a


def _ssq_lanes_model(x: np.ndarray) -> float:
    """The float32 sum of squares of one block, as the C kernels define it: 32 float64
    lanes (lane j takes elements j, j+32, ...), a fixed tree, then the tail."""
    x = x.astype(np.float64)
    n = x.size
    if n < 32:
        s = 0.0
        for v in x:
            s += v * v
        return s
    m = n // 32 * 32
    lanes = np.zeros(32)
    for i in range(0, m, 32):
        lanes += x[i : i + 32] * x[i : i + 32]
    w = 16
    while w >= 1:
        lanes[:w] = lanes[:w] + lanes[w : 2 * w]
        w //= 2
    s = lanes[0]
    for v in x[m:]:
        s += v * v
    return float(s)


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 95, 256, 1000, 4099])
def test_float32_sum_of_squares_is_the_documented_arithmetic(n):
    """Whichever SIMD version runs (AVX2 by hand or the generic C), the float32 sum of
    squares of a block is the same, bit for bit."""
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert C.array_norms([x])[0] == math.sqrt(_ssq_lanes_model(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_every_tail_length_and_special_value(dtype) -> None:
    """The vector clamp (32 and 8 lanes, then a scalar tail) equals the reference
    for every length up to 80, with NaN, infinities, signed zeros and the bounds."""
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 0.75, -2.0, 1e-40],
                       dtype=dtype)
    rng = np.random.default_rng(7)
    for n in range(81):
        x = rng.choice(special, size=n).astype(dtype)
        a, b = x.copy(), x.copy()
        C.clip_grad_value_(a, 0.5)
        R.clip_grad_value_(b, 0.5)
        assert a.tobytes() == b.tobytes(), n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grads_with_norm_every_tail_length(dtype) -> None:
    """The vector scale (64, 32, 16 and 8 lanes, a masked or scalar tail) equals the
    reference for every length up to 150, specials included."""
    rng = np.random.default_rng(11)
    for n in range(151):
        x = rng.standard_normal(n).astype(dtype)
        if n > 3:
            x[[0, n // 2, n - 1]] = [np.inf, -0.0, np.nan]
        a, b = x.copy(), x.copy()
        C.clip_grads_with_norm_([a], 1.0, 3.0)
        R.clip_grads_with_norm_([b], 1.0, 3.0)
        assert a.tobytes() == b.tobytes(), n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_norm_every_length_and_special_value(dtype) -> None:
    """The max-|x| pass (an integer max over the sign-cleared bit patterns) gives
    the reference's inf-norm and 3-norm for every length up to 80, with NaN,
    infinities, signed zeros and subnormals anywhere, and max(|x|) exactly."""
    tiny = np.finfo(dtype).smallest_subnormal
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.75, 3.0, -1e-30,
                        tiny, -tiny], dtype=dtype)
    rng = np.random.default_rng(13)
    for n in range(81):
        for _ in range(3):
            x = rng.choice(special, size=n).astype(dtype)
            for p in (float("inf"), 3.0):
                got = C.array_norms([x], p)[0]
                want = R.array_norms([x], p)[0]
                assert (np.isnan(got) and np.isnan(want)) or got == want, (n, p, x)
            finite = x[~np.isnan(x)]
            if n and finite.size == n:
                assert C.array_norms([x], float("inf"))[0] == float(np.max(np.abs(x)))


@pytest.mark.parametrize("impl", [C, R], ids=["c", "reference"])
def test_tf_style_clips_reject_an_infinite_clip_norm(impl):
    """TensorFlow's formula gives NaN for clip_norm=inf; it is an error naming
    clip_norm in both implementations, not arrays of NaN."""
    x = np.array([3.0, 4.0])
    for fn in (lambda c: impl.clip_by_norm(x, c), lambda c: impl.clip_by_global_norm([x], c)):
        with pytest.raises(ValueError, match="clip_norm"):
            fn(math.inf)
    assert x.tolist() == [3.0, 4.0]
    assert fastclip.clip_by_global_norm([x], 1e300)[0][0].tolist() == [3.0, 4.0]


@pytest.mark.parametrize("impl", [C, R], ids=["c", "reference"])
def test_error_if_nonfinite_must_be_a_bool(impl):
    """A string such as "no" was read as True; any non-bool is a TypeError naming the
    argument, before anything is modified."""
    g = np.array([np.nan, 1.0])
    for bad in ("no", 1, None):
        with pytest.raises(TypeError, match="error_if_nonfinite"):
            impl.clip_grad_norm_([g], 1.0, error_if_nonfinite=bad)
        with pytest.raises(TypeError, match="error_if_nonfinite"):
            impl.get_total_norm([g], error_if_nonfinite=bad)
    assert np.isnan(g[0]) and g[1] == 1.0
    assert math.isnan(impl.clip_grad_norm_([g.copy()], 1.0, error_if_nonfinite=np.False_))
