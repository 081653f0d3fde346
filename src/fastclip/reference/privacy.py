"""Reference (pure NumPy) per-example clipping kernels: the twin of ``fastclip._privacy``.

Two primitives on arrays that share a leading batch axis ``B`` (the arguments are
validated by :mod:`fastclip.privacy` through :mod:`fastclip._checks.privacy`):

- :func:`row_sqnorms` gives, for each array ``k`` and example ``i``, the sum of
  squares of ``g_k[i]``, accumulated in float64;
- :func:`row_weighted_sum` gives ``sum_i w[k, i] * g_k[i]`` for each array, where
  each term is rounded to the array's dtype (``g * dtype(w)``) and the terms are
  accumulated in float64 in example order; with ``inplace=True`` the scaled
  terms are also written back into ``g_k``.

and the Gaussian noise of DP-SGD, :func:`gaussian_`: ``out = (add + std * z) * scale``
where ``z`` are the normals of a counter-based stream (SplitMix64 outputs as 52-bit
uniforms, Box-Muller with log, sin and cos by fixed polynomials evaluated in the
same order as the C kernel, so both give the same bits).
"""

from __future__ import annotations

import math

import numpy as np

from fastclip._checks import privacy as _cp

_quiet = np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


@_quiet
def row_sqnorms(arrays: list[np.ndarray]) -> np.ndarray:
    """``(len(arrays), B)`` float64 per-example sums of squares."""
    batch = arrays[0].shape[0]
    out = np.empty((len(arrays), batch), dtype=np.float64)
    for k, a in enumerate(arrays):
        r = _rows(a).astype(np.float64)
        out[k] = np.einsum("ij,ij->i", r, r) if r.shape[1] else 0.0
    return out


@_quiet
def row_weighted_sum(arrays: list[np.ndarray], weights: np.ndarray,
                     inplace: bool, sums: bool = True) -> list[np.ndarray] | None:
    """``[sum_i weights[k, i] * g_k[i] for k]``, each of shape ``g_k.shape[1:]``;
    ``sums=False`` (with ``inplace=True``) only scales the rows and returns None."""
    if not sums and not inplace:
        raise ValueError("sums=False needs inplace=True (there is nothing to return)")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[0] != len(arrays) or (
            arrays and weights.shape[1] != arrays[0].shape[0]):
        raise ValueError("weights must have shape (len(arrays), batch)")
    if not sums:
        for k, a in enumerate(arrays):
            a *= weights[k].astype(a.dtype).reshape((-1,) + (1,) * (a.ndim - 1))
        return None
    outs = []
    for k, a in enumerate(arrays):
        w = weights[k].astype(a.dtype).reshape((-1,) + (1,) * (a.ndim - 1))
        scaled = a * w
        acc = np.zeros(a.shape[1:], dtype=np.float64)
        for i in range(a.shape[0]):
            acc += scaled[i]
        if inplace:
            a[...] = scaled
        outs.append(acc.astype(a.dtype))
    return outs


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_ONE_BITS = np.uint64(0x3FF0000000000000)
_MANT = np.uint64(0x000FFFFFFFFFFFFF)
_LN2 = 0.693147180559945309417232121458
_SQRT2 = 1.41421356237309504880168872421
_PI_2 = 1.57079632679489661923132169164
_LOG_COEFS = [1.0 / k for k in (19, 17, 15, 13, 11, 9, 7, 5, 3)] + [1.0]
_SIN_COEFS = [1.0 / 355687428096000.0, -1.0 / 1307674368000.0, 1.0 / 6227020800.0,
              -1.0 / 39916800.0, 1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0, 1.0]
_COS_COEFS = [-1.0 / 6402373705728000.0, 1.0 / 20922789888000.0, -1.0 / 87178291200.0,
              1.0 / 479001600.0, -1.0 / 3628800.0, 1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0,
              -0.5, 1.0]


def _mix64(seed: int, c: np.ndarray) -> np.ndarray:
    z = np.uint64(seed) + (c + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _small_to_double(x: np.ndarray) -> np.ndarray:
    """x < 2**52 as float64, exactly (the C kernel's integer-only conversion)."""
    return (x | np.uint64(0x4330000000000000)).view(np.float64) - 4503599627370496.0


def _log_unit(u: np.ndarray) -> np.ndarray:
    b = u.view(np.uint64)
    mant = b & _MANT
    e = _small_to_double(b >> np.uint64(52)) - 1023.0
    m = (mant | _ONE_BITS).view(np.float64)
    big = _small_to_double((mant >= np.uint64(0x6A09E667F3BCD)).astype(np.uint64))
    m = m * (1.0 - 0.5 * big)
    e = e + big
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.full_like(s, 1.0 / 21.0)
    for c in _LOG_COEFS:
        p = p * s2 + c
    return e * _LN2 + 2.0 * s * p


@_quiet
def _normals(seed: int, counter: int, n: int) -> np.ndarray:
    pairs = (n + 1) // 2
    p = np.arange(counter // 2, counter // 2 + pairs, dtype=np.uint64)
    h1 = _mix64(seed, np.uint64(2) * p)
    h2 = _mix64(seed, np.uint64(2) * p + np.uint64(1))
    u1 = 2.0 - ((h1 >> np.uint64(12)) | _ONE_BITS).view(np.float64)
    a = h2 >> np.uint64(12)
    rad = np.sqrt(-2.0 * _log_unit(u1))
    k = (a + np.uint64(1 << 49)) >> np.uint64(50)
    f = _small_to_double(a - (k << np.uint64(50)) + np.uint64(1 << 51)) - 2251799813685248.0
    r = (f * 2.0**-50) * _PI_2
    r2 = r * r
    sp = np.full_like(r, -1.0 / 121645100408832000.0)
    for c in _SIN_COEFS:
        sp = sp * r2 + c
    cp = np.full_like(r, 1.0 / 2432902008176640000.0)
    for c in _COS_COEFS:
        cp = cp * r2 + c
    sn, cs = r * sp, cp
    q1, q2, q3 = (_small_to_double((k == np.uint64(v)).astype(np.uint64)) for v in (1, 2, 3))
    q0 = 1.0 - q1 - q2 - q3
    s_t = q0 * sn + q1 * cs - q2 * sn - q3 * cs
    c_t = q0 * cs - q1 * sn - q2 * cs + q3 * sn
    z = np.empty(2 * pairs)
    z[0::2] = rad * c_t
    z[1::2] = rad * s_t
    return z[:n]


_LN2F = np.float32(np.log(2.0))
_PI_2F = np.float32(np.pi / 2)
# float32 roundings of 1/9, 1/7, 1/5, 1/3, 1 (log) and of the sine and cosine
# Taylor coefficients from 1/9! and -1/10! (the C kernel's hex literals)
_LOG_COEFS_F = [np.float32(1.0 / k) for k in (7, 5, 3)] + [np.float32(1.0)]
_SIN_COEFS_F = [np.float32(c) for c in (-1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0, 1.0)]
_COS_COEFS_F = [np.float32(c) for c in (1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5, 1.0)]


def _small_to_float(x: np.ndarray) -> np.ndarray:
    """x < 2**23 (uint32) as float32, exactly (the C kernel's integer-only conversion)."""
    return (x | np.uint32(0x4B000000)).view(np.float32) - np.float32(8388608.0)


def _log_unit_f32(u: np.ndarray) -> np.ndarray:
    b = u.view(np.uint32)
    mant = b & np.uint32(0x007FFFFF)
    e = _small_to_float(b >> np.uint32(23)) - np.float32(127.0)
    m = (mant | np.uint32(0x3F800000)).view(np.float32)
    big = mant >= np.uint32(0x3504F3)
    m = np.where(big, m * np.float32(0.5), m)
    e = np.where(big, e + np.float32(1.0), e)
    s = (m - np.float32(1.0)) / (m + np.float32(1.0))
    s2 = s * s
    p = np.full_like(s, np.float32(1.0 / 9.0))
    for c in _LOG_COEFS_F:
        p = p * s2 + c
    return e * _LN2F + np.float32(2.0) * s * p


@_quiet
def _normals_f32(seed: int, counter: int, n: int) -> np.ndarray:
    """The float32 stream: one SplitMix64 output per pair (see csrc/privacy.c)."""
    pairs = (n + 1) // 2
    p = np.arange(counter // 2, counter // 2 + pairs, dtype=np.uint64)
    h = _mix64(seed, p)
    x = h & np.uint64((1 << 40) - 1)
    u1 = ((_small_to_double(np.uint64(1 << 40) - x)) * 2.0**-40).astype(np.float32)
    rad = np.sqrt(np.float32(-2.0) * _log_unit_f32(u1))
    a = (h >> np.uint64(40)).astype(np.uint32)
    k = (a + np.uint32(1 << 21)) >> np.uint32(22)
    fi = a.astype(np.int32) - (k << np.uint32(22)).astype(np.int32)
    r = (fi.astype(np.float32) * np.float32(2.0**-22)) * _PI_2F
    r2 = r * r
    sp = np.full_like(r, np.float32(1.0 / 362880.0))
    for c in _SIN_COEFS_F:
        sp = sp * r2 + c
    cp = np.full_like(r, np.float32(-1.0 / 3628800.0))
    for c in _COS_COEFS_F:
        cp = cp * r2 + c
    sn, cs = r * sp, cp
    odd = (k & np.uint32(1)).astype(bool)
    cm = np.where(odd, sn, cs)
    sm = np.where(odd, cs, sn)
    c_t = np.where((k == 1) | (k == 2), -cm, cm)
    s_t = np.where((k == 2) | (k == 3), -sm, sm)
    z = np.empty(2 * pairs, dtype=np.float32)
    z[0::2] = rad * c_t
    z[1::2] = rad * s_t
    return z[:n]


def gaussian_(out: np.ndarray, add: np.ndarray | None, seed: int, counter: int, std: float,
              scale: float) -> None:
    """``out = (add + std * z) * scale``; ``counter`` must be even.

    float64 outputs use the float64 stream (two hashes per pair, float64
    arithmetic), float32 outputs the float32 stream and float32 arithmetic.
    """
    if counter % 2:
        raise ValueError("fastclip: invalid arguments reached a C kernel")
    if out.dtype == np.float32:
        zf = _normals_f32(seed, counter, out.size)
        basef = add.reshape(-1) if add is not None else np.float32(0.0)
        out.reshape(-1)[...] = (basef + np.float32(std) * zf) * np.float32(scale)
        return
    z = _normals(seed, counter, out.size)
    base = add.reshape(-1).astype(np.float64) if add is not None else 0.0
    out.reshape(-1)[...] = ((base + std * z) * scale).astype(out.dtype)


def gaussian_arrays_(outs: list[np.ndarray], adds: list[np.ndarray | None] | None, seed: int,
                     counter: int, std: float, scale: float,
                     sqnorms: np.ndarray | None = None) -> None:
    """:func:`gaussian_` on each array, array ``k`` continuing the stream where array
    ``k - 1`` ends (its size rounded up to even); ``sqnorms[k]`` (when given) receives
    the sum of squares of ``outs[k]``, in float64."""
    if adds is not None and len(adds) != len(outs):
        raise ValueError("adds must have one array per out")
    _cp.check_sqnorms_out(sqnorms, len(outs))
    if counter % 2:
        raise ValueError("fastclip: invalid arguments reached a C kernel")
    dtypes = {o.dtype for o in outs}
    if len(dtypes) > 1:
        raise TypeError("outs must all have one dtype")
    for k, o in enumerate(outs):
        gaussian_(o, adds[k] if adds is not None else None, seed, counter, std, scale)
        counter += o.size + (o.size & 1)
        if sqnorms is not None:
            v = o.reshape(-1).astype(np.float64)
            sqnorms[k] = float(np.dot(v, v))
