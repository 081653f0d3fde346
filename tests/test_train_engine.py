"""The step engine and checkpoint shared by fit and DataParallel, the sorted window shared
by the monitor and AutoClip, and the argument checks of fastclip._checks.train."""

import math

import numpy as np
import pytest

from fastclip._checks import train as ct
from fastclip._window import SortedWindow
from fastclip.train import GradientExplosionError, GradientMonitor, History, StepEngine
from fastclip.train.checkpoint import Checkpoint


class Opt:
    """A minimal optimiser: lr_scale and a state dict with a step count."""

    def __init__(self):
        self.lr_scale = 1.0
        self.count = 0

    def state_dict(self):
        return {"count": self.count, "lr_scale": self.lr_scale}

    def load_state_dict(self, s):
        self.count, self.lr_scale = s["count"], s["lr_scale"]


class Param:
    """Holds its value in .data, as fastclip.nn.Parameter does."""

    def __init__(self, a):
        self.data = a


def test_sorted_window_median_and_max_match_numpy():
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, None):
        w = SortedWindow(size)
        seen = []
        for v in rng.standard_normal(60).round(1):  # ties included
            w.push(float(v))
            seen.append(float(v))
            tail = seen if size is None else seen[-size:]
            assert len(w) == len(tail)
            assert w.median() == float(np.median(tail))
            assert w.max() == max(tail)
            assert list(w.order) == tail and w.sorted == sorted(tail)
    empty = SortedWindow(3)
    assert math.isnan(empty.median()) and math.isnan(empty.max())
    assert SortedWindow(2, [3.0, 1.0, 2.0]).sorted == [1.0, 2.0]


def test_rollback_restores_and_multiplies_the_learning_rate():
    p = np.arange(4.0)
    opt = Opt()
    mon = GradientMonitor("rollback", lr_factor=0.25, checkpoint_every=2, max_rollbacks=2)
    h = History(["p"])
    eng = StepEngine(mon, opt, [p], history=h)

    def good_step(delta):
        p[:] += delta
        opt.count += 1
        eng.applied()

    good_step(1)  # 1 good step: no checkpoint yet
    good_step(1)  # 2: checkpoint
    saved = p.copy()
    good_step(100)
    ev = mon.observe(3, [math.inf], names=["p"])
    assert eng.flagged(ev) is ev and h.events == [ev]
    np.testing.assert_array_equal(p, saved)
    assert opt.count == 2 and opt.lr_scale == 0.25 and mon.rollbacks == 1
    ev = mon.observe(4, [math.nan], names=["p"])
    eng.flagged(ev)
    assert opt.lr_scale == 0.25 * 0.25 and mon.rollbacks == 2
    ev = mon.observe(5, [math.nan], names=["p"])
    with pytest.raises(GradientExplosionError, match="gave up after 2 rollbacks") as ei:
        eng.flagged(ev)
    assert ei.value.history is h and h.events[-1].action == "gave_up"
    assert mon.events[-1].action == "gave_up"


def test_skip_gives_up_after_max_consecutive_and_raise_stops_at_once():
    mon = GradientMonitor("skip", max_consecutive_errors=2)
    eng = StepEngine(mon, Opt(), [np.zeros(2)])
    for step in range(2):
        eng.flagged(mon.flag(step))
    with pytest.raises(GradientExplosionError, match="gave up after 3 consecutive"):
        eng.flagged(mon.flag(2))
    mon = GradientMonitor("raise")
    eng = StepEngine(mon, Opt(), [np.zeros(2)])
    with pytest.raises(GradientExplosionError, match="custom stop") as ei:
        eng.flagged(mon.flag(0), stop_message="custom stop")
    assert isinstance(ei.value, FloatingPointError) and ei.value.event.kind == "nonfinite"


def test_rollback_needs_lr_scale():
    class NoScale:
        pass

    with pytest.raises(TypeError, match="lr_scale"):
        StepEngine(GradientMonitor("rollback"), NoScale(), [np.zeros(1)])


def test_checkpoint_restores_in_place_through_data_attributes():
    a, b = np.ones(3), np.zeros((2, 2))
    opt = Opt()

    class Clip:
        def __init__(self):
            self.n = 0

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, s):
            self.n = s["n"]

    clip = Clip()
    ck = Checkpoint([Param(a), b], opt, clip)
    ck.save()
    a[:] = 5
    b[:] = 7
    opt.count, clip.n = 3, 4
    ck.restore()
    assert (a == 1).all() and (b == 0).all() and opt.count == 0 and clip.n == 0
    assert ck.params[0] is a  # the same arrays, restored in place


@pytest.mark.parametrize(("fn", "args", "exc", "match"), [
    (ct.int_arg, (True, "epochs", 1), TypeError, "epochs must be an integer"),
    (ct.int_arg, (0, "epochs", 1), ValueError, "epochs must be >= 1"),
    (ct.real_arg, ("x", "factor", 1.0), TypeError, "factor must be a real number"),
    (ct.real_arg, (math.nan, "factor", 1.0), ValueError, "factor must be finite and > 1"),
    (ct.real_arg, (-1.0, "lr_factor", 0.0), ValueError, r"lr_factor must be finite and > 0"),
    (ct.rng_arg, (1.5,), TypeError, "seed must be None, an int"),
    (ct.check_callbacks, ([print, 3],), TypeError, r"callbacks\[1\] must be callable"),
    (ct.check_model, (object(),), TypeError, "model must provide forward"),
])
def test_check_messages_name_the_argument(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args)


def test_checks_accept_good_values():
    assert ct.int_arg(np.int32(3), "n", 1) == 3
    assert ct.real_arg(0.5, "lr_factor", 0.0, high=1.0) == 0.5
    assert ct.opt_real_arg(None, "x", 0.0) is None
    g = np.random.default_rng(1)
    assert ct.rng_arg(g) is g


def test_parameters_holding_their_value_in_data():
    from fastclip._checks.train import value_arrays

    a = np.zeros(2)
    assert value_arrays([a, Param(a)])[1] is a
    with pytest.raises(TypeError, match=r"model.parameters\(\)\[1\] must be a numpy.ndarray"):
        value_arrays([a, [1.0, 2.0]])
