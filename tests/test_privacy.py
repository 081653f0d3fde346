"""Per-example clipping, DP noise, Poisson sampling and privacy accounting (fastclip.privacy)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import fastclip
from fastclip import privacy as P

IMPLS = ["c", "python"]


@pytest.fixture(params=IMPLS)
def impl(request):
    with fastclip.use_implementation(request.param):
        yield request.param


def _grads(rng, dtype, layout="C", batch=7):
    shapes = [(batch, 5, 3), (batch, 3), (batch, 4, 2, 3), (batch, 1)]
    out = []
    for s in shapes:
        a = rng.standard_normal(s).astype(dtype) * 2
        if layout == "F":
            a = np.asfortranarray(a)
        elif layout == "strided":
            big = rng.standard_normal((s[0] * 2,) + tuple(d * 2 for d in s[1:])).astype(dtype)
            a = big[(slice(None, None, 2),) + (slice(None, None, 2),) * (len(s) - 1)]
            a[...] = rng.standard_normal(s).astype(dtype) * 2
        elif layout == "negative":
            a = a[::-1, ..., ::-1]
        a *= np.where(np.arange(batch) % 2 == 1, 0.05, 1.0).astype(dtype).reshape(
            (-1,) + (1,) * (a.ndim - 1))  # odd examples stay under the clip norm
        out.append(a)
    return out


def _numpy_per_example(grads, c):
    """The definition, example by example: norms, clipped copies and their sums."""
    b = grads[0].shape[0]
    norms = np.array([math.sqrt(sum(float(np.sum(g[i].astype(np.float64) ** 2))
                                    for g in grads)) for i in range(b)])
    f = np.minimum(c / (norms + 1e-6), 1.0)
    clipped = [g.astype(np.float64) * f.reshape((-1,) + (1,) * (g.ndim - 1)) for g in grads]
    return norms, clipped, [cl.sum(axis=0) for cl in clipped]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_per_example_clip_matches_the_definition(impl, dtype, layout):
    rng = np.random.default_rng(1)
    grads = _grads(rng, dtype, layout)
    before = [g.copy() for g in grads]
    norms, clipped, sums = _numpy_per_example(before, 3.0)
    got_norms, got_sums = P.per_example_clip_(grads, 3.0)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got_norms, norms, rtol=tol)
    assert got_norms.dtype == np.float64 and got_norms.shape == (7,)
    assert (norms > 3.0).any() and (norms < 3.0).any(), "both branches of the factor"
    for g, cl, s, gs in zip(grads, clipped, sums, got_sums):
        assert gs.dtype == g.dtype and gs.shape == g.shape[1:]
        np.testing.assert_allclose(g, cl, rtol=tol, atol=tol)
        np.testing.assert_allclose(gs, s, rtol=tol * 10, atol=tol * 10)


def test_per_example_clip_c_and_reference_agree():
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        a = _grads(rng, dtype, "strided")
        b = copy.deepcopy(a)
        with fastclip.use_implementation("c"):
            na, sa = P.per_example_clip_(a, 1.5)
        with fastclip.use_implementation("python"):
            nb, sb = P.per_example_clip_(b, 1.5)
        tol = 1e-13 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(na, nb, rtol=tol)
        for x, y in zip(a + sa, b + sb):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_per_example_clip_single_array_and_large(impl):
    rng = np.random.default_rng(3)
    g = rng.standard_normal((64, 3000)).astype(np.float32)  # several column blocks
    ref = g.astype(np.float64)
    norms, s = P.per_example_clip_(g, 10.0)
    assert isinstance(s, np.ndarray) and s.shape == (3000,)
    want = np.linalg.norm(ref, axis=1)
    np.testing.assert_allclose(norms, want, rtol=1e-6)
    f = np.minimum(10.0 / (want + 1e-6), 1.0)
    np.testing.assert_allclose(s, (ref * f[:, None]).sum(0), rtol=1e-5, atol=1e-5)


def test_per_example_clip_thread_count_does_not_change_results():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(4)
    g = rng.standard_normal((256, 4096)).astype(np.float32)
    g2 = g.copy()
    with fastclip.use_implementation("c"):
        n1, s1 = P.per_example_clip_(g, 1.0)
        with threadpoolctl.threadpool_limits(1):
            n2, s2 = P.per_example_clip_(g2, 1.0)
    assert np.array_equal(n1, n2) and np.array_equal(s1, s2) and np.array_equal(g, g2)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (dict(max_norm=0.0), ValueError, "max_norm"),
        (dict(max_norm=-1.0), ValueError, "max_norm"),
        (dict(max_norm=float("nan")), ValueError, "max_norm"),
        (dict(max_norm=float("inf")), ValueError, "max_norm"),
        (dict(max_norm="1"), TypeError, "max_norm"),
    ],
)
def test_per_example_clip_bad_max_norm(impl, bad, exc, match):
    g = np.ones((3, 4))
    with pytest.raises(exc, match=match):
        P.per_example_clip_(g, **bad)
    assert np.all(g == 1)


def test_per_example_clip_bad_grads_leave_everything_untouched(impl):
    ok = np.ones((3, 4))
    cases = [
        ([ok, np.ones((2, 4))], ValueError, "batch size"),
        ([ok, np.ones(())], ValueError, "0-d"),
        ([ok, np.ones((0, 4))], ValueError, "batch size"),
        (np.ones((0, 4)), ValueError, "size 0"),
        ([ok, np.ones((3, 4), dtype=np.int64)], TypeError, "float32 or float64"),
        ([ok, np.ma.masked_array(np.ones((3, 4)), mask=False)], TypeError, "MaskedArray"),
        ([], ValueError, "empty"),
    ]
    ro = np.ones((3, 4))
    ro.flags.writeable = False
    cases.append(([ok, ro], ValueError, "read-only"))
    cases.append(([ok, ok[:, :2]], ValueError, "share memory"))
    for grads, exc, match in cases:
        with pytest.raises(exc, match=match):
            P.per_example_clip_(grads, 0.5)
        assert np.all(ok == 1), match


# --- optax semantics -------------------------------------------------------------
OPTAX_GRADS = np.array([[0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]], dtype=np.float32)


@pytest.mark.parametrize("clip, want, n", [(np.inf, 7.0, 0), (0.0, 0.0, 3), (1.25, 1.75, 3)])
def test_optax_examples(impl, clip, want, n):
    sums, num = P.per_example_global_norm_clip([OPTAX_GRADS], clip)
    assert isinstance(sums, list) and num == n
    np.testing.assert_array_equal(sums[0], np.full(3, want, dtype=np.float32))
    lsums, lnum = P.per_example_layer_norm_clip([OPTAX_GRADS], clip)
    np.testing.assert_array_equal(lsums[0], np.full(3, want, dtype=np.float32))
    assert lnum == [n]


def test_optax_global_clip_does_not_modify_and_reads_array_likes(impl):
    class Leaf:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    g = np.random.default_rng(5).standard_normal((6, 4))
    keep = g.copy()
    sums, num = P.per_example_global_norm_clip([Leaf(g)], 1.0)
    np.testing.assert_array_equal(g, keep)
    norms = np.linalg.norm(g, axis=1)
    m = np.minimum(1.0 / norms, 1.0)
    np.testing.assert_allclose(sums[0], (g * m[:, None]).sum(0), rtol=1e-12)
    assert num == int((m < 1).sum())


def test_layer_norm_clip_split(impl):
    rng = np.random.default_rng(6)
    g = [rng.standard_normal((5, 4)), rng.standard_normal((5, 16))]
    for uniform, clips in [(True, [2.0 / math.sqrt(2)] * 2),
                           (False, [2.0 * math.sqrt(4 / 20), 2.0 * math.sqrt(16 / 20)])]:
        sums, nums = P.per_example_layer_norm_clip(g, 2.0, uniform=uniform)
        for a, c, s, n in zip(g, clips, sums, nums):
            m = np.minimum(c / np.linalg.norm(a, axis=1), 1.0)
            np.testing.assert_allclose(s, (a * m[:, None]).sum(0), rtol=1e-12)
            assert n == int((m < 1).sum())


def test_optax_bad_clip(impl):
    for bad, exc in [(-1.0, ValueError), (float("nan"), ValueError), (None, TypeError)]:
        with pytest.raises(exc, match="l2_norm_clip"):
            P.per_example_global_norm_clip([OPTAX_GRADS], bad)
        with pytest.raises(exc, match="global_l2_norm_clip"):
            P.per_example_layer_norm_clip([OPTAX_GRADS], bad)


# --- noise and the DP optimiser ----------------------------------------------------
def test_gaussian_noise_seeded_and_secure():
    a = P.gaussian_noise(100_000, 2.0, rng=7)
    b = P.gaussian_noise(100_000, 2.0, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert abs(a.std() - 2.0) < 0.02 and abs(a.mean()) < 0.03
    s = P.gaussian_noise(200_000, 3.0, secure_mode=True, dtype=np.float32)
    assert s.dtype == np.float32 and abs(s.std() - 3.0) < 0.03 and abs(s.mean()) < 0.03
    # fourth moment of a Gaussian is 3 sigma^4: a uniform or a sum of few would fail
    assert abs(np.mean((s / 3.0) ** 4) - 3.0) < 0.1
    assert not np.array_equal(s, P.gaussian_noise(200_000, 3.0, secure_mode=True,
                                                  dtype=np.float32))
    with pytest.raises(ValueError, match="std"):
        P.gaussian_noise(3, -1.0)
    with pytest.raises(TypeError, match="rng"):
        P.gaussian_noise(3, 1.0, rng="seed")


def test_dp_optimizer_without_noise_is_the_average_step():
    rng = np.random.default_rng(8)
    p1 = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    p2 = [p.copy() for p in p1]
    summed = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    dp = P.DPOptimizer(fastclip.optim.SGD(p1, lr=0.1), noise_multiplier=0.0,
                       max_grad_norm=1.0, expected_batch_size=8)
    dp.step(summed)
    fastclip.optim.SGD(p2, lr=0.1).step([s / 8 for s in summed])
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-15)


def test_dp_optimizer_noise_scale_and_reproducibility():
    n = 200_000
    params = [np.zeros(n)]
    dp = P.DPOptimizer(fastclip.optim.SGD(params, lr=1.0), noise_multiplier=1.5,
                       max_grad_norm=2.0, expected_batch_size=4, rng=11)
    dp.step([np.zeros(n)])
    # SGD with lr 1: params = -(noise / 4), noise ~ N(0, (1.5 * 2)^2)
    assert abs(params[0].std() - 3.0 / 4) < 0.01
    again = [np.zeros(n)]
    P.DPOptimizer(fastclip.optim.SGD(again, lr=1.0), noise_multiplier=1.5,
                  max_grad_norm=2.0, expected_batch_size=4, rng=11).step([np.zeros(n)])
    np.testing.assert_array_equal(params[0], again[0])


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(noise_multiplier=-0.1), ValueError, "noise_multiplier"),
        (dict(noise_multiplier=float("nan")), ValueError, "noise_multiplier"),
        (dict(max_grad_norm=0.0), ValueError, "max_grad_norm"),
        (dict(max_grad_norm=float("nan")), ValueError, "max_grad_norm"),
        (dict(expected_batch_size=0), ValueError, "expected_batch_size"),
        (dict(secure_mode="yes"), TypeError, "secure_mode"),
        (dict(accountant=P.PrivacyAccountant()), ValueError, "sample_rate"),
    ],
)
def test_dp_optimizer_bad_arguments(kw, exc, match):
    args = dict(noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4)
    args.update(kw)
    with pytest.raises(exc, match=match):
        P.DPOptimizer(fastclip.optim.SGD([np.zeros(3)], lr=0.1), **args)


def test_dp_optimizer_bad_grads_modify_nothing():
    p = [np.ones(3)]
    dp = P.DPOptimizer(fastclip.optim.SGD(p, lr=0.1), noise_multiplier=1.0,
                       max_grad_norm=1.0, expected_batch_size=4, rng=0)
    with pytest.raises(ValueError, match="shape"):
        dp.step([np.ones(4)])
    with pytest.raises(ValueError, match="arrays"):
        dp.step([np.ones(3), np.ones(3)])
    assert np.all(p[0] == 1) and dp.optimizer.step_count == 0


# --- Poisson sampling ------------------------------------------------------------
def test_poisson_sampler():
    s = P.PoissonSampler(1000, 0.05, rng=3)
    batches = list(s)
    assert len(batches) == len(s) == 20 and s.expected_batch_size == 50
    sizes = [b.size for b in batches]
    assert len(set(sizes)) > 1, "sizes vary under Poisson sampling"
    assert 30 < np.mean(sizes) < 70
    for b in batches:
        assert np.all(np.diff(b) > 0) and (b.size == 0 or (b[0] >= 0 and b[-1] < 1000))
    again = list(P.PoissonSampler(1000, 0.05, rng=3))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    for q in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sample_rate"):
            P.PoissonSampler(10, q)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100_001])
def test_noise_kernel_c_and_reference_give_the_same_bits(dtype, n):
    from fastclip import _privacy as C
    from fastclip.reference import privacy as R

    add = np.linspace(-3, 3, n).astype(dtype)
    a, b = np.empty(n, dtype), np.empty(n, dtype)
    C.gaussian_(a, add, 2**62 + 12345, 10, 2.0, 0.25)
    R.gaussian_(b, add, 2**62 + 12345, 10, 2.0, 0.25)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        C.gaussian_(a, add, 1, 3, 1.0, 1.0)  # the counter of a pair is even


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_noise_kernel_is_gaussian_and_independent_of_threads(dtype):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastclip import _privacy as C

    z = np.empty(2_000_000, dtype)
    C.gaussian_(z, None, 7, 0, 1.0, 1.0)
    z64 = z.astype(np.float64)
    assert abs(z64.mean()) < 0.003 and abs(z64.std() - 1) < 0.003
    # the tails: the fraction beyond 4 sigma (6.33e-5 of a Gaussian)
    assert 0.4e-4 < np.mean(np.abs(z64) > 4) < 0.9e-4
    assert abs(np.mean(z64**4) - 3.0) < 0.03  # a Gaussian's fourth moment
    # fractions within 1, 2 and 3 sigma
    for k, p in ((1, 0.682689), (2, 0.954500), (3, 0.997300)):
        assert abs(np.mean(np.abs(z64) < k) - p) < 0.002
    # no serial correlation, within a pair or between pairs
    assert abs(np.corrcoef(z64[:-1], z64[1:])[0, 1]) < 0.003
    assert abs(np.corrcoef(z64[0::2], z64[1::2])[0, 1]) < 0.003
    # the two normals of a pair are independent: the squared radius is chi2(2),
    # i.e. exponential with mean 2
    r2 = z64[0::2] ** 2 + z64[1::2] ** 2
    assert abs(r2.mean() - 2.0) < 0.01 and abs(np.mean(r2 > 2 * np.log(10)) - 0.1) < 0.002
    one = np.empty_like(z)
    with threadpoolctl.threadpool_limits(1):
        C.gaussian_(one, None, 7, 0, 1.0, 1.0)
    np.testing.assert_array_equal(z, one)
    # a later counter continues the same stream
    tail = np.empty(1000, dtype)
    C.gaussian_(tail, None, 7, 1_000_000, 1.0, 1.0)
    np.testing.assert_array_equal(tail, z[1_000_000:1_001_000])


def test_a_nan_example_makes_the_sum_nan_as_in_opacus(impl):
    g = np.ones((3, 4))
    g[1, 2] = np.nan
    norms, s = P.per_example_clip_(g, 1.0)
    assert np.isnan(norms[1]) and np.all(np.isfinite(norms[[0, 2]]))
    assert np.all(np.isnan(s))
    assert np.all(np.isfinite(g[[0, 2]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_of_a_list_continues_the_stream_and_matches_the_reference(dtype):
    from fastclip import _privacy as C
    from fastclip.reference import privacy as R

    sizes = [5, 0, 1, 70_001, 2, 33]
    adds = [np.linspace(-1, 1, n).astype(dtype) for n in sizes]
    a = [np.empty(n, dtype) for n in sizes]
    b = [np.empty(n, dtype) for n in sizes]
    C.gaussian_arrays_(a, adds, 99, 4, 1.5, 0.5)
    R.gaussian_arrays_(b, adds, 99, 4, 1.5, 0.5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # array k starts where array k - 1 ends, rounded up to a whole pair
    counter = 4
    for n, add, x in zip(sizes, adds, a):
        one = np.empty(n, dtype)
        C.gaussian_(one, add, 99, counter, 1.5, 0.5)
        np.testing.assert_array_equal(one, x)
        counter += n + (n & 1)
    c = [np.empty(n, dtype) for n in sizes]
    C.gaussian_arrays_(c, None, 99, 4, 1.5, 0.5)
    R.gaussian_arrays_(b, None, 99, 4, 1.5, 0.5)
    for x, y in zip(c, b):
        np.testing.assert_array_equal(x, y)
    for impl in (C, R):
        with pytest.raises(ValueError):
            impl.gaussian_arrays_(c, None, 99, 3, 1.0, 1.0)  # odd counter
        with pytest.raises(TypeError):
            impl.gaussian_arrays_([np.empty(2, np.float32), np.empty(2)], None, 1, 0, 1.0, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_of_a_list_can_return_each_result_sum_of_squares(dtype):
    from fastclip import _privacy as C
    from fastclip.reference import privacy as R

    sizes = [5, 0, 1, 70_001, 2, 33]
    adds = [np.linspace(-1, 1, n).astype(dtype) for n in sizes]
    plain = [np.empty(n, dtype) for n in sizes]
    C.gaussian_arrays_(plain, adds, 7, 2, 0.8, 0.25)
    for impl in (C, R):
        outs = [np.empty(n, dtype) for n in sizes]
        sq = np.full(len(sizes), -1.0)
        impl.gaussian_arrays_(outs, adds, 7, 2, 0.8, 0.25, sq)
        for x, y in zip(outs, plain):  # the same noise with or without the sums
            np.testing.assert_array_equal(x, y)
        want = [float(np.dot(x.astype(np.float64), x.astype(np.float64))) for x in outs]
        np.testing.assert_allclose(sq, want, rtol=1e-12, atol=0)
        assert sq[1] == 0.0
        # bad sqnorms: a clear error and nothing written
        for bad in (np.zeros(len(sizes), np.float32), np.zeros(len(sizes) + 1),
                    np.zeros(len(sizes))[::-1], np.zeros(len(sizes)).reshape(2, 3)[:, :2]):
            outs2 = [np.full(n, 3, dtype) for n in sizes]
            with pytest.raises(ValueError, match="sqnorms"):
                impl.gaussian_arrays_(outs2, adds, 7, 2, 0.8, 0.25, bad)
            assert all(np.all(o == 3) for o in outs2)
        ro = np.zeros(len(sizes))
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="sqnorms"):
            impl.gaussian_arrays_([np.empty(n, dtype) for n in sizes], adds, 7, 2, 0.8, 0.25, ro)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dp_optimizer_hands_the_noise_pass_sums_to_the_optimiser(impl, dtype):
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(s).astype(dtype) for s in ((30, 20), (20,), (20, 3))]
    summed = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    got = {}
    for way in ("dp", "by hand"):
        ps = [p.copy() for p in params]
        sgd = fastclip.optim.SGD(ps, lr=0.1)
        dp = P.DPOptimizer(sgd, noise_multiplier=1.3, max_grad_norm=1.0,
                           expected_batch_size=8, rng=3)
        if way == "dp":
            norm = dp.step(summed)
        else:  # the same noise, the optimiser reading the gradients for their norm
            noisy = [n.copy() for n in dp.noisy_average(summed)]
            norm = sgd.step(noisy)
        got[way] = (norm, ps)
    (n1, p1), (n2, p2) = got["dp"], got["by hand"]
    assert n1 == pytest.approx(n2, rel=1e-12)
    for a, b in zip(p1, p2):  # SGD without clipping: the norm does not enter the update
        np.testing.assert_array_equal(a, b)
    # secure mode: the sums come from the noisy averages too
    sgd = fastclip.optim.SGD([p.copy() for p in params], lr=0.1)
    dp = P.DPOptimizer(sgd, noise_multiplier=1.3, max_grad_norm=1.0, expected_batch_size=8,
                       secure_mode=True)
    norm = dp.step(summed)
    want = math.sqrt(sum(float(np.dot(b.reshape(-1).astype(np.float64),
                                      b.reshape(-1).astype(np.float64))) for b in dp._noisy))
    assert norm == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_scaling_without_sums_matches_the_reference(dtype):
    """``row_weighted_sum(..., sums=False)`` scales the rows in place exactly as the
    summing call does, on every layout (merged, strided, needing a copy, empty), and
    both twins refuse it without ``inplace``."""
    from fastclip import _privacy as C
    from fastclip.reference import privacy as R
    rng = np.random.default_rng(5)
    for shape in [(5, 3, 4), (5,), (0, 3), (4, 0, 2), (0, 3, 4), (6, 7, 1, 3)]:
        for sliced in (False, True):
            a = rng.standard_normal(shape).astype(dtype)
            if sliced and a.ndim >= 3:
                a = a[:, ::2]
            w = rng.random((1, shape[0]))
            b, c, d = a.copy(), a.copy(), a.copy()
            assert C.row_weighted_sum([b], w, True, sums=False) is None
            assert R.row_weighted_sum([c], w, True, sums=False) is None
            C.row_weighted_sum([d], w, True)
            assert b.tobytes() == c.tobytes() == d.tobytes(), (shape, sliced)
            np.testing.assert_allclose(C.row_sqnorms([a]), R.row_sqnorms([a]), rtol=1e-12)
    for impl in (C, R):
        x = np.ones((2, 3), dtype)
        with pytest.raises(ValueError, match="inplace"):
            impl.row_weighted_sum([x], np.ones((1, 2)), False, sums=False)
        assert (x == 1).all()



def test_dp_optimizer_rejects_masked_lists_and_other_dtypes_without_stepping():
    """The summed gradients are checked as the optimisers check theirs: a masked array
    (whose hidden values were used), a list or a float16 array is a TypeError naming
    it, and the parameters and the noise stream stay as they were."""
    from fastclip import optim as O
    for bad in ([np.ma.array([1.0, 1e6, 1.0], mask=[0, 1, 0])], [[1.0, 2.0, 3.0]],
                [np.ones(3, np.float16)], ["abc"]):
        W = [np.zeros(3)]
        dp = P.DPOptimizer(O.SGD(W, lr=1.0), noise_multiplier=1.0, max_grad_norm=1.0,
                           expected_batch_size=1, rng=0)
        with pytest.raises(TypeError, match=r"summed_grads\[0\]"):
            dp.step(bad)
        assert (W[0] == 0).all() and dp._counter == 0
