"""fastclip.train: fit, History, GradientMonitor and the explosion policies."""

import math

import numpy as np
import pytest
from _fake_model import FakeMLP, mse, softmax_cross_entropy

from fastclip import AGC, AutoClip, ZClip
from fastclip.nn import MLP
from fastclip.optim import SGD, Adam
from fastclip.train import Event, GradientExplosionError, GradientMonitor, History, fit


def _vals(model):
    """The value arrays of a model's parameters."""
    return [getattr(p, "data", p) if not isinstance(p, np.ndarray) else p
            for p in model.parameters()]



def blobs(n=240, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return centers[y] + rng.standard_normal((n, d)), y


class Exploder:
    """Wraps a model: from step `at` on, its gradients (and grad_sqnorms) are scaled."""

    def __init__(self, model, at, factor=1e4, nan=False, until=None):
        self.m, self.at, self.factor, self.nan, self.until = model, at, factor, nan, until
        self.calls = 0
        self.dtype = model.dtype

    def __getattr__(self, name):
        return getattr(self.m, name)

    def backward(self, dy):
        out = self.m.backward(dy)
        if self.calls >= self.at and (self.until is None or self.calls < self.until):
            g = self.m.gradients()[2]
            if self.nan:
                g[0, 0] = np.nan
            else:
                g *= self.factor
            self.m._sq[2] = float(np.sum(g.astype(np.float64) ** 2))
        self.calls += 1
        return out


# ---------------------------------------------------------------------------
# fit on the fake model
# ---------------------------------------------------------------------------
def test_fit_trains_and_records_history():
    X, y = blobs()
    m = FakeMLP([6, 16, 3])
    opt = SGD(m.parameters(), lr=0.1)
    h = fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=4, batch_size=32,
            validation=(X, y), seed=0, progress=False)
    steps = 4 * math.ceil(240 / 32)
    assert isinstance(h, History) and h.n_steps == steps and len(h) == steps
    assert np.array_equal(h.step, np.arange(steps))
    assert np.array_equal(np.bincount(h.epoch), [8] * 4)
    assert h.applied.all() and h.n_explosions == 0
    assert h.layer_norms.shape == (steps, 4) and h.layer_names == m.parameter_names()
    np.testing.assert_allclose(h.grad_norm, np.sqrt((h.layer_norms**2).sum(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(h.lr, 0.1)
    assert h.epoch_loss[-1] < h.epoch_loss[0]
    assert h.val_accuracy[-1] > 0.9 and h.n_epochs == 4
    d = h.to_dict()
    assert all(isinstance(v, np.ndarray) for v in d.values())
    assert d["loss"].shape == (steps,) and d["event_step"].shape == (0,)
    df = h.to_pandas()
    assert list(df.columns[:6]) == ["step", "epoch", "loss", "grad_norm", "lr", "applied"]
    assert "norm[0.weight]" in df.columns and len(df) == steps


def test_fit_is_reproducible_with_seed_and_schedule():
    X, y = blobs()
    runs = []
    for _ in range(2):
        m = FakeMLP([6, 8, 3], seed=1)
        opt = SGD(m.parameters(), lr=lambda t: 0.1 / (1 + t))
        runs.append(fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=2,
                        batch_size=50, seed=7, progress=False))
    np.testing.assert_array_equal(runs[0].loss, runs[1].loss)
    np.testing.assert_allclose(runs[0].lr, 0.1 / (1 + np.arange(runs[0].n_steps)))


def test_fit_mse_regression_with_real_mlp():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    m = MLP([3, 16, 1], rng=0)
    h = fit(m, X, y, loss="mse", optimizer=Adam(m.parameters(), lr=0.01), epochs=30,
            batch_size=20, seed=0, progress=False)
    assert h.epoch_loss[-1] < 0.05 * h.epoch_loss[0]


def test_fit_with_real_mlp_classification_default_optimizer():
    X, y = blobs(300, 8, 4)
    m = MLP([8, 32, 32, 4], rng=0)
    h = fit(m, X.astype(np.float32), y, epochs=8, batch_size=32, validation=(X, y), seed=0,
            progress=False)
    assert h.val_accuracy[-1] > 0.9
    # float64 data was cast once to the model's float32
    assert np.isfinite(h.grad_norm).all()


# ---------------------------------------------------------------------------
# policies
# ---------------------------------------------------------------------------
def test_policy_raise_names_step_and_layer():
    X, y = blobs()
    m = Exploder(FakeMLP([6, 16, 3]), at=20)
    opt = SGD(m.parameters(), lr=0.05)
    with pytest.raises(GradientExplosionError) as ei:
        fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=5, batch_size=32,
            monitor="raise", progress=False, seed=0)
    e = ei.value
    assert e.step == 20 and e.layer == "1.weight" and e.event.kind == "spike"
    assert "step 20" in str(e) and "'1.weight'" in str(e)
    import pickle

    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.event == e.event and again.history.n_steps == 21
    h = e.history
    assert h.n_steps == 21 and not h.applied[-1] and h.applied[:-1].all()
    assert h.events == [e.event]


def test_policy_raise_nonfinite_first_layer():
    X, y = blobs()
    m = Exploder(FakeMLP([6, 16, 3]), at=3, nan=True)
    opt = SGD(m.parameters(), lr=0.05)
    with pytest.raises(GradientExplosionError) as ei:
        fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=1, batch_size=32,
            progress=False, monitor="raise")
    assert ei.value.event.kind == "nonfinite" and ei.value.layer == "1.weight"
    assert ei.value.step == 3
    # the flagged gradient never reached the parameters
    assert all(np.isfinite(p).all() for p in _vals(m))


def test_policy_skip_drops_updates_then_gives_up():
    X, y = blobs()
    m = Exploder(FakeMLP([6, 16, 3]), at=12, nan=True, until=15)
    opt = SGD(m.parameters(), lr=0.05)
    h = fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=3, batch_size=32,
            monitor=GradientMonitor("skip", max_consecutive_errors=3), progress=False)
    assert [e.step for e in h.events] == [12, 13, 14]
    assert all(e.action == "skip" for e in h.events)
    assert np.array_equal(np.flatnonzero(~h.applied), [12, 13, 14])
    assert opt.step_count == h.n_steps - 3
    assert all(np.isfinite(p).all() for p in _vals(m))
    # more than max_consecutive_errors in a row: give up
    m2 = Exploder(FakeMLP([6, 16, 3]), at=5, nan=True)
    with pytest.raises(GradientExplosionError, match="gave up after 3 consecutive"):
        fit(m2, X, y, loss=softmax_cross_entropy, optimizer=SGD(m2.parameters(), lr=0.05),
            epochs=3, batch_size=32, monitor=GradientMonitor("skip", max_consecutive_errors=2),
            progress=False)


def test_policy_rollback_restores_params_and_halves_lr():
    X, y = blobs()
    inner = FakeMLP([6, 16, 3])
    m = Exploder(inner, at=9, nan=True, until=10)
    opt = SGD(m.parameters(), lr=0.05, momentum=0.9)
    mon = GradientMonitor("rollback", checkpoint_every=4)
    h = fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=2, batch_size=32,
            monitor=mon, progress=False)
    ev = h.events
    assert len(ev) == 1 and ev[0].action == "rollback" and ev[0].step == 9
    assert opt.lr_scale == pytest.approx(0.5)
    np.testing.assert_allclose(h.lr[:9], 0.05)
    np.testing.assert_allclose(h.lr[10:], 0.025)
    # the steps since the checkpoint (8) were undone: the optimiser state went back too
    assert opt.step_count == h.n_steps - 1 - 1
    assert mon.rollbacks == 1


def test_rollback_restores_exact_checkpoint():
    X, y = blobs()
    # a twin run stopped (policy raise) at step 4 holds the parameters after 4 steps
    twin = FakeMLP([6, 16, 3])
    tw = Exploder(twin, at=4, nan=True)
    topt = SGD(tw.parameters(), lr=0.05, momentum=0.9)
    with pytest.raises(GradientExplosionError):
        fit(tw, X, y, loss=softmax_cross_entropy, optimizer=topt, epochs=1, batch_size=32,
            progress=False, seed=3, monitor="raise")
    inner = FakeMLP([6, 16, 3])
    m = Exploder(inner, at=6, nan=True)
    opt = SGD(m.parameters(), lr=0.05, momentum=0.9)
    mon = GradientMonitor("rollback", checkpoint_every=4, max_rollbacks=1)
    with pytest.raises(GradientExplosionError, match="gave up after 1 rollbacks") as ei:
        fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=1, batch_size=32,
            monitor=mon, progress=False, seed=3)
    # step 6 rolled back to the checkpoint taken after 4 good steps; step 7 was flagged
    # again and the monitor gave up without applying it
    assert [e.action for e in ei.value.history.events] == ["rollback", "gave_up"]
    for p, q in zip(_vals(inner), _vals(twin)):
        np.testing.assert_array_equal(p, q)
    assert opt.step_count == 4 and opt.lr_scale == 0.5
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["momentum_buffer"],
                                  topt.state_dict()["state"][0]["momentum_buffer"])


def test_no_monitor_optimizer_raises_on_nonfinite():
    X, y = blobs()
    m = Exploder(FakeMLP([6, 8, 3]), at=2, nan=True)
    with pytest.raises(FloatingPointError):
        fit(m, X, y, loss=softmax_cross_entropy, optimizer=SGD(m.parameters(), lr=0.1),
            epochs=1, batch_size=32, monitor=None, progress=False)


def test_clipped_steps_are_not_spikes():
    X, y = blobs()
    m = Exploder(FakeMLP([6, 16, 3]), at=10, until=11)
    opt = SGD(m.parameters(), lr=0.05, clip_norm=1.0)
    h = fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=2, batch_size=32,
            progress=False)
    assert h.n_explosions == 0 and h.grad_norm[10] > 100 * np.median(h.grad_norm)


@pytest.mark.parametrize("clipper,lr,skipped", [(AGC(0.05), 2.0, 0), ("agc", 2.0, 0),
                                                (AutoClip(10.0), 0.05, 0),
                                                (ZClip(warmup_steps=5), 0.05, 0),
                                                ("zclip", 0.05, 1)])
def test_fit_with_adaptive_clippers(clipper, lr, skipped):
    # AGC bounds each update relative to the weights: it is made for large learning rates.
    # ZClip's default 25 warm-up steps do not clip, so the monitor (policy "skip") takes
    # the explosion at step 15 as it would without a clipper.
    X, y = blobs()
    m = Exploder(FakeMLP([6, 16, 3]), at=15, factor=1e3, until=16)
    opt = SGD(m.parameters(), lr=lr)
    h = fit(m, X, y, loss=softmax_cross_entropy, optimizer=opt, epochs=3, batch_size=32,
            clipper=clipper, progress=False, validation=(X, y))
    assert h.n_explosions == skipped and (~h.applied).sum() == skipped
    if skipped:
        assert not h.applied[15]
    assert all(np.isfinite(p).all() for p in _vals(m))
    assert h.val_accuracy[-1] > 0.8


def test_callbacks_stop_training():
    X, y = blobs()
    m = FakeMLP([6, 8, 3])
    seen = []

    def cb(epoch, hist):
        seen.append((epoch, hist.n_epochs))
        return epoch == 1

    h = fit(m, X, y, loss=softmax_cross_entropy, optimizer=SGD(m.parameters(), lr=0.1),
            epochs=5, batch_size=60, callbacks=[cb], progress=False)
    assert seen == [(0, 1), (1, 2)] and h.stopped_early and h.n_epochs == 2


# ---------------------------------------------------------------------------
# bad input: everything checked before training
# ---------------------------------------------------------------------------
def _opt(m):
    return SGD(m.parameters(), lr=0.1)


def test_nan_in_X_reported_with_row_and_column():
    X, y = blobs()
    X[57, 4] = np.nan
    m = FakeMLP([6, 8, 3])
    with pytest.raises(ValueError, match=r"X contains nan at row 57, column 4"):
        fit(m, X, y, loss=softmax_cross_entropy, optimizer=_opt(m), progress=False)
    assert m.forward_calls == 0


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"epochs": 1.5}, TypeError, "epochs"),
        ({"monitor": "ignore"}, ValueError, "monitor"),
        ({"clipper": "gradclip"}, ValueError, "clipper"),
        ({"clipper": object()}, TypeError, "clipper"),
        ({"loss": "hinge"}, ValueError, "loss"),
        ({"seed": "x"}, TypeError, "seed"),
        ({"callbacks": [1]}, TypeError, r"callbacks\[0\]"),
        ({"validation": (np.zeros((3, 5)), np.zeros(3, int))}, ValueError, "features"),
        ({"validation": (np.zeros((3, 6)), np.array([0, 1, np.inf]))}, ValueError,
         r"validation\[1\] contains inf at row 2"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    X, y = blobs()
    m = FakeMLP([6, 8, 3])
    params = [p.copy() for p in _vals(m)]
    args = {"loss": softmax_cross_entropy, "optimizer": _opt(m), "progress": False}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fit(m, X, y, **args)
    for p, q in zip(_vals(m), params):
        np.testing.assert_array_equal(p, q)


def test_bad_data():
    X, y = blobs()
    m = FakeMLP([6, 8, 3])
    with pytest.raises(ValueError, match="y has 239 rows but X has 240"):
        fit(m, X, y[:-1], loss=softmax_cross_entropy, optimizer=_opt(m), progress=False)
    with pytest.raises(ValueError, match=r"y\[3\] is 7, not a class label in \[0, 3\)"):
        y2 = y.copy()
        y2[3] = 7
        fit(m, X, y2, loss=softmax_cross_entropy, optimizer=_opt(m), progress=False)
    with pytest.raises(ValueError, match="X must be 2-d"):
        fit(m, X[0], y, loss=softmax_cross_entropy, optimizer=_opt(m), progress=False)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        fit(m, X.astype(complex), y, loss=softmax_cross_entropy, optimizer=_opt(m),
            progress=False)
    with pytest.raises(ValueError, match="X has 5 features"):
        fit(m, X[:, :5], y, loss=softmax_cross_entropy, optimizer=_opt(m), progress=False)
    with pytest.raises(ValueError, match=r"y must have shape \(240, 3\)"):
        fit(m, X, np.zeros((240, 2)), loss=mse, optimizer=_opt(m), progress=False)
    with pytest.raises(TypeError, match="model must provide"):
        fit(object(), X, y, progress=False)
    other = FakeMLP([6, 8, 3])
    with pytest.raises(ValueError, match="optimizer must be built on model.parameters"):
        fit(m, X, y, loss=softmax_cross_entropy, optimizer=_opt(other), progress=False)


# ---------------------------------------------------------------------------
# GradientMonitor on its own
# ---------------------------------------------------------------------------
def test_monitor_detects_spike_and_blames_layer():
    mon = GradientMonitor("skip", factor=5.0, window=20, warmup=5)
    names = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    for t in range(30):
        sq = (np.array([1.0, 2.0, 0.5]) * rng.uniform(0.8, 1.2, 3)) ** 2
        assert mon.observe(t, sq, names=names) is None
    assert mon.threshold() == pytest.approx(5.0 * np.sqrt(1 + 4 + 0.25), rel=0.15)
    ev = mon.observe(30, np.array([1.0, 4.0, 40.0]) ** 2, names=names, epoch=2)
    assert isinstance(ev, Event) and ev.kind == "spike" and ev.layer == "c"
    assert ev.layer_norm == pytest.approx(40.0) and ev.epoch == 2 and ev.action == "skip"
    assert "step 30 (epoch 3)" in ev.message and "'c'" in ev.message
    assert mon.consecutive == 1
    assert mon.observe(31, np.array([1.0, 2.0, 0.5]) ** 2, names=names) is None
    assert mon.consecutive == 0
    assert mon.observe(32, np.array([1.0, np.inf, np.nan]), names=names).layer == "b"
    assert mon.observe(33, np.array([1.0, 1.0, 1.0]), loss=math.nan).layer is None
    assert mon.observe(34, np.array([1.0, 1e3, 1.0]), clipped=True) is None


def test_monitor_spike_must_be_a_new_high():
    mon = GradientMonitor("skip", factor=10.0, window=50, warmup=5)
    for t in range(20):
        assert mon.observe(t, [0.01 if t % 10 else 4.0]) is None  # norms 0.1, one of 2.0
    # 15x the median (0.1) but below the recent high (2.0): an ordinary noisy batch
    assert mon.observe(20, [1.5**2]) is None
    ev = mon.observe(21, [3.0**2])
    assert ev is not None and ev.kind == "spike"


def test_monitor_warmup_and_validation():
    mon = GradientMonitor(warmup=3)
    assert mon.observe(0, [1.0]) is None and mon.observe(1, [1e6]) is None
    assert math.isnan(GradientMonitor().threshold())
    for kw, name in [({"policy": "retry"}, "policy"), ({"factor": 1.0}, "factor"),
                     ({"window": 0}, "window"), ({"lr_factor": 1.0}, "lr_factor"),
                     ({"max_consecutive_errors": -1}, "max_consecutive_errors"),
                     ({"checkpoint_every": 0}, "checkpoint_every")]:
        with pytest.raises(ValueError, match=name):
            GradientMonitor(**kw)


def test_monitor_state_dict_roundtrip():
    a = GradientMonitor("skip", window=5, warmup=2)
    for t, v in enumerate([1.0, 2.0, 3.0, 1.5, 2.5, 2.0, 1.0]):
        a.observe(t, [v * v, 1.0])
    b = GradientMonitor()
    b.load_state_dict(a.state_dict())
    assert b.policy == "skip" and b.threshold() == a.threshold()
    ea = a.observe(9, [40000.0, 1.0], names=["x", "y"])
    eb = b.observe(9, [40000.0, 1.0], names=["x", "y"])
    assert ea == eb and ea is not None
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"policy": "raise"})


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    import sys

    from fastclip import train

    X, y = blobs()
    m = FakeMLP([6, 8, 3])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = train._make_bar(True, 10, "run")
    assert bar is not None and bar.total == 10
    bar.close()
    assert train._make_bar(False, 10, "run") is None
    fit(m, X, y, loss=softmax_cross_entropy, optimizer=_opt(m), epochs=1, batch_size=60,
        progress=True, desc="demo-bar")
    assert "demo-bar" in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert train._make_bar(True, 10, "run") is None


def test_to_pandas_without_pandas(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("no pandas")
        return real_import(name, *args, **kwargs)

    h = History(["a"])
    h.record_step(0, 0, 1.0, 2.0, 0.1, True, np.array([4.0]))
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="to_dict"):
        h.to_pandas()
    d = h.to_dict()
    assert d["layer_norms"].tolist() == [[2.0]] and d["grad_norm"].tolist() == [2.0]


def test_history_grows_past_its_initial_capacity():
    h = History(["a", "b"])
    for t in range(1000):
        h.record_step(t, t // 100, float(t), 1.0, 0.1, t % 7 != 0, np.array([1.0, 4.0]))
    assert h.n_steps == 1000 and h.loss[-1] == 999.0 and h.layer_norms[999].tolist() == [1.0, 2.0]
    assert np.count_nonzero(~h.applied) == 143


def test_labels_as_floats_and_one_hot():
    X, y = blobs()
    m = MLP([6, 16, 3], rng=0)
    opt = SGD(m.parameters(), lr=0.1)
    h = fit(m, X.astype(np.float32), y.astype(np.float64), optimizer=opt, epochs=1,
            batch_size=40, progress=False, seed=0)
    assert h.n_steps == 6
    onehot = np.eye(3)[y]
    h = fit(m, X, onehot, optimizer=opt, epochs=1, batch_size=40, progress=False,
            validation=(X, onehot), seed=0)
    assert 0.0 <= h.val_accuracy[0] <= 1.0
    bad = y.astype(np.float64)
    bad[5] = 1.5
    with pytest.raises(ValueError, match="row 5 is 1.5, not an integer"):
        fit(m, X, bad, optimizer=opt, progress=False)


def test_monitor_observe_checks_its_arguments_before_recording():
    """Negative, empty, 2-d or non-numeric sums of squares and a non-numeric loss are
    errors naming the argument, and the monitor's statistics stay as they were."""
    from fastclip.train import GradientMonitor
    mon = GradientMonitor("skip", warmup=2)
    mon.observe(0, [1.0, 4.0])
    before = mon.state_dict()
    for bad, exc, match in (([-1.0, 2.0], ValueError, "negative"),
                            ([], ValueError, "1-d"),
                            (np.ones((2, 2)), ValueError, "1-d"),
                            ("abc", TypeError, "sqnorms"),
                            (np.ma.array([1.0], mask=[1]), TypeError, "sqnorms")):
        with pytest.raises(exc, match=match):
            mon.observe(1, bad)
    with pytest.raises(TypeError, match="loss"):
        mon.observe(1, [1.0, 1.0], loss="x")
    after = mon.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert np.array_equal(np.asarray(before[k], dtype=object),
                              np.asarray(after[k], dtype=object)), k
    assert mon.observe(1, [np.nan, 1.0]).kind == "nonfinite"  # NaN still flags


def test_a_clipper_that_does_not_clip_yet_leaves_spikes_watched():
    """Spikes are not looked for in steps whose update is clipped; an adaptive clipper
    still warming up (ZClip) or without history (AutoClip) does not clip, so its steps
    are watched as unclipped training is: the same explosion is stopped."""
    from fastclip import AutoClip, ZClip, demo, nn, optim
    from fastclip.train.monitor import update_is_bounded

    X, y = demo.load_data(0)[:2]

    def run(clipper):
        m = nn.MLP([64, 128, 128, 128, 128, 128, 10], rng=0)
        return fit(m, X, y, optimizer=optim.SGD(m.parameters(), lr=1.0), epochs=3,
                   batch_size=64, seed=0, monitor="raise", clipper=clipper,
                   progress=False)

    with pytest.raises(GradientExplosionError, match="step 16") as plain:
        run(None)
    with pytest.raises(GradientExplosionError, match="step 16") as zclip:
        run(ZClip())  # 25 warm-up steps: it has not clipped by step 16
    np.testing.assert_array_equal(zclip.value.history.grad_norm,
                                  plain.value.history.grad_norm)
    opt = optim.SGD([np.zeros(2)], lr=0.1)
    z = ZClip(warmup_steps=2)
    assert not update_is_bounded(opt, z)
    z.clip_([np.ones(2)]), z.clip_([np.ones(2)])
    assert update_is_bounded(opt, z) and update_is_bounded(opt, ZClip(max_grad_norm=1.0))
    a = AutoClip(10.0)
    assert not update_is_bounded(opt, a)
    a.clip_([np.ones(2)])
    assert update_is_bounded(opt, a) and not update_is_bounded(opt, AutoClip(100.0))
    assert update_is_bounded(optim.SGD([np.zeros(2)], lr=0.1, clip_norm=1.0), None)
    assert not update_is_bounded(opt, None)
