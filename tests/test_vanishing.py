"""The gradient monitor reports vanishing gradients: a layer whose gradient norm stays
below a threshold, or far below the layer above it, for K steps in a row."""

import math
import sys

import numpy as np
import pytest

import fastclip
from fastclip import nn, optim
from fastclip.train import GradientMonitor, fit

NAMES = ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]


def sq(*layer_norms):
    """Per-parameter sums of squares giving each layer (weight, bias) that norm."""
    out = []
    for n in layer_norms:
        out += [0.5 * n * n, 0.5 * n * n]
    return np.array(out)


def test_relative_drop_for_k_steps_is_reported_once_per_run():
    mon = GradientMonitor("skip", vanish_factor=100.0, vanish_steps=3)
    events = []
    # layer 0 is 1000x below layer 1 at steps 0-2, recovers at 3, vanishes again 4-6
    for step, n0 in enumerate([1e-3, 1e-3, 1e-3, 1.0, 1e-3, 1e-3, 1e-3, 1e-3]):
        assert mon.observe(step, sq(n0, 1.0, 1.0), names=NAMES) is None
        events += mon.last_warnings
    assert [(e.step, e.kind, e.action, e.layer) for e in events] == [
        (2, "vanishing", "warn", "0"), (6, "vanishing", "warn", "0")]
    e = events[0]
    assert math.isclose(e.layer_norm, 1e-3) and math.isclose(e.threshold, 1.0 / 100)
    assert "vanishing gradient in layer '0'" in e.message and "-> warn" in e.message
    assert mon.vanishing_layers == ["0"]
    assert mon.events == events and mon.consecutive == 0


def test_absolute_threshold_names_every_layer_below_it():
    mon = GradientMonitor(vanish_threshold=1e-4, vanish_steps=2)
    mon.observe(0, sq(1e-6, 1e-5, 1.0), names=NAMES)
    assert mon.last_warnings == []
    mon.observe(1, sq(1e-6, 1e-5, 1.0), names=NAMES)
    assert [e.layer for e in mon.last_warnings] == ["0", "1"]
    assert all(e.threshold == 1e-4 for e in mon.last_warnings)
    mon.observe(2, sq(1e-6, 1.0, 1.0), names=NAMES)
    assert mon.vanishing_layers == ["0"]


def test_names_without_dots_and_default_names():
    mon = GradientMonitor(vanish_threshold=1.0, vanish_steps=1)
    mon.observe(0, [1e-4, 4.0], names=["weight", "bias"])
    assert [e.layer for e in mon.last_warnings] == ["weight"]
    mon = GradientMonitor(vanish_threshold=1.0, vanish_steps=1)
    mon.observe(0, [4.0, 1e-4])
    assert [e.layer for e in mon.last_warnings] == ["param1"]


def test_off_by_default_and_no_effect_on_explosion_handling():
    mon = GradientMonitor()
    for step in range(20):
        mon.observe(step, sq(1e-30, 1.0, 1.0), names=NAMES)
    assert mon.events == [] and not mon.watches_vanishing
    # a flagged (non-finite) step is not looked at for vanishing layers
    mon = GradientMonitor("skip", vanish_threshold=1.0, vanish_steps=1)
    ev = mon.observe(0, sq(1e-3, math.nan, 1.0), names=NAMES)
    assert ev is not None and ev.kind == "nonfinite" and mon.last_warnings == []


def test_state_dict_round_trip_keeps_the_runs():
    a = GradientMonitor(vanish_factor=10.0, vanish_steps=3)
    for step in range(2):
        a.observe(step, sq(1e-3, 1.0, 1.0), names=NAMES)
    b = GradientMonitor()
    b.load_state_dict(a.state_dict())
    assert (b.vanish_factor, b.vanish_steps) == (10.0, 3)
    b.observe(2, sq(1e-3, 1.0, 1.0), names=NAMES)
    assert [e.layer for e in b.last_warnings] == ["0"]
    # a state saved without the vanishing entries restores with detection off
    old = {k: v for k, v in a.state_dict().items() if not k.startswith("vanish")}
    c = GradientMonitor()
    c.load_state_dict(old)
    assert not c.watches_vanishing
    bad = a.state_dict()
    bad["vanish_runs"] = np.array([-1, 0, 0])
    with pytest.raises(ValueError, match="vanish_runs"):
        c.load_state_dict(bad)
    assert not c.watches_vanishing  # nothing changed


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"vanish_factor": 0.5}, ValueError, "vanish_factor must be finite and > 1"),
    ({"vanish_factor": math.inf}, ValueError, "vanish_factor"),
    ({"vanish_threshold": 0.0}, ValueError, "vanish_threshold must be finite and > 0"),
    ({"vanish_threshold": "1e-6"}, TypeError, "vanish_threshold must be a real number"),
    ({"vanish_steps": 0}, ValueError, "vanish_steps must be >= 1"),
    ({"vanish_steps": 2.0}, TypeError, "vanish_steps must be an integer"),
])
def test_bad_vanishing_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GradientMonitor(**kwargs)


def _deep_tiny(impl_dtype=np.float64):
    """A 9-block ReLU network with weights 20x smaller than He's: the gradients of the
    blocks near the input vanish (each block shrinks the activations ~20x)."""
    model = nn.MLP([8] + [16] * 8 + [3], rng=0, dtype=impl_dtype)
    for w in model.parameters()[0::2]:
        w.data[...] *= 0.05
    return model


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 8)), rng.integers(0, 3, n)


@pytest.mark.parametrize("impl", ["c", "python"])
def test_fit_records_vanishing_layers_of_a_tiny_init_network(impl):
    X, y = _data()
    with fastclip.use_implementation(impl):
        model = _deep_tiny()
        mon = GradientMonitor("skip", vanish_threshold=1e-6, vanish_steps=3)
        h = fit(model, X, y, monitor=mon, epochs=1, batch_size=32, progress=False,
                optimizer=optim.SGD(model.parameters(), 0.01))
    vanish = [e for e in h.events if e.kind == "vanishing"]
    assert vanish and all(e.step >= 2 and e.action == "warn" for e in vanish)
    first = [e.layer for e in vanish if e.step == 2]  # after vanish_steps=3 steps
    assert first[:2] == ["0", "1"]
    assert "8" not in {e.layer for e in vanish}  # the input side vanishes, the output not
    for e in vanish:
        j = int(e.layer)
        block = h.layer_norms[e.step, 2 * j: 2 * j + 2]
        assert math.isclose(e.layer_norm, float(np.hypot(*block)), rel_tol=1e-12)
        assert e.layer_norm < 1e-6
    assert h.applied.all() and h.n_explosions == 0  # warnings never drop an update
    assert h.to_dict()["event_kind"].tolist() == ["vanishing"] * len(vanish)


def test_fit_relative_factor_and_healthy_network():
    X, y = _data()
    model = _deep_tiny()
    h = fit(model, X, y, monitor=GradientMonitor("skip", vanish_factor=10.0, vanish_steps=3),
            epochs=1, batch_size=32, progress=False)
    assert {e.layer for e in h.events if e.kind == "vanishing"} >= {"5", "6", "7"}
    healthy = nn.MLP([8, 32, 32, 3], rng=0, dtype=np.float64)
    h = fit(healthy, X, y, monitor=GradientMonitor("skip", vanish_factor=1e3,
                                                   vanish_threshold=1e-8, vanish_steps=3),
            epochs=1, batch_size=32, progress=False)
    assert [e for e in h.events if e.kind == "vanishing"] == []


def test_progress_bar_names_the_vanishing_layer(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    X, y = _data()
    model = _deep_tiny()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    fit(model, X, y, monitor=GradientMonitor("skip", vanish_threshold=1e-6, vanish_steps=3),
        epochs=1, batch_size=32, progress=True, desc="vanish-bar")
    err = capsys.readouterr().err
    assert "vanish-bar" in err and "vanishing=0,1," in err
