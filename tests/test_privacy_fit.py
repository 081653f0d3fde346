"""fit(..., privacy=DPConfig(...)): DP-SGD training with Poisson sampling and accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastclip
from fastclip import nn
from fastclip import privacy as P

pytest.importorskip("dp_accounting")


def _data(n=120, d=8, k=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    w = rng.standard_normal((d, k))
    y = np.argmax(X @ w, axis=1)
    return X, y


def _fit(privacy, seed=0, epochs=3, dtype=np.float64, **kw):
    X, y = _data(dtype=dtype)
    m = nn.MLP([8, 16, 3], dtype=dtype, rng=1)
    opt = fastclip.optim.SGD(m.parameters(), lr=0.3)
    h = fastclip.fit(m, X, y, optimizer=opt, epochs=epochs, batch_size=20, seed=seed,
                     progress=False, privacy=privacy, **kw)
    return m, h


def test_epsilon_per_epoch_equals_the_accountant():
    cfg = P.DPConfig(max_grad_norm=1.0, noise_multiplier=1.2, delta=1e-3)
    _, h = _fit(cfg)
    q = 20 / 120
    steps = round(1 / q)
    assert h.n_steps == 3 * steps
    want = [P.compute_epsilon(noise_multiplier=1.2, sample_rate=q, steps=steps * (e + 1),
                              delta=1e-3) for e in range(3)]
    np.testing.assert_allclose(h.epsilon, want, rtol=1e-12)
    assert np.all(np.diff(h.epsilon) > 0)
    assert "epsilon" in h.to_dict()
    assert h.privacy == {"noise_multiplier": 1.2, "sample_rate": q, "max_grad_norm": 1.0,
                         "delta": 1e-3, "accountant": "rdp", "expected_batch_size": 20,
                         "steps": 3 * steps, "epsilon_spent": h.epsilon[-1]}
    _, plain = _fit(None)
    assert plain.privacy is None and np.all(np.isnan(plain.epsilon))


def test_target_epsilon_is_met_and_runs_are_reproducible():
    cfg = P.DPConfig(max_grad_norm=0.5, target_epsilon=4.0, delta=1e-3)
    m1, h1 = _fit(cfg, seed=7)
    m2, h2 = _fit(cfg, seed=7)
    assert 4.0 - 0.011 <= h1.epsilon[-1] <= 4.0
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h1.loss, h2.loss)
    m3, _ = _fit(cfg, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(m1.parameters(), m3.parameters()))


def test_without_noise_or_clipping_it_is_full_batch_gradient_descent():
    X, y = _data()
    cfg = P.DPConfig(max_grad_norm=1e12, noise_multiplier=0.0, sample_rate=1.0)
    m1 = nn.MLP([8, 16, 3], dtype=np.float64, rng=1)
    fastclip.fit(m1, X, y, optimizer=fastclip.optim.SGD(m1.parameters(), lr=0.3), epochs=4,
                 batch_size=120, seed=0, progress=False, privacy=cfg)
    m2 = nn.MLP([8, 16, 3], dtype=np.float64, rng=1)
    fastclip.fit(m2, X, y, optimizer=fastclip.optim.SGD(m2.parameters(), lr=0.3), epochs=4,
                 batch_size=120, seed=0, progress=False)
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_empty_poisson_batches_are_noise_only_steps():
    cfg = P.DPConfig(max_grad_norm=1.0, noise_multiplier=1.0, sample_rate=0.01)
    m, h = _fit(cfg, epochs=1)
    assert h.n_steps == 100
    assert np.isnan(h.loss).any() and np.isfinite(h.loss).any()
    assert all(np.all(np.isfinite(p)) for p in m.parameters())
    assert math.isfinite(h.epoch_loss[0])


def test_learning_happens_under_privacy():
    X, y = _data(n=600)
    m = nn.MLP([8, 32, 3], dtype=np.float32, rng=3)
    h = fastclip.fit(m, X.astype(np.float32), y, optimizer=fastclip.optim.SGD(
        m.parameters(), lr=0.5), epochs=6, batch_size=60, seed=0, progress=False,
        validation=(X.astype(np.float32), y),
        privacy=P.DPConfig(max_grad_norm=1.0, noise_multiplier=0.8))
    assert h.val_accuracy[-1] > 0.6 > 1 / 3
    assert h.epsilon[-1] < 20


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(max_grad_norm=0.0, noise_multiplier=1.0), ValueError, "max_grad_norm"),
        (dict(max_grad_norm=float("nan"), noise_multiplier=1.0), ValueError, "max_grad_norm"),
        (dict(max_grad_norm=1.0, noise_multiplier=-1.0), ValueError, "noise_multiplier"),
        (dict(max_grad_norm=1.0, noise_multiplier=1.0, delta=0.0), ValueError, "delta"),
        (dict(max_grad_norm=1.0, noise_multiplier=1.0, delta=1.5), ValueError, "delta"),
        (dict(max_grad_norm=1.0, noise_multiplier=1.0, sample_rate=0.0), ValueError,
         "sample_rate"),
        (dict(max_grad_norm=1.0, noise_multiplier=1.0, sample_rate=2.0), ValueError,
         "sample_rate"),
        (dict(max_grad_norm=1.0), ValueError, "noise_multiplier and target_epsilon"),
        (dict(max_grad_norm=1.0, noise_multiplier=1.0, target_epsilon=1.0), ValueError,
         "noise_multiplier and target_epsilon"),
        (dict(max_grad_norm=1.0, noise_multiplier=1.0, accountant="prv"), ValueError,
         "accountant"),
        (dict(max_grad_norm=1.0, noise_multiplier=1.0, per_layer="all"), ValueError,
         "per_layer"),
    ],
)
def test_bad_config(kw, exc, match):
    with pytest.raises(exc, match=match):
        P.DPConfig(**kw)


def test_bad_combinations_modify_nothing():
    X, y = _data()
    m = nn.MLP([8, 16, 3], dtype=np.float64, rng=1)
    before = [p.data.copy() for p in m.parameters()]
    cfg = P.DPConfig(max_grad_norm=1.0, noise_multiplier=1.0)
    with pytest.raises(TypeError, match="privacy"):
        fastclip.fit(m, X, y, epochs=1, progress=False, privacy={"max_grad_norm": 1.0})
    with pytest.raises(ValueError, match="clipper"):
        fastclip.fit(m, X, y, epochs=1, progress=False, privacy=cfg, clipper="autoclip")

    class NoPerExample:
        dtype = np.float64

        def forward(self, x):
            return m.forward(x)

        def backward(self, d):
            return m.backward(d)

        def parameters(self):
            return m.parameters()

        def gradients(self):
            return m.gradients()

        def grad_sqnorms(self):
            return m.grad_sqnorms()

    with pytest.raises(TypeError, match="per_example_clip"):
        fastclip.fit(NoPerExample(), X, y, epochs=1, progress=False, privacy=cfg)
    for p, b in zip(m.parameters(), before):
        np.testing.assert_array_equal(p, b)



def test_training_stopped_inside_an_epoch_reports_every_accounted_step():
    """History.epsilon holds the epochs' ends; a run stopped inside an epoch (here by
    an exception from the loss at its 15th call) records in history.privacy the
    epsilon of every step it took."""
    cfg = P.DPConfig(max_grad_norm=1.0, noise_multiplier=1.0, delta=1e-5)
    X, y = _data(n=200)
    m = nn.MLP([8, 16, 3], rng=1)
    calls = [0]

    def loss(out, target):
        calls[0] += 1
        if calls[0] == 15:
            raise KeyboardInterrupt
        return nn.softmax_cross_entropy(out, target)

    with pytest.raises(KeyboardInterrupt) as info:
        fastclip.fit(m, X.astype(np.float32), y, epochs=3, batch_size=20, seed=0,
                     progress=False, privacy=cfg, loss=loss, classification=True)
    h = info.value.history
    assert h.privacy["steps"] == 14 == h.n_steps
    want = P.compute_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=14, delta=1e-5)
    assert h.privacy["epsilon_spent"] == pytest.approx(want, rel=1e-12)
    assert list(h.epsilon) == [pytest.approx(P.compute_epsilon(
        noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=1e-5), rel=1e-12)]


def test_secure_mode_draws_the_batches_from_the_os():
    """With secure_mode the Poisson batches come from the operating system's CSPRNG,
    not from the seed: two runs with one seed draw different batches; the rate is q."""
    s1 = P.PoissonSampler(1000, 0.1, rng=0, secure_mode=True)
    s2 = P.PoissonSampler(1000, 0.1, rng=0, secure_mode=True)
    a = [s1.sample() for _ in range(20)]
    b = [s2.sample() for _ in range(20)]
    assert any(len(x) != len(z) or (x != z).any() for x, z in zip(a, b))
    assert 70 < np.mean([len(x) for x in a + b]) < 130
    seeded = [P.PoissonSampler(1000, 0.1, rng=0).sample() for _ in range(2)]
    assert np.array_equal(seeded[0], seeded[1])
    with pytest.raises(TypeError, match="secure_mode"):
        P.PoissonSampler(10, 0.5, secure_mode="yes")


def test_the_monitor_never_sees_the_batch_loss_under_privacy():
    """A DP-SGD step is skipped or applied from the noised gradients alone: an example
    whose loss overflows (while its clipped gradient is bounded) does not make the
    steps whose batch holds it stand out."""
    X, _ = _data()
    t = X[:, :2].copy()
    t[7, 0] = 1e200  # its squared error overflows; its clipped gradient does not
    m = nn.MLP([8, 16, 2], dtype=np.float64, rng=1)
    h = fastclip.fit(m, X, t, loss="mse", optimizer=fastclip.optim.SGD(m.parameters(), lr=0.1),
                     epochs=2, batch_size=20, seed=0, progress=False, monitor="skip",
                     privacy=P.DPConfig(max_grad_norm=1.0, noise_multiplier=1.0))
    assert not np.isfinite(h.loss).all()  # the batches holding row 7 were sampled
    assert h.events == [] and h.applied.all()
    assert all(np.isfinite(p.data).all() for p in m.parameters())


@pytest.mark.parametrize("kw,layer,what", [({"batchnorm": True}, "0.bn", "batch normalisation"),
                                           ({"dropout": 0.2}, "0", "dropout")])
def test_models_without_a_per_example_path_are_refused_before_training(kw, layer, what):
    """fit(privacy=...) refuses batch norm and dropout before the first batch reaches
    the model (the running statistics would otherwise hold non-private values),
    naming the layer, as backward(per_example_clip=...) does."""
    X, y = _data()
    m = nn.MLP([8, 16, 3], rng=1, **kw)
    bufs = [b.copy() for _, b in m.named_buffers()]
    vals = [p.data.copy() for p in m.parameters()]
    msg = f"layer '{layer}' is {what}"
    with pytest.raises(ValueError, match=msg):
        fastclip.fit(m, X, y, epochs=1, progress=False,
                     privacy=P.DPConfig(max_grad_norm=1.0, noise_multiplier=1.0))
    assert all(np.array_equal(a, b) for a, (_, b) in zip(bufs, m.named_buffers()))
    assert all(np.array_equal(a, p.data) for a, p in zip(vals, m.parameters()))
    out = m.forward(X[:4].astype(np.float32))
    with pytest.raises(ValueError, match=msg):
        m.backward(np.ones_like(out), per_example_clip=1.0)


def test_backward_checks_loss_reduction_on_every_path():
    m = nn.MLP([8, 4, 3], rng=1)
    out = m.forward(_data(dtype=np.float32)[0][:5])
    for kw in ({}, {"per_example_clip": 1.0}):
        with pytest.raises(ValueError, match="loss_reduction"):
            m.backward(np.ones_like(out), loss_reduction="bogus", **kw)
