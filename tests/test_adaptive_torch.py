"""The adaptive clippers on torch CPU models and tensors: in place, zero-copy, the same
results as on the NumPy arrays, AutoClip as torch.nn.utils.clip_grad_norm_ at its
threshold, AGC with the units of torch's (out, in) layout."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastclip
from fastclip import AGC, AutoClip, ZClip

IMPLS = ["c", "python"]
DTYPES = [torch.float32, torch.float64]
SCALES = [1.0, 2.0, 0.5, 40.0, 1.0, 300.0, 0.8, 60.0]


def _model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh(),
                               torch.nn.Linear(9, 4)).to(dtype)


def _backward(net, seed, scale):
    net.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(seed)
    dt = next(net.parameters()).dtype
    x = torch.randn(5, 6, generator=g, dtype=dt)
    (net(x).pow(2).sum() * scale).backward()


def _np_grads(net):
    return [p.grad.numpy().copy() for p in net.parameters() if p.grad is not None]


def _torch_twin(net):
    """Parameters holding clones of net's gradients, for torch.nn.utils."""
    out = []
    for p in net.parameters():
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = p.grad.detach().clone()
        out.append(q)
    return out


def _versions(net):
    return [p.grad._version for p in net.parameters() if p.grad is not None]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_autoclip_on_parameters_matches_numpy_and_torch(impl, dtype):
    net = _model(dtype)
    ours, twin = AutoClip(percentile=25.0), AutoClip(percentile=25.0)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    clipped_steps = 0
    for step, scale in enumerate(SCALES):
        _backward(net, step, scale)
        arrays = _np_grads(net)
        tw = _torch_twin(net)
        ptrs = [p.grad.data_ptr() for p in net.parameters()]
        values = [p.detach().clone() for p in net.parameters()]
        before = _versions(net)
        with fastclip.use_implementation(impl):
            want = twin.clip_(arrays)
            got = ours.clip_(net.parameters())
        assert got == want and ours.last_threshold == twin.last_threshold
        assert ours.last_clipped == twin.last_clipped
        np.testing.assert_array_equal(ours.last_sqnorms, twin.last_sqnorms)
        for p, a, ptr, v in zip(net.parameters(), arrays, ptrs, values):
            assert p.grad.data_ptr() == ptr  # clipped where it lies
            np.testing.assert_array_equal(p.grad.numpy(), a)
            assert torch.equal(p.detach(), v)  # the values are never touched
        torch.nn.utils.clip_grad_norm_(tw, ours.last_threshold)
        for p, q in zip(net.parameters(), tw):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=rtol, atol=0)
        # autograd learns of a write, and only of one
        bumped = [v > b for v, b in zip(_versions(net), before)]
        assert bumped == [bool(ours.last_clipped)] * len(bumped)
        clipped_steps += ours.last_clipped
    assert 0 < clipped_steps < len(SCALES)
    np.testing.assert_array_equal(ours.history, twin.history)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(warmup_steps=3),
                                    dict(warmup_steps=2, max_grad_norm=5.0, mode="percentile")])
def test_zclip_on_parameters_matches_numpy(impl, dtype, kwargs):
    net = _model(dtype, seed=1)
    ours, twin = ZClip(**kwargs), ZClip(**kwargs)
    clipped_steps = 0
    for step, scale in enumerate(SCALES):
        _backward(net, step, scale)
        arrays = _np_grads(net)
        before = _versions(net)
        with fastclip.use_implementation(impl):
            want = twin.clip_(arrays)
            got = ours.clip_(net.parameters())
        assert got == want
        assert (ours.last_clipped, ours.last_threshold) == (twin.last_clipped,
                                                            twin.last_threshold)
        for p, a in zip(net.parameters(), arrays):
            np.testing.assert_array_equal(p.grad.numpy(), a)
        bumped = [v > b for v, b in zip(_versions(net), before)]
        assert bumped == [bool(ours.last_clipped)] * len(bumped)
        clipped_steps += ours.last_clipped
    assert clipped_steps > 0
    assert (ours.mean, ours.var) == (twin.mean, twin.var)


@pytest.mark.parametrize("make", [AutoClip, ZClip])
def test_parameters_without_grad_are_skipped(make):
    net = _model()
    ours, twin = make(), make()
    for step, scale in enumerate(SCALES):
        _backward(net, step, scale)
        net[0].bias.grad = None
        arrays = _np_grads(net)
        assert ours.clip_(net.parameters()) == twin.clip_(arrays)
        assert net[0].bias.grad is None
        assert len(ours.last_sqnorms) == 3
        for p, a in zip([p for p in net.parameters() if p.grad is not None], arrays):
            np.testing.assert_array_equal(p.grad.numpy(), a)
    # sqnorms: one per gradient clipped
    _backward(net, 0, 1.0)
    net[0].bias.grad = None
    sq = [float((g.astype(np.float64) ** 2).sum()) for g in _np_grads(net)]
    assert ours.clip_(net.parameters(), sqnorms=sq) == pytest.approx(math.sqrt(sum(sq)))


@pytest.mark.parametrize("make", [lambda: AutoClip(percentile=0.0), lambda: ZClip(
    warmup_steps=1, max_grad_norm=1.0)])
def test_plain_tensors_are_the_gradients(make):
    ours, twin = make(), make()
    gen = torch.Generator().manual_seed(3)
    for scale in [1.0, 10.0, 100.0]:
        ts = [torch.randn(4, 3, generator=gen) * scale, torch.randn(6, generator=gen)[::2]]
        arrays = [t.numpy().copy() for t in ts]
        assert ours.clip_(ts) == twin.clip_(arrays)
        for t, a in zip(ts, arrays):
            np.testing.assert_array_equal(t.numpy(), a)
    assert ours.last_clipped == 1
    t = torch.full((3,), 100.0)  # a single tensor is one gradient
    assert ours.clip_(t) == pytest.approx(math.sqrt(3) * 100)
    assert torch.linalg.vector_norm(t) < 100


def _timm_agc(grads, params, clipping, eps=1e-3):
    """timm's adaptive_clip_grad (optax's formula, torch's layout: the units of a
    weight are its rows), on copies."""
    out = []
    for g, p in zip(grads, params):
        dims = tuple(range(1, g.ndim))
        gn = torch.linalg.vector_norm(g, dim=dims or None, keepdim=True)
        pn = torch.linalg.vector_norm(p, dim=dims or None, keepdim=True)
        mx = pn.clamp(min=eps) * clipping
        out.append(torch.where(gn < mx, g, g * (mx / gn.clamp(min=1e-6))))
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_agc_on_parameters_uses_grad_and_value_in_torch_layout(impl, dtype):
    net = _model(dtype)
    _backward(net, 0, 50.0)
    grads = [p.grad.detach().clone() for p in net.parameters()]
    vals = [p.detach().clone() for p in net.parameters()]
    want = _timm_agc(grads, vals, 0.05)
    # the NumPy call on fastclip's (in, out) layout: the arrays transposed
    g_np = [g.numpy().T.copy() for g in grads]
    p_np = [v.numpy().T.copy() for v in vals]
    twin = AGC(0.05)
    ours = AGC(0.05)
    before = _versions(net)
    with fastclip.use_implementation(impl):
        n_np = twin.clip_(g_np, p_np)
        n_t = ours.clip_(net.parameters())
    assert n_t == n_np and ours.last_clipped == twin.last_clipped > 0
    np.testing.assert_array_equal(ours.last_sqnorms, twin.last_sqnorms)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for p, a, w, v in zip(net.parameters(), g_np, want, vals):
        np.testing.assert_array_equal(p.grad.numpy(), a.T)
        np.testing.assert_allclose(p.grad.numpy(), w.numpy(), rtol=rtol, atol=1e-30)
        assert torch.equal(p.detach(), v)
    assert all(v > b for v, b in zip(_versions(net), before))


@pytest.mark.parametrize("impl", IMPLS)
def test_agc_tensors_for_both_and_the_function(impl):
    net = _model()
    _backward(net, 1, 80.0)
    grads = [p.grad.detach().clone() for p in net.parameters()]
    vals = [p.detach() for p in net.parameters()]
    want = _timm_agc(grads, vals, 0.02)
    a = [g.clone() for g in grads]
    b = [g.clone() for g in grads]
    with fastclip.use_implementation(impl):
        AGC(0.02).clip_(a, vals)
        sb, sa, n = fastclip.adaptive_grad_clip_(b, net.parameters(), 0.02)
    assert n > 0 and sb.shape == sa.shape == (4,)
    for x, y, w in zip(a, b, want):
        np.testing.assert_allclose(x.numpy(), w.numpy(), rtol=1e-12, atol=1e-30)
        assert torch.equal(x, y)
    # parameters as grads with params given: paired with those that have a grad
    _backward(net, 1, 80.0)
    net[2].weight.grad = None
    keep = [0, 1, 3]
    c = [grads[i].clone() for i in keep]
    AGC(0.02).clip_(c, [vals[i] for i in keep])
    AGC(0.02).clip_(net.parameters(), [vals[i] for i in keep])
    for x, i in zip(c, keep):
        assert torch.equal(list(net.parameters())[i].grad, x)
    # params=None works for the function too
    _backward(net, 1, 80.0)
    fastclip.adaptive_grad_clip_(net.parameters(), None, 0.02)
    for p, w in zip(net.parameters(), want):
        np.testing.assert_allclose(p.grad.numpy(), w.numpy(), rtol=1e-12, atol=1e-30)


def test_agc_units_of_a_conv_weight_are_output_channels():
    conv = torch.nn.Conv2d(3, 5, 3).double()
    g = torch.randn(5, 3, 3, 3, dtype=torch.float64) * 10
    want = _timm_agc([g], [conv.weight.detach()], 0.01)[0]
    AGC(0.01).clip_([g], [conv.weight])
    np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-12)
    np.testing.assert_allclose(fastclip.unitwise_norms(conv.weight.detach()),
                               conv.weight.detach().flatten(1).norm(dim=1).numpy(), rtol=1e-12)


def test_unitwise_norms_of_tensors():
    w = torch.randn(4, 7, dtype=torch.float64)
    b = torch.randn(4)
    out = fastclip.unitwise_norms([w, b])
    assert isinstance(out, list) and all(isinstance(o, np.ndarray) for o in out)
    np.testing.assert_allclose(out[0], w.norm(dim=1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(out[1], [float(b.double().norm())], rtol=1e-6)
    single = fastclip.unitwise_norms(w)
    np.testing.assert_array_equal(single, out[0])
    d = fastclip.unitwise_norms({"w": w, "b": b})
    np.testing.assert_array_equal(d["w"], out[0])
    with pytest.raises(TypeError, match=r"^x\[0\] is a parameter"):
        fastclip.unitwise_norms([torch.nn.Parameter(w)])
    with pytest.raises(TypeError, match=r"^x\[1\] is a torch tensor of dtype torch.int32"):
        fastclip.unitwise_norms([w, torch.ones(3, dtype=torch.int32)])


@pytest.mark.parametrize("make", [lambda: AutoClip(percentile=0.0),
                                  lambda: ZClip(warmup_steps=1, max_grad_norm=0.5)])
def test_call_on_tensors_returns_tensors_and_leaves_inputs(make):
    ours, twin = make(), make()
    gen = torch.Generator().manual_seed(0)
    for scale in [1.0, 20.0]:
        ts = [torch.randn(3, 2, generator=gen, dtype=torch.float64) * scale,
              torch.randn(4, generator=gen) * scale]
        orig = [t.clone() for t in ts]
        out = ours(ts)
        want = twin([t.numpy() for t in ts])
        assert isinstance(out, list) and len(out) == 2
        for o, w, t, t0 in zip(out, want, ts, orig):
            assert type(o) is torch.Tensor and o.dtype == t.dtype and not o.requires_grad
            assert o.data_ptr() != t.data_ptr()
            np.testing.assert_array_equal(o.numpy(), w)
            assert torch.equal(t, t0)
    assert ours.last_clipped == 1
    one = ours(torch.full((3,), 50.0))
    assert type(one) is torch.Tensor and one.shape == (3,)
    mixed = ours({"a": torch.full((2,), 30.0), "b": np.full(2, 40.0)})
    assert type(mixed["a"]) is torch.Tensor and type(mixed["b"]) is np.ndarray


def test_agc_call_on_tensors():
    net = _model()
    _backward(net, 2, 80.0)
    grads = [p.grad.detach().clone() for p in net.parameters()]
    vals = [p.detach() for p in net.parameters()]
    out = AGC(0.02)(grads, net.parameters())
    for o, w in zip(out, _timm_agc(grads, vals, 0.02)):
        assert type(o) is torch.Tensor
        np.testing.assert_allclose(o.numpy(), w.numpy(), rtol=1e-12, atol=1e-30)
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads))
    with pytest.raises(TypeError, match=r"^grads\[0\] is a parameter"):
        AGC(0.02)(list(net.parameters()))


def _state(net, clipper):
    return ([p.grad.clone() for p in net.parameters()], _versions(net),
            repr(clipper.state_dict()), clipper.last_norm)


def _same(a, b):
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    assert a[1:3] == b[1:3]
    assert a[3] == b[3] or (math.isnan(a[3]) and math.isnan(b[3]))


BAD = [
    ("float16", lambda net: [net[0].weight.grad, torch.ones(3, dtype=torch.float16)],
     TypeError, r"grads\[1\] is a torch tensor of dtype torch.float16"),
    ("int", lambda net: [torch.ones(3, dtype=torch.int64)],
     TypeError, r"grads\[0\] is a torch tensor of dtype torch.int64"),
    ("meta", lambda net: [torch.ones(3, device="meta")],
     TypeError, r"grads\[0\] is a torch tensor on device meta"),
    ("sparse", lambda net: [torch.ones(3).to_sparse()],
     TypeError, r"grads\[0\] is a torch tensor with layout torch.sparse_coo"),
    ("mixed", lambda net: [net[0].weight, np.ones(3)],
     TypeError, r"grads mixes parameters \(grads\[0\]\) and plain arrays \(grads\[1\]\)"),
    ("shared", lambda net: [net[0].weight.grad, net[0].weight.grad[0]],
     ValueError, r"grads\[0\] and grads\[1\] share memory"),
]


@pytest.mark.parametrize("make", [lambda: AutoClip(percentile=0.0),
                                  lambda: ZClip(warmup_steps=1, max_grad_norm=0.1),
                                  lambda: AGC(0.001)])
@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_torch_input_names_the_argument_and_modifies_nothing(make, case):
    _, build, exc, msg = case
    net = _model()
    _backward(net, 0, 100.0)
    clipper = make()
    clipper.clip_([np.full(3, 1e-3)], [np.ones(3)] if isinstance(clipper, AGC) else None)
    bad = build(net)
    params = None
    if isinstance(clipper, AGC) and not any(isinstance(x, torch.nn.Parameter) for x in bad):
        params = [torch.ones(x.shape) if isinstance(x, torch.Tensor) and x.layout == torch.strided
                  and x.device.type == "cpu" else x for x in bad]
    before = _state(net, clipper)
    with pytest.raises(exc, match=msg):
        clipper.clip_(bad, params)
    _same(_state(net, clipper), before)


def test_agc_torch_gradient_with_ndarray_parameter_is_a_type_error():
    g = torch.full((3, 2), 100.0)
    with pytest.raises(TypeError, match=r"^grads\[0\] is a torch tensor but params\[0\] is "
                                        r"not"):
        AGC().clip_([g], [np.ones((3, 2))])
    with pytest.raises(TypeError, match=r"^params is a torch tensor but grads is not"):
        fastclip.adaptive_grad_clip_(np.full((3, 2), 100.0), torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"^params\[0\] has shape \(2, 3\) but grads\[0\] has "
                                         r"shape \(3, 2\)"):
        AGC().clip_([g], [torch.ones(2, 3)])
    with pytest.raises(ValueError, match="params is required"):
        AGC().clip_([g])
    with pytest.raises(TypeError, match=r"^params must be a numpy.ndarray or an iterable"):
        fastclip.adaptive_grad_clip_([g], None)
    assert (g == 100.0).all()


def test_no_write_no_version_bump_and_inference_tensors():
    net = _model()
    _backward(net, 0, 1e-3)
    before = _versions(net)
    big = AutoClip()
    big.clip_([np.full(3, 1e6)])
    big.clip_(net.parameters())  # threshold far above the norm: nothing written
    agc = AGC(10.0)
    agc.clip_(net.parameters())
    assert agc.last_clipped == 0 and big.last_clipped == 0
    assert _versions(net) == before
    with torch.inference_mode():
        t = torch.full((3,), 10.0)
    with pytest.raises(ValueError, match=r"^grads\[0\] is an inference tensor"):
        AutoClip(percentile=0.0).clip_([t])
    assert (t == 10.0).all()


def test_a_saved_gradient_refuses_backward_after_a_clip():
    # autograd learns of the write: a graph that saved the gradient tensor refuses
    g = torch.full((3,), 10.0, requires_grad=False)
    w = torch.ones(3, requires_grad=True)
    y = (w * g).sum()  # saves g
    z = AutoClip(percentile=0.0)
    z.clip_([torch.ones(3)])
    z.clip_([g])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
