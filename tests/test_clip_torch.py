"""fastclip's PyTorch-semantics functions against torch.nn.utils on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastclip
from fastclip import _dispatch

_fam = _dispatch.family("clip")
# Both implementations against torch; the reference alone where the extension is not built.
IMPLS = [pytest.param(_fam.reference, id="python")]
if _fam.compiled is not None:
    IMPLS.insert(0, pytest.param(_fam.compiled, id="c"))

DTYPES = [np.float32, np.float64]
NORM_TYPES = [1.0, 2.0, math.inf, 0.5, 3.0]
RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def _grads(dtype, kind, seed=0):
    """A few arrays of several shapes and layouts; ``kind`` injects NaN/inf."""
    rng = np.random.default_rng(seed)
    g = [
        rng.standard_normal((13, 7)).astype(dtype),
        rng.standard_normal(50).astype(dtype),
        np.asfortranarray(rng.standard_normal((4, 6)).astype(dtype)),
        rng.standard_normal((3, 5, 2)).astype(dtype)[:, ::2, :],  # strided view
        np.array(rng.standard_normal(), dtype=dtype),  # 0-d
        np.zeros((0, 4), dtype=dtype),  # empty
        rng.standard_normal(40).astype(dtype)[::-3],  # negative stride
    ]
    if kind == "nan":
        g[2][1, 3] = np.nan
    elif kind == "inf":
        g[1][7] = -np.inf
    elif kind == "nan+inf":
        g[1][7] = np.inf
        g[3][0, 0, 1] = np.nan
    return g


def _torch_input(grads, p):
    """torch raises for the infinity norm of an empty tensor (no identity for max);
    fastclip gives an empty array the norm 0 for every order, so for p = inf the empty
    arrays (which contribute 0 to the max) are left out of torch's input."""
    return [g for g in grads if not (math.isinf(p) and g.size == 0)]


def _params(grads):
    """torch parameters whose .grad holds a copy of each array (torch has no negative
    strides, so the data are copied; the values are the same)."""
    out = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.from_numpy(g.copy()).dtype))
        p.grad = torch.from_numpy(np.array(g, copy=True))
        out.append(p)
    return out


def _assert_same(ours, params, dtype):
    for a, p in zip(ours, params):
        np.testing.assert_allclose(
            np.asarray(a, dtype=np.float64),
            p.grad.numpy().astype(np.float64),
            rtol=RTOL[dtype],
            atol=0,
            equal_nan=True,
        )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", NORM_TYPES)
@pytest.mark.parametrize("kind", ["finite", "nan", "inf", "nan+inf"])
def test_get_total_norm(impl, dtype, p, kind):
    g = _grads(dtype, kind)
    want = float(
        torch.nn.utils.get_total_norm([torch.from_numpy(a.copy()) for a in _torch_input(g, p)], p)
    )
    got = impl.get_total_norm(g, p)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], equal_nan=True)
    per = impl.array_norms(g, p)
    want_per = [
        float(torch.linalg.vector_norm(torch.from_numpy(a.copy()), p)) if a.size else 0.0 for a in g
    ]
    np.testing.assert_allclose(per, want_per, rtol=RTOL[dtype], equal_nan=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", NORM_TYPES)
@pytest.mark.parametrize(
    "kind,factor",
    [("finite", f) for f in (0.0, 0.3, 1.0, 2.0, math.inf)]
    + [("nan", 0.3), ("inf", 0.3), ("nan+inf", 2.0), ("inf", math.inf)],
)
def test_clip_grad_norm_(impl, dtype, p, kind, factor):
    g = _torch_input(_grads(dtype, kind), p)
    params = _params(g)
    finite_total = impl.get_total_norm(_grads(dtype, "finite"), p)
    max_norm = factor * finite_total if math.isfinite(factor) else factor
    want = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=p)
    got = impl.clip_grad_norm_(g, max_norm, p)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, float(want), rtol=RTOL[dtype], equal_nan=True)
    _assert_same(g, params, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("total", [0.0, 0.5, 3.0, 1e30, math.inf, math.nan])
@pytest.mark.parametrize("max_norm", [0.0, 1.0, 10.0])
def test_clip_grads_with_norm_(impl, dtype, total, max_norm):
    g = _grads(dtype, "finite")
    params = _params(g)
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, torch.tensor(total, dtype=torch.float64))
    impl.clip_grads_with_norm_(g, max_norm, total)
    _assert_same(g, params, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip_value", [0.0, 0.1, 1.0, math.inf])
@pytest.mark.parametrize("kind", ["finite", "nan+inf"])
def test_clip_grad_value_(impl, dtype, clip_value, kind):
    g = _grads(dtype, kind)
    params = _params(g)
    torch.nn.utils.clip_grad_value_(params, clip_value)
    assert impl.clip_grad_value_(g, clip_value) is None
    for a, prm in zip(g, params):
        np.testing.assert_array_equal(np.asarray(a), prm.grad.numpy())  # exact


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_list_gives_zero(impl):
    assert float(torch.nn.utils.clip_grad_norm_([], 1.0)) == 0.0
    assert impl.clip_grad_norm_([], 1.0) == 0.0
    assert float(torch.nn.utils.get_total_norm([])) == 0.0
    assert impl.get_total_norm([]) == 0.0
    impl.clip_grads_with_norm_([], 1.0, 5.0)
    impl.clip_grad_value_([], 1.0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_error_if_nonfinite_both_refuse(impl, kind):
    g = _grads(np.float32, kind)
    params = _params(g)
    before = [a.copy() for a in g]
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    with pytest.raises(FloatingPointError, match="non-finite"):
        impl.clip_grad_norm_(g, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.get_total_norm([prm.grad for prm in params], error_if_nonfinite=True)
    with pytest.raises(FloatingPointError, match="non-finite"):
        impl.get_total_norm(g, error_if_nonfinite=True)
    # neither modified anything
    for a, b, prm in zip(g, before, params):
        assert np.asarray(a).tobytes() == b.tobytes()
        np.testing.assert_array_equal(prm.grad.numpy(), b)


def test_empty_array_infinity_norm():
    # torch refuses (max over nothing); fastclip: an empty array has norm 0
    with pytest.raises(RuntimeError):
        torch.linalg.vector_norm(torch.zeros(0), math.inf)
    for impl in (_fam.compiled, _fam.reference):
        assert impl.get_total_norm([np.zeros(0), np.array([-2.0])], math.inf) == 2.0
        assert impl.array_norms([np.zeros((0, 3))], math.inf)[0] == 0.0


def test_public_functions_follow_torch_on_a_training_like_step():
    """The public module (whatever implementation is selected) on a 784-512-10 MLP's
    float32 gradients, as a user would call it. fastclip accumulates float32 norms in
    float64: it matches torch on float64 copies to 1e-12, and torch's own float32
    arithmetic (float32 accumulation) to 1e-5."""
    rng = np.random.default_rng(5)
    shapes = [(512, 784), (512,), (10, 512), (10,)]
    g = [rng.standard_normal(s).astype(np.float32) * np.float32(0.1) for s in shapes]
    p32 = _params(g)
    p64 = _params([a.astype(np.float64) for a in g])
    want32 = torch.nn.utils.clip_grad_norm_(p32, 1.0)
    want64 = torch.nn.utils.clip_grad_norm_(p64, 1.0)
    got = fastclip.clip_grad_norm_(g, 1.0)
    np.testing.assert_allclose(got, float(want64), rtol=1e-12)
    np.testing.assert_allclose(got, float(want32), rtol=1e-5)
    for a, q64, q32 in zip(g, p64, p32):
        np.testing.assert_allclose(a, q64.grad.numpy().astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(a, q32.grad.numpy(), rtol=1e-5)


def _public_impls():
    return ["c", "python"] if _fam.compiled is not None else ["python"]


@pytest.mark.parametrize("impl", _public_impls())
def test_errors_name_each_gradient_by_its_own_parameter(impl):
    """Parameters whose grad is None are skipped; the errors about the others name
    each by its own position (grads[2].grad), not by its index among the kept ones,
    and nothing is modified."""
    def params():
        ps = [torch.nn.Parameter(torch.ones(3)) for _ in range(4)]  # ps[0].grad is None
        ps[1].grad = torch.full((3,), 5.0)
        ps[2].grad = torch.tensor([1.0, float("nan"), 1.0])
        ps[3].grad = torch.full((3,), 5.0)
        return ps

    nonfinite = r"grads\[2\]\.grad holds a non-finite value"
    with fastclip.use_implementation(impl):
        ps = params()
        with pytest.raises(FloatingPointError, match=nonfinite):
            fastclip.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
        with pytest.raises(FloatingPointError, match=nonfinite):
            fastclip.get_total_norm(ps, error_if_nonfinite=True)
        with pytest.raises(FloatingPointError, match=nonfinite):
            fastclip.clip_grad_norm_(iter(ps), 1.0, error_if_nonfinite=True)  # a generator
        assert ps[1].grad.tolist() == [5.0] * 3 and ps[3].grad.tolist() == [5.0] * 3
        # two gradients sharing memory
        ps = params()
        bucket = torch.full((6,), 5.0)
        ps[2].grad, ps[3].grad = bucket[0:3], bucket[2:5]
        shared = r"grads\[2\]\.grad and grads\[3\]\.grad share memory"
        for clip in (lambda: fastclip.clip_grad_norm_(ps, 1.0),
                     lambda: fastclip.clip_grad_value_(ps, 1.0),
                     lambda: fastclip.clip_grads_with_norm_(ps, 1.0, 100.0),
                     lambda: fastclip.zero_nans_(ps)):
            with pytest.raises(ValueError, match=shared):
                clip()
        assert ps[1].grad.tolist() == [5.0] * 3 and bucket.tolist() == [5.0] * 6
        # a pytree of parameters: named by its key
        with pytest.raises(FloatingPointError, match=r"grads\['b'\]\.grad holds a non-fin"):
            fastclip.clip_grad_norm_({"a": params()[:2], "b": params()[2]}, 1.0,
                                     error_if_nonfinite=True)
