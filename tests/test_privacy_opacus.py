"""fastclip's per-example clipping against Opacus 1.6 and torch.func on the same MLP."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastclip
from fastclip import nn

torch = pytest.importorskip("torch")
opacus = pytest.importorskip("opacus")


def _pair(dtype, sizes=(20, 16, 12, 5), seed=0):
    """A fastclip MLP and a torch nn.Sequential with the same weights."""
    m = nn.MLP(list(sizes), activation="relu", dtype=dtype, rng=seed)
    layers = []
    for i in range(len(sizes) - 1):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1])
        layers += [lin, torch.nn.ReLU()] if i < len(sizes) - 2 else [lin]
    t = torch.nn.Sequential(*layers).to(torch.float64 if dtype == np.float64 else torch.float32)
    sd = m.state_dict()
    names = m.parameter_names()
    lins = [mod for mod in t if isinstance(mod, torch.nn.Linear)]
    with torch.no_grad():
        for k, lin in enumerate(lins):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(sd[names[2 * k]].T)))
            lin.bias.copy_(torch.from_numpy(sd[names[2 * k + 1]]))
    return m, t


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("impl", ["c", "python"])
def test_summed_clipped_gradients_equal_opacus(dtype, tol, impl):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    rng = np.random.default_rng(1)
    b, c = 24, 0.05
    X = rng.standard_normal((b, 20)).astype(dtype)
    y = rng.integers(0, 5, b)
    m, t = _pair(dtype)
    gsm = GradSampleModule(t)
    opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.0), noise_multiplier=0.0,
                      max_grad_norm=c, expected_batch_size=b)
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(gsm(torch.from_numpy(X)), torch.from_numpy(y))
    with warnings.catch_warnings():  # torch: full backward hook without input gradients
        warnings.simplefilter("ignore")
        loss.backward()
        opt.pre_step()  # clip, sum, add (zero) noise and divide by expected_batch_size
    want = []
    for p in gsm.parameters():
        g = p.grad.detach().numpy() * b  # back to the sum of clipped gradients
        want.append(g.T if g.ndim == 2 else g)

    with fastclip.use_implementation(impl):
        _, d = nn.softmax_cross_entropy(m.forward(X), y)
        m.backward(d, per_example_clip=c, input_grad=False)
        got = m.gradients()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


def test_per_example_norms_equal_torch_func_vmap():
    from torch.func import functional_call, grad, vmap

    rng = np.random.default_rng(2)
    X = rng.standard_normal((16, 20))
    y = rng.integers(0, 5, 16)
    m, t = _pair(np.float64)
    params = {k: v.detach() for k, v in t.named_parameters()}

    def loss_one(p, x, target):
        out = functional_call(t, p, (x[None],))
        return torch.nn.functional.cross_entropy(out, target[None])

    per = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, torch.from_numpy(X),
                                                     torch.from_numpy(y))
    norms = torch.sqrt(sum((g.reshape(16, -1) ** 2).sum(1) for g in per.values())).numpy()
    _, d = nn.softmax_cross_entropy(m.forward(X), y)
    m.backward(d, per_example_clip=1.0)
    np.testing.assert_allclose(m.per_example_norms(), norms, rtol=1e-12)
