"""Memory checks of in-place calls: arrays sharing memory, views overlapping themselves.

Both implementations reject a writeable view whose elements alias one another
(a 0-stride view made writeable) with a ValueError naming the argument, nothing
modified. The check for shared memory between the arrays of a list is
O(n log n) plus the pairs it must decide exactly; the tests count those exact
comparisons (never wall time).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from fastclip import _dispatch, optim
from fastclip._checks import memory
from fastclip.reference import clip as R

C = _dispatch.family("clip").compiled
IMPLS = [pytest.param(R, id="python")]
if C is not None:
    IMPLS.insert(0, pytest.param(C, id="c"))

INPLACE = ["clip_grad_norm_", "clip_grads_with_norm_", "clip_grad_value_", "zero_nans_"]


def _call(impl, fname, arrays):
    fn = getattr(impl, fname)
    if fname == "clip_grad_norm_":
        return fn(arrays, 1.0)
    if fname == "clip_grads_with_norm_":
        return fn(arrays, 1.0, 5.0)
    if fname == "clip_grad_value_":
        return fn(arrays, 0.5)
    return fn(arrays)


@pytest.fixture
def exact_calls(monkeypatch):
    """Counts the exact pair comparisons of _checks.memory."""
    calls = []

    def counting(a, b):
        calls.append(1)
        return np.shares_memory(a, b)

    monkeypatch.setattr(memory, "_exact", counting)
    return calls


def _zero_stride(n=4, dtype=np.float64):
    base = np.full(1, 3.0, dtype)
    return as_strided(base, shape=(n,), strides=(0,)), base


# -- views overlapping themselves ------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fname", INPLACE)
def test_zero_stride_view_is_rejected(impl, fname):
    alias, base = _zero_stride()
    good = np.linspace(-9, 9, 7)
    before = good.copy()
    assert alias.flags.writeable
    with pytest.raises(ValueError, match=r"^grads\[1\] overlaps itself"):
        _call(impl, fname, [good, alias])
    with pytest.raises(ValueError, match=r"^grads overlaps itself"):
        _call(impl, fname, alias)
    np.testing.assert_array_equal(good, before)
    assert base[0] == 3.0


@pytest.mark.parametrize("impl", IMPLS)
def test_writeable_broadcast_and_overlapping_windows_are_rejected(impl):
    row = np.arange(5.0)
    buf = np.arange(10.0)
    bcast = as_strided(row, shape=(3, 5), strides=(0, 8))  # a writeable broadcast_to
    windows = as_strided(buf, shape=(4, 4), strides=(16, 8))  # rows overlap
    for arr in (bcast, windows, bcast.T, windows[::-1]):
        assert arr.flags.writeable
        with pytest.raises(ValueError, match=r"^grads\[0\] overlaps itself"):
            impl.clip_grad_norm_([arr], 0.1)
    np.testing.assert_array_equal(row, np.arange(5.0))
    np.testing.assert_array_equal(buf, np.arange(10.0))


@pytest.mark.parametrize("impl", IMPLS)
def test_exotic_strides_without_overlap_are_accepted(impl):
    # elements at 8 * (2 i + 3 j): distinct, though no stride steps over the others
    buf = np.arange(40.0)
    v = as_strided(buf, shape=(3, 3), strides=(16, 24))
    assert not memory.has_internal_overlap(v)
    expect = v.copy()
    total = impl.clip_grad_norm_([v], 1.0)
    np.testing.assert_allclose(v, expect * min(1.0, 1.0 / (total + 1e-6)))


@pytest.mark.parametrize("impl", IMPLS)
def test_read_only_functions_accept_a_zero_stride_view(impl):
    alias, _ = _zero_stride()
    assert impl.get_total_norm([alias]) == pytest.approx(6.0)


@pytest.mark.parametrize("name", ["c", "python"])
def test_optimiser_rejects_self_overlapping_params(name):
    if name == "c" and C is None:
        pytest.skip("the compiled extension is not built")
    alias, base = _zero_stride(dtype=np.float32)
    with _dispatch.use_implementation(name):
        with pytest.raises(ValueError, match=r"^params\[0\] overlaps itself"):
            optim.SGD([alias, np.zeros(3, np.float32)], lr=0.1)
    assert base[0] == 3.0


def _brute_internal(a: np.ndarray) -> bool:
    lo = memory.extent(a)[0]
    offs = []
    for idx in itertools.product(*(range(n) for n in a.shape)):
        off = a.__array_interface__["data"][0] + sum(i * s for i, s in zip(idx, a.strides))
        offs.append(off - lo)
    offs.sort()
    return any(b - a_ < a.itemsize for a_, b in zip(offs, offs[1:]))


def test_internal_overlap_is_exact():
    rng = np.random.default_rng(0)
    buf = np.zeros(4096)
    checked = 0
    for _ in range(400):
        nd = int(rng.integers(1, 4))
        shape = tuple(int(x) for x in rng.integers(1, 5, nd))
        strides = tuple(int(x) * 8 * int(rng.choice([-1, 1])) for x in rng.integers(0, 7, nd))
        start = 2048
        v = as_strided(buf[start:], shape=shape, strides=strides)
        assert memory.has_internal_overlap(v) == _brute_internal(v), (shape, strides)
        checked += memory.has_internal_overlap(v)
    assert checked > 20  # the sample holds overlapping views


# -- shared memory between the arrays of a list ----------------------------------------

def _old_first_pair(arrays):
    """The pair the check reports: the arrays sorted by extent, the first array
    of the order that shares with a later one, and its earliest partner."""
    ext = [memory.extent(a) for a in arrays]
    order = sorted((i for i in range(len(arrays)) if ext[i][1] > ext[i][0]),
                   key=lambda i: (*ext[i], i))
    for k, i in enumerate(order):
        for j in order[k + 1:]:
            if np.shares_memory(arrays[i], arrays[j]):
                return i, j
    return None


def test_first_shared_pair_matches_the_pairwise_search():
    rng = np.random.default_rng(1)
    m = np.zeros((12, 20))
    for trial in range(300):
        k = int(rng.integers(2, 30))  # above and below the small-group size
        views = []
        for _ in range(k):
            kind = int(rng.integers(0, 4))
            if kind == 0:
                views.append(m[:, int(rng.integers(0, 20))])
            elif kind == 1:
                r = int(rng.integers(0, 12))
                views.append(m[r, int(rng.integers(0, 10)):int(rng.integers(10, 21))])
            elif kind == 2:
                c0 = int(rng.integers(0, 18))
                views.append(m[int(rng.integers(0, 6)):, c0:c0 + 2])
            else:
                views.append(m[::3, int(rng.integers(0, 20))::7])
        got = memory.first_shared_pair(views)
        assert got == _old_first_pair(views), trial


def test_interleaved_column_views_need_no_exact_comparison(exact_calls):
    cols = 6000
    m = np.ones((3, cols))
    views = [m[:, j] for j in range(cols)]
    assert memory.first_shared_pair(views) is None
    assert len(exact_calls) == 0
    views.append(m[:, 4321])
    assert memory.first_shared_pair(views) == (4321, cols)
    assert len(exact_calls) == 1


@pytest.mark.parametrize("impl", IMPLS)
def test_clip_on_6000_column_views(impl, exact_calls):
    cols = 6000
    m = np.ones((3, cols))
    views = [m[:, j] for j in range(cols)]
    total = impl.clip_grad_norm_(views, 1.0)
    assert total == pytest.approx(np.sqrt(3 * cols))
    np.testing.assert_allclose(m, 1.0 / (np.sqrt(3 * cols) + 1e-6))
    assert len(exact_calls) == 0
    before = m.copy()
    with pytest.raises(ValueError, match=rf"^grads\[17\] and grads\[{cols}\] share memory"):
        impl.clip_grad_norm_(views + [m[:, 17]], 1e-9)
    np.testing.assert_array_equal(m, before)
    assert len(exact_calls) == 1


@pytest.mark.parametrize("name", ["c", "python"])
def test_optimiser_grads_as_column_views(name, exact_calls):
    if name == "c" and C is None:
        pytest.skip("the compiled extension is not built")
    cols = 3000
    pm = np.zeros((2, cols))
    gm = np.ones((2, cols))
    params = [pm[:, j] for j in range(cols)]
    with _dispatch.use_implementation(name):
        opt = optim.SGD(params, lr=0.5)
        opt.step([gm[:, j] for j in range(cols)])
        np.testing.assert_array_equal(pm, -0.5)
        assert len(exact_calls) == 0
        with pytest.raises(ValueError, match=r"grads\[2999\] shares memory with params\[5\]"):
            opt.step([gm[:, j] for j in range(cols - 1)] + [pm[:, 5]])
    np.testing.assert_array_equal(pm, -0.5)
    assert len(exact_calls) == 1
