"""BatchNorm1d, Dropout, Sigmoid, Tanh (standalone and inside MLP) against PyTorch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastclip
from fastclip import nn

IMPLS = ["c", "python"]
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _t(a):
    return torch.from_numpy(np.array(a, copy=True))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.37, None])
def test_batchnorm_matches_torch_over_steps(impl, affine, track, momentum):
    rng = np.random.default_rng(5)
    c = 7
    with fastclip.use_implementation(impl):
        bn = nn.BatchNorm1d(c, eps=1e-4, momentum=momentum, affine=affine,
                            track_running_stats=track, dtype=np.float64)
        tb = torch.nn.BatchNorm1d(c, eps=1e-4, momentum=momentum, affine=affine,
                                  track_running_stats=track, dtype=torch.float64)
        if affine:
            bn.weight[...] = rng.standard_normal(c)
            bn.bias[...] = rng.standard_normal(c)
            with torch.no_grad():
                tb.weight.copy_(_t(bn.weight))
                tb.bias.copy_(_t(bn.bias))
        for step in range(6):
            n = 5 + step
            x = rng.standard_normal((n, c)) * 3 + rng.standard_normal(c)
            dy = rng.standard_normal((n, c))
            xt = _t(x).requires_grad_(True)
            yt = tb(xt)
            yt.backward(_t(dy))
            y = bn(x)
            np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
            dx = bn.backward(dy)
            np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
            if affine:
                np.testing.assert_allclose(bn.gradients()[0], tb.weight.grad.numpy(), **TOL)
                np.testing.assert_allclose(bn.gradients()[1], tb.bias.grad.numpy(), **TOL)
                want = [float((tb.weight.grad ** 2).sum()), float((tb.bias.grad ** 2).sum())]
                np.testing.assert_allclose(bn.grad_sqnorms(), want, rtol=1e-10)
                tb.weight.grad = tb.bias.grad = None
            if track:
                np.testing.assert_allclose(bn.running_mean, tb.running_mean.numpy(), **TOL)
                np.testing.assert_allclose(bn.running_var, tb.running_var.numpy(), **TOL)
                assert int(bn.num_batches_tracked) == int(tb.num_batches_tracked) == step + 1
        # evaluation mode: the running estimates (or batch statistics without them)
        assert bn.eval() is bn
        tb.eval()
        x = rng.standard_normal((4, c))
        dy = rng.standard_normal((4, c))
        xt = _t(x).requires_grad_(True)
        yt = tb(xt)
        yt.backward(_t(dy))
        np.testing.assert_allclose(bn(x), yt.detach().numpy(), **TOL)
        np.testing.assert_allclose(bn.backward(dy), xt.grad.numpy(), **TOL)
        if affine:
            np.testing.assert_allclose(bn.gradients()[0], tb.weight.grad.numpy(), **TOL)
            np.testing.assert_allclose(bn.gradients()[1], tb.bias.grad.numpy(), **TOL)
        if track:
            assert int(bn.num_batches_tracked) == 6  # eval does not count


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9, 1.0])
def test_dropout_matches_torch_under_the_same_mask(impl, p):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 13))
    dy = rng.standard_normal((9, 13))
    with fastclip.use_implementation(impl):
        d = nn.Dropout(p, rng=3)
        y = d(x)
        dx = d.backward(dy)
    mask = np.ones_like(x, dtype=bool) if p == 0 else np.asarray(d.mask)
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    # aten's dropout under a given mask: output = input * mask * scale
    xt = _t(x).requires_grad_(True)
    yt = torch.ops.aten.native_dropout_backward(xt, _t(mask), scale)
    yt.backward(_t(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    if 0 < p < 1:
        # torch's own Dropout: the same expected output, elements are x / (1-p) or 0
        torch.manual_seed(0)
        yt2 = torch.nn.Dropout(p)(_t(x)).numpy()
        kept = yt2 != 0
        np.testing.assert_allclose(yt2[kept], (x * scale)[kept], **TOL)
        np.testing.assert_allclose(y[mask], (x * scale)[mask], **TOL)
        assert not y[~mask].any()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["Sigmoid", "Tanh"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_standalone_activations_match_torch(impl, name, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((8, 11)) * 6).astype(dtype)
    x[0, :4] = [0.0, 800.0, -800.0, -30.0]
    dy = rng.standard_normal((8, 11)).astype(dtype)
    # float32: 1 - y**2 near saturation loses digits to the rounding of y (both sides)
    tol = TOL if dtype == np.float64 else {"rtol": 1e-6, "atol": 2e-6}
    with fastclip.use_implementation(impl):
        layer = getattr(nn, name)()
        y = layer(x)
        dx = layer.backward(dy)
    xt = _t(x).requires_grad_(True)
    yt = getattr(torch.nn, name)()(xt)
    yt.backward(_t(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)


def _torch_stack(model, act, slope, masks, p):
    """torch layers equal to ``model`` (MLP with batchnorm and/or dropout)."""
    dt = torch.float64
    ps = [q.data for q in model.parameters()]
    names = model.parameter_names()
    get = dict(zip(names, ps))
    layers = []
    n_lin = len(model.sizes) - 1
    drop_i = 0
    for i in range(n_lin):
        lin = torch.nn.Linear(model.sizes[i], model.sizes[i + 1], dtype=dt)
        with torch.no_grad():
            lin.weight.copy_(_t(get[f"{i}.weight"].T))
            lin.bias.copy_(_t(get[f"{i}.bias"]))
        layers.append(lin)
        if i == n_lin - 1:
            break
        if model.batchnorm:
            bn = torch.nn.BatchNorm1d(model.sizes[i + 1], dtype=dt)
            with torch.no_grad():
                bn.weight.copy_(_t(get[f"{i}.bn.weight"]))
                bn.bias.copy_(_t(get[f"{i}.bn.bias"]))
            layers.append(bn)
        layers.append({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(),
                       "sigmoid": torch.nn.Sigmoid(),
                       "leaky_relu": torch.nn.LeakyReLU(slope)}[act])
        if p > 0:
            layers.append(_MaskedDropout(masks, drop_i, p))
            drop_i += 1
    return torch.nn.Sequential(*layers)


class _MaskedDropout(torch.nn.Module):
    """torch's dropout (aten.native_dropout_backward is input * mask * scale)
    under the masks fastclip drew."""

    def __init__(self, masks, i, p):
        super().__init__()
        self.masks, self.i, self.p = masks, i, p

    def forward(self, x):
        if not self.training:
            return x
        return torch.ops.aten.native_dropout_backward(x, _t(self.masks[self.i]),
                                                      1.0 / (1.0 - self.p))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("batchnorm,p", [(True, 0.0), (False, 0.25), (True, 0.4)])
def test_mlp_with_batchnorm_dropout_matches_torch_over_sgd_steps(impl, act, batchnorm, p):
    rng = np.random.default_rng(9)
    lr = 0.05
    with fastclip.use_implementation(impl):
        m = nn.MLP([6, 10, 8, 4], activation=act, negative_slope=0.1, batchnorm=batchnorm,
                   dropout=p, dtype=np.float64, rng=2)
        drops = [blk for blk in m._blocks if type(blk).__name__ == "_DropoutLayer"]
        masks: list = [None] * len(drops)
        tm = _torch_stack(m, act, 0.1, masks, p)
        tparams = {n: prm for n, prm in tm.named_parameters()}
        for step in range(5):
            x = rng.standard_normal((12, 6))
            lab = rng.integers(0, 4, size=12)
            y = m(x)
            for k, d in enumerate(drops):
                masks[k] = d.mask
            xt = _t(x).requires_grad_(True)
            yt = tm(xt)
            lt = torch.nn.CrossEntropyLoss()(yt, torch.from_numpy(lab))
            lt.backward()
            np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
            _, dl = nn.softmax_cross_entropy(y, lab)
            dx = m.backward(dl)
            np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
            tgrads = [prm.grad.numpy() for prm in tparams.values()]
            ours = m.gradients()
            assert len(ours) == len(tgrads)
            for g, gt in zip(ours, tgrads):
                np.testing.assert_allclose(g, gt.T if g.ndim == 2 else gt, **TOL)
            want = sum(float((prm.grad ** 2).sum()) for prm in tparams.values())
            np.testing.assert_allclose(m.grad_sqnorms().sum(), want, rtol=1e-10)
            with torch.no_grad():
                for prm in tparams.values():
                    prm -= lr * prm.grad
                    prm.grad = None
            for prm, g in zip([q.data for q in m.parameters()], m.gradients()):
                prm -= lr * g
        bns = [mod for mod in tm if isinstance(mod, torch.nn.BatchNorm1d)]
        ours_b = dict(m.named_buffers())
        for i, tbn in zip([0, 1], bns):
            np.testing.assert_allclose(ours_b[f"{i}.bn.running_mean"], tbn.running_mean, **TOL)
            np.testing.assert_allclose(ours_b[f"{i}.bn.running_var"], tbn.running_var, **TOL)
        assert m.eval() is m
        tm.eval()
        x = rng.standard_normal((3, 6))
        np.testing.assert_allclose(m(x), tm(_t(x)).detach().numpy(), **TOL)
