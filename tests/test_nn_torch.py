"""fastclip.nn against PyTorch autograd: same weights, same data."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastclip
from fastclip import nn

ACTS = ["identity", "relu", "leaky_relu", "prelu", "sigmoid", "tanh"]

def _vals(model):
    """The value arrays of a model's parameters."""
    return [getattr(p, "data", p) if not isinstance(p, np.ndarray) else p
            for p in model.parameters()]



def torch_mlp(model, act, slope):
    """nn.Sequential with the weights of ``model`` (transposed to (out, in))."""
    sizes = model.sizes
    params = _vals(model)
    dt = torch.float64 if model.dtype == np.float64 else torch.float32
    layers, k = [], 0
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1], dtype=dt)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(params[k].T.copy()))
            lin.bias.copy_(torch.from_numpy(params[k + 1]))
        k += 2
        layers.append(lin)
        if i < len(sizes) - 2:
            if act == "relu":
                layers.append(torch.nn.ReLU())
            elif act == "leaky_relu":
                layers.append(torch.nn.LeakyReLU(slope))
            elif act == "sigmoid":
                layers.append(torch.nn.Sigmoid())
            elif act == "tanh":
                layers.append(torch.nn.Tanh())
            elif act == "prelu":
                pr = torch.nn.PReLU(init=slope, dtype=dt)
                with torch.no_grad():
                    pr.weight.copy_(torch.from_numpy(params[k]))
                k += 1
                layers.append(pr)
    return torch.nn.Sequential(*layers)


def torch_grads(tm, act):
    out = []
    for layer in tm:
        if isinstance(layer, torch.nn.Linear):
            out += [layer.weight.grad.numpy().T, layer.bias.grad.numpy()]
        elif isinstance(layer, torch.nn.PReLU):
            out.append(layer.weight.grad.numpy())
    return out


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["xent", "xent_prob", "mse"])
def test_mlp_matches_torch_autograd(impl, act, dtype, loss):
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    atol = 1e-12 if dtype == np.float64 else 1e-6
    rng = np.random.default_rng(11)
    slope = 0.15
    with fastclip.use_implementation(impl):
        m = nn.MLP([12, 16, 9, 5], activation=act, negative_slope=slope, dtype=dtype, rng=4)
        for b in _vals(m)[1::2]:
            if b.ndim == 1 and b.shape != (1,):
                b[...] = rng.standard_normal(b.shape) * 0.1
        x = rng.standard_normal((10, 12)).astype(dtype)
        tm = torch_mlp(m, act, slope)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        yt = tm(xt)
        if loss == "xent":
            lab = rng.integers(0, 5, size=10)
            lt = torch.nn.CrossEntropyLoss()(yt, torch.from_numpy(lab))
        elif loss == "xent_prob":
            lab = rng.dirichlet(np.ones(5), size=10).astype(dtype)
            lt = torch.nn.CrossEntropyLoss()(yt, torch.from_numpy(lab))
        else:
            lab = rng.standard_normal((10, 5)).astype(dtype)
            lt = torch.nn.MSELoss()(yt, torch.from_numpy(lab))
        lt.backward()
        y = m(x)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
        lv, dl = nn.mse(y, lab) if loss == "mse" else nn.softmax_cross_entropy(y, lab)
        assert math.isclose(lv, lt.item(), rel_tol=rtol, abs_tol=atol)
        dx = m.backward(dl)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol)
        for g, gt in zip(m.gradients(), torch_grads(tm, act), strict=True):
            assert g.shape == gt.shape
            np.testing.assert_allclose(g, gt, rtol=rtol, atol=atol)


@pytest.mark.parametrize("impl", ["c", "python"])
def test_activation_derivative_at_zero_matches_torch(impl):
    x = np.array([[-1.0, 0.0, 1.0]])
    for act, tmod in [("relu", torch.nn.ReLU()), ("leaky_relu", torch.nn.LeakyReLU(0.1))]:
        with fastclip.use_implementation(impl):
            lin = nn.Linear(3, 3, act, negative_slope=0.1, dtype=np.float64)
            lin.weight[...] = np.eye(3)
            lin(x)
            dx = lin.backward(np.ones((1, 3)))
        xt = torch.tensor(x, requires_grad=True)
        tmod(xt).sum().backward()
        np.testing.assert_array_equal(dx, xt.grad.numpy())


@pytest.mark.parametrize("impl", ["c", "python"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_match_torch(impl, dtype):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((64, 10)) * 20).astype(dtype)
    lab = rng.integers(0, 10, size=64)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    with fastclip.use_implementation(impl):
        loss, g = nn.softmax_cross_entropy(logits, lab)
        lt = torch.from_numpy(logits).requires_grad_(True)
        ref = torch.nn.CrossEntropyLoss()(lt, torch.from_numpy(lab))
        ref.backward()
        assert math.isclose(loss, ref.item(), rel_tol=rtol)
        np.testing.assert_allclose(g, lt.grad.numpy(), rtol=rtol, atol=1e-7)
        onehot = np.eye(10, dtype=dtype)[lab]
        loss2, g2 = nn.softmax_cross_entropy(logits, onehot)
        assert math.isclose(loss2, loss, rel_tol=1e-12 if dtype == np.float64 else 1e-6)
        np.testing.assert_allclose(g2, g, rtol=rtol, atol=1e-7)
        target = rng.standard_normal((64, 10)).astype(dtype)
        loss3, g3 = nn.mse(logits, target)
        lt2 = torch.from_numpy(logits).requires_grad_(True)
        ref3 = torch.nn.MSELoss()(lt2, torch.from_numpy(target))
        ref3.backward()
        assert math.isclose(loss3, ref3.item(), rel_tol=rtol)
        np.testing.assert_allclose(g3, lt2.grad.numpy(), rtol=rtol, atol=1e-9)


def test_initialisers_match_torch_formulas():
    # fastclip's (in, out) weight is torch's (out, in) transposed: same fans.
    w = torch.empty(300, 400, dtype=torch.float64)
    bounds = {
        "xavier_uniform": lambda: torch.nn.init.xavier_uniform_(w, gain=1.3),
        "he_uniform": lambda: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    }
    for name, fn in bounds.items():
        fn()
        tb = w.abs().max().item()
        gain = 1.3 if name.startswith("xavier") else 1.0
        ours = getattr(nn, name)((400, 300), 0, gain=gain, dtype=np.float64)
        assert abs(np.abs(ours).max() - tb) / tb < 0.01
    torch.nn.init.kaiming_normal_(w, nonlinearity="relu")
    ours = nn.he_normal((400, 300), 0, dtype=np.float64)
    assert abs(ours.std() - w.std().item()) / w.std().item() < 0.02
    torch.nn.init.xavier_normal_(w)
    ours = nn.xavier_normal((400, 300), 0, dtype=np.float64)
    assert abs(ours.std() - w.std().item()) / w.std().item() < 0.02


def test_from_torch_state_dict_orders_sequential_modules_by_index():
    """Keys sorted as strings put "10.weight" before "2.weight": the layers still load
    in nn.Sequential's order, giving torch's outputs."""
    tm = torch.nn.Sequential(*[m for _ in range(6)
                               for m in (torch.nn.Linear(4, 4), torch.nn.ReLU())][:-1])
    sd = {k: v.detach() for k, v in sorted(tm.state_dict().items())}
    assert list(sd)[2] == "10.bias"
    m = nn.MLP.from_torch_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(m.forward(x), tm(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_from_torch_state_dict_names_the_key_of_an_unreadable_tensor():
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    sd = tm.state_dict()
    with pytest.raises(TypeError, match=r"state_dict\['0.weight'\] cannot be read"):
        nn.MLP.from_torch_state_dict({k: v.bfloat16() for k, v in sd.items()})
    with pytest.raises(TypeError, match=r"state_dict\['0.weight'\] has dtype float16"):
        nn.MLP.from_torch_state_dict({k: v.half() for k, v in sd.items()})
    m = nn.MLP.from_torch_state_dict({k: v.half() for k, v in sd.items()}, dtype=np.float32)
    assert m.dtype == np.float32
