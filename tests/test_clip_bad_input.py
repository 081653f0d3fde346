"""Every bad input of the clipping API, for both implementations.

Each case checks the exception type, that the message names the argument (and the
index of the bad array in a list), that both implementations say exactly the same
thing, and that no array was modified, including when the bad array comes last in a
multi-array call.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fastclip import _dispatch
from fastclip.reference import clip as R

_fam = _dispatch.family("clip")
C = _fam.compiled
if C is None:
    raise ImportError(f"fastclip._clip is not built: {_fam._compiled_error}")

IMPLS = [pytest.param(C, id="c"), pytest.param(R, id="python")]

INPLACE = ["clip_grad_norm_", "clip_grads_with_norm_", "clip_grad_value_", "zero_nans_"]
READONLY = ["array_norms", "get_total_norm", "clip_by_value", "clip_by_norm", "clip_by_global_norm"]
ALL = INPLACE + READONLY

# the name of the array argument of each function
ARG = {f: "grads" for f in ALL}
ARG.update(clip_by_value="x", clip_by_norm="x", clip_by_global_norm="xs")


def _call(impl, fname, arrays, **kw):
    """Call ``fname`` with valid scalar arguments (overridable by ``kw``)."""
    fn = getattr(impl, fname)
    if fname == "clip_grad_norm_":
        return fn(arrays, kw.get("max_norm", 1.0), kw.get("norm_type", 2.0))
    if fname == "clip_grads_with_norm_":
        return fn(arrays, kw.get("max_norm", 1.0), kw.get("total_norm", 5.0))
    if fname == "clip_grad_value_":
        return fn(arrays, kw.get("clip_value", 0.5))
    if fname == "zero_nans_":
        return fn(arrays)
    if fname == "array_norms":
        return fn(arrays, kw.get("norm_type", 2.0))
    if fname == "get_total_norm":
        return fn(arrays, kw.get("norm_type", 2.0))
    if fname == "clip_by_value":
        return fn(arrays, kw.get("lo", -0.5), kw.get("hi", 0.5))
    if fname == "clip_by_norm":
        return fn(arrays, kw.get("clip_norm", 1.0))
    if fname == "clip_by_global_norm":
        return fn(arrays, kw.get("clip_norm", 1.0))
    raise AssertionError(fname)


def _good(n=3):
    """Valid arrays whose values every function would change (big values, a NaN)."""
    rng = np.random.default_rng(0)
    out = [rng.standard_normal(7).astype(np.float32) * np.float32(10) for _ in range(n)]
    out[0][3] = np.nan
    out.append(rng.standard_normal((3, 4)) * 10)  # float64
    return out


def _expect(impl, fname, arrays, exc, pattern, **kw):
    """Assert the call raises ``exc`` matching ``pattern`` and modifies nothing; return
    the message."""
    snapshot = [np.array(a, copy=True) if isinstance(a, np.ndarray) else None for a in arrays] \
        if isinstance(arrays, list) else None
    with pytest.raises(exc, match=pattern) as info:
        _call(impl, fname, arrays, **kw)
    assert type(info.value) is exc
    if snapshot is not None:
        for a, b in zip(arrays, snapshot):
            if b is not None:
                assert a.tobytes() == b.tobytes(), "an array was modified"
    return str(info.value)


def _both(fname, make_arrays, exc, pattern, **kw):
    """Same exception and message from C and the reference."""
    msgs = [_expect(impl, fname, make_arrays(), exc, pattern, **kw) for impl in (C, R)]
    assert msgs[0] == msgs[1]
    return msgs[0]


# --------------------------------------------------------------------------------------
# the arrays argument


@pytest.mark.parametrize("fname", ALL)
@pytest.mark.parametrize("bad", [3.0, "abc", None, {"a": 1}, b"xy"])
def test_not_an_array_or_iterable(fname, bad):
    arg = ARG[fname]
    msg = _both(fname, lambda: bad, TypeError, rf"^{arg} must be a numpy\.ndarray or an iterable")
    assert type(bad).__name__ in msg


@pytest.mark.parametrize("fname", ALL)
@pytest.mark.parametrize("bad", [[1.0, 2.0], 5, "s", None, memoryview(b"abcd")])
def test_list_holding_a_non_array_last(fname, bad):
    arg = ARG[fname]
    good = _good()
    idx = len(good)
    msg = _both(fname, lambda: [*_good(), bad], TypeError,
                rf"^{arg}\[{idx}\] must be a numpy\.ndarray, got ")
    assert type(bad).__name__ in msg
    del good


@pytest.mark.parametrize("fname", ALL)
@pytest.mark.parametrize(
    "dtype",
    [np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128, object, np.float16]
    + ([np.longdouble] if np.dtype(np.longdouble).itemsize > 8 else []),
)
def test_bad_dtype_named_with_index(fname, dtype):
    arg = ARG[fname]
    bad = np.zeros(4, dtype=dtype)
    idx = len(_good())
    msg = _both(fname, lambda: [*_good(), bad], TypeError,
                rf"^{re.escape(arg)}\[{idx}\] must have dtype float32 or float64, got ")
    assert str(np.dtype(dtype)) in msg
    # a single bad array is named without an index
    _both(fname, lambda: bad, TypeError, rf"^{arg} must have dtype float32 or float64")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fname", INPLACE)
def test_read_only_array_for_inplace(impl, fname):
    arrays = _good()
    ro = np.ones(5)
    ro.flags.writeable = False
    arrays.append(ro)
    _expect(impl, fname, arrays, ValueError,
            rf"^grads\[{len(arrays) - 1}\] is read-only; this function modifies")
    # a broadcast view is read-only too
    arrays = [*_good(), np.broadcast_to(np.float32(2), (3, 3))]
    _expect(impl, fname, arrays, ValueError, rf"^grads\[{len(arrays) - 1}\] is read-only")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fname", READONLY)
def test_read_only_array_is_fine_for_out_of_place(impl, fname):
    ro = np.linspace(-3, 3, 10)
    ro.flags.writeable = False
    _call(impl, fname, [ro])
    _call(impl, fname, [np.broadcast_to(np.float32(2), (3, 3))])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fname", INPLACE)
def test_same_array_twice(impl, fname):
    arrays = _good()
    arrays.append(arrays[1])
    _expect(impl, fname, arrays, ValueError,
            rf"^grads\[1\] and grads\[{len(arrays) - 1}\] share memory")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fname", INPLACE)
def test_overlapping_views(impl, fname):
    base = np.arange(40, dtype=np.float64) * 10
    arrays = [*_good(), base[:20], base[10:30]]
    n = len(arrays)
    _expect(impl, fname, arrays, ValueError,
            rf"^grads\[{n - 2}\] and grads\[{n - 1}\] share memory")
    # 2-d views sharing one column
    m = np.arange(30.0).reshape(5, 6) * 10
    arrays = [*_good(), m[:, :3], m[:, 2:]]
    _expect(impl, fname, arrays, ValueError, r"share memory")
    # interleaved views share no element: allowed
    ok = np.arange(20.0)
    _call(impl, fname, [ok[::2], ok[1::2]])
    # a view and its transpose are the same elements
    t = np.arange(12.0).reshape(3, 4)
    _expect(impl, fname, [t, t.T], ValueError, r"^grads\[0\] and grads\[1\] share memory")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fname", INPLACE)
def test_non_native_byte_order_for_inplace(impl, fname):
    swapped = np.arange(6, dtype=np.float64).astype(">f8" if np.little_endian else "<f8")
    arrays = [*_good(), swapped]
    _expect(impl, fname, arrays, TypeError,
            rf"^grads\[{len(arrays) - 1}\] has non-native byte order")


@pytest.mark.parametrize("fname", READONLY)
def test_non_native_byte_order_is_read_correctly(fname):
    native = np.linspace(-3, 3, 11)
    swapped = native.astype(native.dtype.newbyteorder())
    for impl in (C, R):
        a = _call(impl, fname, [swapped])
        b = _call(impl, fname, [native])
        if isinstance(a, tuple):
            a, b = a[0], b[0]
        if isinstance(a, list):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------
# scalar arguments


@pytest.mark.parametrize("fname,arg", [
    ("clip_grad_norm_", "max_norm"), ("clip_grads_with_norm_", "max_norm"),
    ("clip_grad_value_", "clip_value"),
])
def test_negative_nan_or_non_number_limits(fname, arg):
    _both(fname, _good, ValueError, rf"^{arg} must be >= 0, got -1\.0", **{arg: -1.0})
    _both(fname, _good, ValueError, rf"^{arg} must be >= 0, got -inf", **{arg: -math.inf})
    _both(fname, _good, ValueError, rf"^{arg} must not be NaN", **{arg: math.nan})
    for bad in ("1.0", None, [1.0], True, 1 + 2j):
        _both(fname, _good, TypeError, rf"^{arg} must be a real number, got ", **{arg: bad})


@pytest.mark.parametrize("fname", ["clip_by_norm", "clip_by_global_norm"])
def test_clip_norm_must_be_positive(fname):
    for bad in (0.0, -2.0, -math.inf):
        _both(fname, _good, ValueError, r"^clip_norm must be > 0, got ", clip_norm=bad)
    _both(fname, _good, ValueError, r"^clip_norm must not be NaN", clip_norm=math.nan)
    _both(fname, _good, TypeError, r"^clip_norm must be a real number", clip_norm="3")


def test_total_norm_argument():
    _both("clip_grads_with_norm_", _good, ValueError, r"^total_norm must be >= 0",
          total_norm=-1.0)
    _both("clip_grads_with_norm_", _good, TypeError, r"^total_norm must be a real number",
          total_norm="5")


def test_lo_greater_than_hi():
    msg = _both("clip_by_value", _good, ValueError, r"^lo must be <= hi, got lo=1\.0 > hi=0\.5",
                lo=1.0, hi=0.5)
    assert "lo" in msg and "hi" in msg
    _both("clip_by_value", _good, ValueError, r"^lo must not be NaN", lo=math.nan)
    _both("clip_by_value", _good, ValueError, r"^hi must not be NaN", hi=math.nan)
    _both("clip_by_value", _good, TypeError, r"^hi must be a real number", hi=None)


@pytest.mark.parametrize("fname", ["clip_grad_norm_", "array_norms", "get_total_norm"])
@pytest.mark.parametrize("bad,exc", [
    (0.0, ValueError), (-1.0, ValueError), (-math.inf, ValueError), (math.nan, ValueError),
    ("fro", TypeError), ("nuc", TypeError), (None, TypeError), (True, TypeError),
    ([2.0], TypeError), (2 + 0j, TypeError),
])
def test_unsupported_norm_type(fname, bad, exc):
    _both(fname, _good, exc, r"^norm_type must be a positive real number or inf",
          norm_type=bad)


def test_norm_type_inf_string_and_numpy_scalars_are_accepted():
    for impl in (C, R):
        g = _good()
        assert impl.get_total_norm(g[1:], "inf") == impl.get_total_norm(g[1:], math.inf)
        assert impl.get_total_norm(g[1:], np.float32(2)) == impl.get_total_norm(g[1:], 2)
        assert impl.get_total_norm(g[1:], np.int64(3)) == impl.get_total_norm(g[1:], 3.0)
        impl.clip_grad_norm_(g, np.float64(1.0))
        impl.clip_grad_value_(g, np.array(0.5))


# --------------------------------------------------------------------------------------
# non-finite totals with error_if_nonfinite=True


@pytest.mark.parametrize("fname", ["clip_grad_norm_", "get_total_norm"])
def test_error_if_nonfinite_names_first_bad_array(fname):
    def make():
        g = [np.ones(3), np.ones(4, np.float32), np.ones(2)]
        g[1][2] = np.inf
        g[2][0] = np.nan
        return g

    msgs = []
    for impl in (C, R):
        g = make()
        before = [a.copy() for a in g]
        fn = getattr(impl, fname)
        args = (g, 1.0, 2.0, True) if fname == "clip_grad_norm_" else (g, 2.0, True)
        with pytest.raises(FloatingPointError, match=r"grads\[1\] holds a non-finite value") as e:
            fn(*args)
        msgs.append(str(e.value))
        assert "nothing was modified" in msgs[-1]
        for a, b in zip(g, before):
            assert a.tobytes() == b.tobytes()
    assert msgs[0] == msgs[1]


def test_error_if_nonfinite_overflowing_total():
    # every array's norm is finite, their total norm of order 1 overflows
    for impl in (C, R):
        g = [np.full(1, 1e308), np.full(1, 1e308)]
        before = [a.copy() for a in g]
        with pytest.raises(FloatingPointError, match=r"the total norm overflowed"):
            impl.clip_grad_norm_(g, 1.0, 1.0, True)
        for a, b in zip(g, before):
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("impl", IMPLS)
def test_overlap_detected_after_a_successful_call(impl):
    """The C side remembers the last list found free of overlaps; a repeated call is
    cheap, and any change of the list is checked again."""
    base = np.arange(60.0)
    a, b = base[:20], base[20:40]
    for _ in range(3):
        impl.clip_grad_value_([a, b], 100.0)
    with pytest.raises(ValueError, match=r"^grads\[0\] and grads\[1\] share memory"):
        impl.clip_grad_value_([a, base[10:30]], 100.0)
    with pytest.raises(ValueError, match=r"^grads\[0\] and grads\[2\] share memory"):
        impl.clip_grad_norm_([a, b, a], 1.0)
    before = base.copy()
    with pytest.raises(ValueError, match=r"^grads\[1\] and grads\[2\] share memory"):
        impl.clip_grad_norm_([b, a, base[::7]], 1e-3)
    np.testing.assert_array_equal(base, before)
    impl.clip_grad_value_([b, a], 100.0)
