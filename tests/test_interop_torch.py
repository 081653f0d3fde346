"""torch CPU tensors in the clipping functions and optimisers: in place, zero-copy."""

import subprocess
import sys

import numpy as np
import pytest

import fastclip
from fastclip import optim

torch = pytest.importorskip("torch")

IMPLS = ["c", "python"]


def _model(seed=0, dtype=torch.float64, sizes=(6, 9, 7, 3)):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).to(dtype)


def _backward(model, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    dt = next(model.parameters()).dtype
    x = torch.randn(8, model[0].in_features, generator=g, dtype=dt)
    y = torch.randint(0, model[-1].out_features, (8,), generator=g)
    loss = torch.nn.functional.cross_entropy(model(x) * scale, y)
    loss.backward()


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
def test_clip_grad_norm_matches_torch_in_place(impl, dtype, norm_type):
    a, b = _model(dtype=dtype), _model(dtype=dtype)
    _backward(a, scale=50.0)
    _backward(b, scale=50.0)
    ptrs = [p.grad.data_ptr() for p in b.parameters()]
    values = [p.detach().clone() for p in b.parameters()]
    want = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5, norm_type)
    with fastclip.use_implementation(impl):
        got = fastclip.clip_grad_norm_(b.parameters(), 0.5, norm_type)
    assert type(got) is float  # torch returns a 0-d tensor
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(got, float(want), rtol=rtol)
    for p, q, ptr, v in zip(a.parameters(), b.parameters(), ptrs, values):
        assert q.grad.data_ptr() == ptr  # the same memory, modified in place
        np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=rtol, atol=0)
        assert torch.equal(q.detach(), v)  # the values are never touched


@pytest.mark.parametrize("impl", IMPLS)
def test_clip_grad_value_get_total_norm_and_with_norm(impl):
    a, b = _model(), _model()
    _backward(a, scale=20.0)
    _backward(b, scale=20.0)
    with fastclip.use_implementation(impl):
        n = fastclip.get_total_norm(b.parameters())
        assert type(n) is float
        tn = torch.nn.utils.get_total_norm([p.grad for p in a.parameters()])
        np.testing.assert_allclose(n, float(tn), rtol=1e-12)
        torch.nn.utils.clip_grads_with_norm_(a.parameters(), 0.3, tn)
        fastclip.clip_grads_with_norm_(b.parameters(), 0.3, n)
        for p, q in zip(a.parameters(), b.parameters()):
            np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-12)
        torch.nn.utils.clip_grad_value_(a.parameters(), 0.01)
        fastclip.clip_grad_value_(b.parameters(), 0.01)
        for p, q in zip(a.parameters(), b.parameters()):
            np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-12)
            assert q.grad.abs().max() <= 0.01


@pytest.mark.parametrize("impl", IMPLS)
def test_none_grads_skipped_and_plain_tensors_are_gradients(impl):
    m = _model()
    _backward(m)
    m[0].bias.grad = None
    with fastclip.use_implementation(impl):
        want = float(torch.nn.utils.get_total_norm(
            [p.grad for p in m.parameters() if p.grad is not None]))
        assert fastclip.get_total_norm(m.parameters()) == pytest.approx(want, rel=1e-12)
        # plain tensors (not parameters) are gradients themselves, as ndarrays are
        g = torch.tensor([3.0, 4.0], dtype=torch.float64)
        assert fastclip.clip_grad_norm_([g], 1.0) == 5.0
        np.testing.assert_allclose(g.numpy(), [0.6, 0.8], rtol=1e-6)
        t = torch.full((2, 3), 9.0).t()  # a transposed (non-contiguous) view is shared too
        fastclip.clip_grad_value_(t, 1.0)
        assert torch.equal(t, torch.ones(3, 2))
        # a leaf that requires grad is a parameter (torch clips its .grad)
        w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        w.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
        assert fastclip.clip_grad_norm_([w], 1.0) == 5.0
        assert torch.equal(w.detach(), torch.zeros(2, dtype=torch.float64))
        np.testing.assert_allclose(w.grad.numpy(), [0.6, 0.8], rtol=1e-6)


def test_mixing_torch_parameters_and_arrays_is_a_type_error():
    m = _model()
    _backward(m)
    before = _grads(m)
    with pytest.raises(TypeError, match=r"^grads mixes parameters \(grads\[0\]\) and plain "
                                        r"arrays \(grads\[6\]\)"):
        fastclip.clip_grad_norm_([*m.parameters(), np.ones(3)], 1e-3)
    assert all(torch.equal(p.grad, g) for p, g in zip(m.parameters(), before))


def _bad_tensors():
    out = [
        ("float16", torch.ones(3, dtype=torch.float16), r"dtype torch\.float16"),
        ("bfloat16", torch.ones(3, dtype=torch.bfloat16), r"dtype torch\.bfloat16"),
        ("int64", torch.ones(3, dtype=torch.int64), r"dtype torch\.int64"),
        ("meta", torch.empty(3, device="meta"), r"on device meta; fastclip works on CPU"),
        ("sparse", torch.eye(3).to_sparse(), r"layout torch\.sparse_coo"),
        ("neg-bit", torch._neg_view(torch.ones(3)), r"lazy conjugate/negative bit"),
    ]
    if torch.cuda.is_available():  # pragma: no cover - CPU CI
        out.append(("cuda", torch.ones(3, device="cuda"), r"on device cuda"))
    return out


@pytest.mark.parametrize(("what", "t", "match"), _bad_tensors(), ids=lambda v: str(v)[:12])
def test_unsupported_tensors_raise_type_error_and_nothing_is_modified(what, t, match):
    ok = torch.full((2,), 10.0)
    with pytest.raises(TypeError, match=r"^grads\[1\] is a torch tensor .*" + match):
        fastclip.clip_grad_norm_([ok, t], 1.0)
    assert torch.equal(ok, torch.full((2,), 10.0))
    # a parameter whose grad cannot be shared is named as such
    if what in ("float16", "bfloat16"):
        p = torch.nn.Parameter(torch.ones(3, dtype=t.dtype))
        p.grad = t
        with pytest.raises(TypeError, match=r"^grads\[0\]\.grad is a torch tensor of dtype"):
            fastclip.clip_grad_value_([p], 1.0)


def test_torch_is_imported_only_when_a_torch_object_is_passed():
    code = ("import sys, numpy as np, fastclip\n"
            "from fastclip import nn, optim\n"
            "m = nn.MLP([3, 2], dtype=np.float64, rng=0)\n"
            "m(np.ones((1, 3))); m.backward(np.ones((1, 2)))\n"
            "fastclip.clip_grad_norm_(m.parameters(), 1.0)\n"
            "fastclip.clip_by_global_norm({'a': np.ones(2)}, 1.0)\n"
            "optim.Adam(m.parameters(), clip_norm=1.0).step()\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("impl", IMPLS)
def test_out_of_place_functions_read_torch_tensors(impl):
    with fastclip.use_implementation(impl):
        t = {"w": torch.full((2, 2), 3.0, dtype=torch.float64),
             "b": torch.full((2,), 4.0, dtype=torch.float64)}
        out, g = fastclip.clip_by_global_norm(t, 1.0)
        assert g == pytest.approx(np.sqrt(4 * 9 + 2 * 16))
        assert isinstance(out["w"], np.ndarray)
        assert torch.equal(t["w"], torch.full((2, 2), 3.0, dtype=torch.float64))


# ---------------------------------------------------------------------------
# Optimisers on a torch model: parity with torch.optim + clip_grad_norm_
# ---------------------------------------------------------------------------
CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.9), eps=1e-6, weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.2, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, centered=True)),
    ("RMSprop", dict(lr=0.005, alpha=0.3, eps=1e-4, centered=True, momentum=0.5,
                     weight_decay=0.05)),
]
STEPS = 50


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("name", "kw"), CONFIGS,
                         ids=[f"{n}-" + "-".join(f"{k}={v}" for k, v in kw.items())
                              for n, kw in CONFIGS])
def test_optimizer_on_torch_model_matches_torch(impl, name, kw):
    a, b = _model(seed=3), _model(seed=3)
    topt = getattr(torch.optim, name)(a.parameters(), **kw, foreach=False)
    with fastclip.use_implementation(impl):
        fopt = getattr(optim, name)(b.parameters(), **kw, clip_norm=1.0)
        ptrs = [p.data_ptr() for p in b.parameters()]
        for k in range(STEPS):
            scale = 40.0 if k % 3 == 0 else 1.0  # some steps clip, some do not
            topt.zero_grad()
            _backward(a, seed=k, scale=scale)
            tn = torch.nn.utils.clip_grad_norm_(a.parameters(), 1.0)
            topt.step()
            fopt.zero_grad()
            _backward(b, seed=k, scale=scale)
            fn = fopt.step()
            np.testing.assert_allclose(fn, float(tn), rtol=1e-10)
    for p, q, ptr in zip(a.parameters(), b.parameters(), ptrs):
        assert q.data_ptr() == ptr  # updated in place
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-12,
                                   atol=1e-12)


def test_optimizer_on_torch_model_float32_and_zero_grad_in_place():
    a, b = _model(dtype=torch.float32), _model(dtype=torch.float32)
    topt = torch.optim.Adam(a.parameters(), lr=0.01)
    fopt = optim.Adam(b.parameters(), lr=0.01, clip_norm=1.0)
    for k in range(10):
        topt.zero_grad(set_to_none=False)
        _backward(a, seed=k, scale=10.0)
        torch.nn.utils.clip_grad_norm_(a.parameters(), 1.0)
        topt.step()
        grads = [p.grad for p in b.parameters()] if k else None
        fopt.zero_grad(set_to_none=False)
        if grads is not None:  # the same gradient tensors, zeroed in place
            assert all(p.grad is g and not g.any() for p, g in zip(b.parameters(), grads))
        _backward(b, seed=k, scale=10.0)
        fopt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=2e-5,
                                   atol=2e-6)


def test_zero_grad_in_place_zeroes_gradients_that_are_views_as_torch_does():
    """zero_grad(set_to_none=False) on gradients that are views (of a bigger tensor,
    as DDP's gradient buckets are) and on one that requires grad: every gradient is
    zeroed in place, as torch.optim.Optimizer.zero_grad does."""
    def params():
        p, q, r = (torch.nn.Parameter(torch.ones(3)) for _ in range(3))
        bucket = torch.ones(6)
        p.grad, q.grad = torch.ones(3), bucket[:3]
        r.grad = torch.ones(3, requires_grad=True) * 2  # a grad with a grad_fn
        return [p, q, r], bucket

    want, want_bucket = params()
    torch.optim.SGD(want, lr=0.1).zero_grad(set_to_none=False)
    got, bucket = params()
    grads = [p.grad for p in got]
    optim.SGD(got, lr=0.1).zero_grad(set_to_none=False)
    for p, g, w in zip(got, grads, want):
        assert p.grad is g and not g.any()  # the same tensor, zeroed
        assert p.grad.requires_grad == w.grad.requires_grad
        assert (p.grad.grad_fn is None) == (w.grad.grad_fn is None)
    assert torch.equal(bucket, want_bucket)  # the view's base: its part zeroed


def test_optimizer_follows_a_replaced_parameter_tensor():
    m = _model()
    opt = optim.SGD(m.parameters(), lr=0.5)
    _backward(m)
    w = m[0].weight
    w.data = w.data.clone()  # new storage for the same parameter
    before = w.detach().clone()
    g = w.grad.clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.5 * g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("name", ["Adam", "SGD", "RMSprop"])
def test_optimizer_state_follows_a_replaced_storage_in_another_memory_order(name, impl):
    # p.data = a Fortran-ordered tensor of the same shape and dtype: the state keeps
    # its values in the new order and every later step matches torch's
    with fastclip.use_implementation(impl):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
        q = torch.nn.Parameter(p.detach().clone())
        kw = dict(lr=0.1, momentum=0.9) if name != "Adam" else dict(lr=0.1)
        opt = getattr(optim, name)([p], **kw)
        ref = getattr(torch.optim, name)([q], **kw)
        for k in range(5):
            p.grad = torch.full((4, 3), 1.0 + k, dtype=torch.float64)
            q.grad = p.grad.clone()
            opt.step()
            ref.step()
            if k == 1:
                with torch.no_grad():
                    p.data = p.data.t().contiguous().t()
                    q.data = q.data.t().contiguous().t()
                assert not p.data.is_contiguous()
        assert opt.step_count == 5
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-12)


def test_optimizer_names_torch_parameter_groups_and_named_parameters():
    m = _model()
    with pytest.raises(TypeError, match=r"^params\[0\] is a dict: .*parameter groups"):
        optim.SGD([{"params": list(m.parameters()), "lr": 0.1}], lr=0.1)
    with pytest.raises(TypeError, match=r"^params\[0\] is a \(name, parameter\) pair: "
                                        r"pass model\.parameters\(\)"):
        optim.Adam(m.named_parameters(), lr=0.1)


def test_optimizer_rejects_unsupported_torch_parameters():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"^params\[0\] is a torch tensor of dtype torch\.float16"):
        optim.SGD([p], lr=0.1)
    q = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"params mixes parameters \(params\[0\]\) and plain "
                                        r"arrays \(params\[1\]\)"):
        optim.SGD([q, np.ones(3)], lr=0.1)


def test_in_place_writes_to_torch_tensors_bump_their_versions():
    """fastclip's optimiser steps and in-place clips write torch memory as torch's own
    in-place operations do, so autograd refuses a graph that saved the old values
    (it computed the gradient from the updated weights instead)."""
    from fastclip import optim as fo
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    loss = (w * w * torch.tensor([3.0, 4.0])).sum()
    loss.backward(retain_graph=True)
    fo.SGD([w], lr=0.1).step()
    w.grad = None
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    for clip in (lambda p: fastclip.clip_grad_norm_(p, 1.0),
                 lambda p: fastclip.clip_grad_value_(p, 1.0),
                 lambda p: fastclip.clip_grads_with_norm_(p, 1.0, 2.0),
                 lambda p: fastclip.zero_nans_(p)):
        w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        g, = torch.autograd.grad((w * w * torch.tensor([3.0, 4.0])).sum(), w,
                                 create_graph=True)
        w.grad = g
        pen = (g ** 2).sum()
        v = g._version
        clip([w])
        assert g._version > v
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            torch.autograd.grad(pen, w)


def test_a_refused_step_swaps_no_parameter_view():
    """A step refused because one parameter changed shape keeps every view (and the
    plan built on them): after the shape is put back, the next step updates every
    parameter, including one whose storage was replaced before the refused step."""
    from fastclip import optim as fo
    p0 = torch.nn.Parameter(torch.zeros(2))
    p1 = torch.nn.Parameter(torch.zeros(3))
    opt = fo.SGD([p0, p1], lr=1.0)
    p0.grad, p1.grad = torch.ones(2), torch.ones(3)
    old1 = p1.data
    p0.data = torch.zeros(2)
    p1.data = torch.zeros(5)
    with pytest.raises(ValueError, match=r"params\[1\] changed from shape"):
        opt.step()
    p1.data = old1
    opt.step()
    assert p0.data.tolist() == [-1.0, -1.0] and p1.data.tolist() == [-1.0, -1.0, -1.0]


def test_a_single_tensor_is_not_a_parameter_list():
    from fastclip import optim as fo
    with pytest.raises(TypeError, match="single torch.Tensor; wrap it in a list"):
        fo.SGD(torch.nn.Parameter(torch.ones(3, 2)), lr=0.1)
    with pytest.raises(TypeError, match="tensors must be a bool"):
        fastclip.nn.MLP([2, 3, 2], rng=0).to_torch_state_dict(tensors="no")


@pytest.mark.parametrize("impl", ["c", "python"])
def test_step_errors_name_the_parameter_when_some_grads_are_none(impl):
    """With some grads None the step runs on the parameters that have one; its errors
    still name each parameter by its own index, and nothing is modified."""
    ps = [torch.nn.Parameter(torch.ones(3)) for _ in range(3)]
    opt = optim.SGD(ps, lr=0.1)
    ps[2].grad = ps[2].detach()  # the gradient is the parameter's own memory
    with fastclip.use_implementation(impl):
        with pytest.raises(ValueError, match=r"grads\[2\] shares memory with params\[2\]"):
            opt.step()
    assert all((p.detach() == 1).all() for p in ps) and opt.step_count == 0


def test_inference_tensors_are_written_only_in_inference_mode():
    """torch refuses in-place updates to inference tensors outside inference mode; so
    do fastclip's in-place clips and optimisers, with nothing modified. Inside
    inference mode both work."""
    with torch.inference_mode():
        g = torch.full((3,), 4.0)
        p = torch.nn.Parameter(torch.ones(3))
        p.grad = torch.ones(3)
    for clip in (lambda t: fastclip.clip_grad_norm_(t, 1.0),
                 lambda t: fastclip.clip_grad_value_(t, 1.0),
                 lambda t: fastclip.zero_nans_(t)):
        with pytest.raises(ValueError, match="inference tensor"):
            clip([g])
        assert (g == 4.0).all()
    with pytest.raises(ValueError, match=r"params\[0\] is an inference tensor"):
        optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[0\] is an inference tensor"):
        optim.SGD([p.detach()], lr=0.1)
    with torch.inference_mode():
        opt = optim.SGD([p], lr=0.5)
        fastclip.clip_grad_value_([g], 1.0)
    assert (g == 1.0).all()
    with pytest.raises(ValueError, match="inference tensor"):
        opt.step()  # built inside inference mode, stepped outside
    assert (p.detach() == 1.0).all()
    with torch.inference_mode():
        opt.step()
    assert (p.detach() == 0.5).all()


class _MyParam(torch.nn.Parameter):
    """A Parameter subclass defined outside torch (as libraries define their own)."""


class _MyTensor(torch.Tensor):
    pass


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("requires_grad", [True, False])
def test_tensor_and_parameter_subclasses_defined_outside_torch(impl, requires_grad):
    """Subclasses of torch.nn.Parameter / torch.Tensor from any module are torch
    objects: a parameter gives its grad (also with requires_grad=False, as
    torch.nn.utils.clip_grad_norm_ takes it), a tensor is the gradient itself."""
    def params():
        p = _MyParam(torch.ones(3, dtype=torch.float64), requires_grad=requires_grad)
        p.grad = torch.full((3,), 4.0, dtype=torch.float64)
        return [p]

    want, got = params(), params()
    total = torch.nn.utils.clip_grad_norm_(want, 1.0)
    with fastclip.use_implementation(impl):
        assert fastclip.get_total_norm(got) == pytest.approx(float(total), rel=1e-12)
        assert fastclip.clip_grad_norm_(got, 1.0) == pytest.approx(float(total), rel=1e-12)
        np.testing.assert_allclose(got[0].grad.numpy(), want[0].grad.numpy(), rtol=1e-12)
        assert torch.equal(got[0].detach(), torch.ones(3, dtype=torch.float64))
        # an optimiser on them, as torch.optim.SGD (which also steps requires_grad=False)
        want, got = params(), params()
        torch.optim.SGD(want, lr=0.1).step()
        opt = optim.SGD(got, lr=0.1)
        opt.step()
        np.testing.assert_allclose(got[0].detach().numpy(), want[0].detach().numpy(),
                                   rtol=1e-12)
        opt.zero_grad(set_to_none=False)
        assert not got[0].grad.any()
        # a plain tensor subclass is a gradient, clipped in place
        t = torch.full((3,), 4.0).as_subclass(_MyTensor)
        assert type(t) is _MyTensor
        fastclip.clip_grad_value_([t], 1.0)
        assert t.tolist() == [1.0] * 3
        assert fastclip.array_norms([t])[0] == pytest.approx(3 ** 0.5)


def test_state_dict_values_of_a_parameter_subclass_load():
    from fastclip import nn

    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    sd = {k: _MyParam(v.detach().clone()) for k, v in lin.state_dict().items()}
    m = nn.MLP.from_torch_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(m(x), lin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
