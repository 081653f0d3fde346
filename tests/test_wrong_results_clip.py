"""Inputs that used to give silent wrong results in clipping, optimisers and clippers.

Each case runs with both implementations (``set_implementation("c")`` and
``"python"``) and checks the exception type, that the message names the argument,
and that nothing was modified.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _testing import implementation_fixture

import fastclip
from fastclip import AutoClip, ZClip
from fastclip import schedules as S
from fastclip.optim import SGD, Adam, AdamW, RMSprop

IMPLS = ["c", "python"]


impl = implementation_fixture("clip")


def _masked(values, mask):
    return np.ma.MaskedArray(np.array(values, dtype=np.float64), mask=mask)


# ---------------------------------------------------------------------------
# numpy.ma.MaskedArray: rejected everywhere (a TypeError naming the argument)
# ---------------------------------------------------------------------------
CLIP_CALLS = {
    "clip_grad_norm_": lambda g: fastclip.clip_grad_norm_(g, 1.0),
    "clip_grad_value_": lambda g: fastclip.clip_grad_value_(g, 0.5),
    "get_total_norm": lambda g: fastclip.get_total_norm(g),
    "array_norms": lambda g: fastclip.array_norms(g),
    "clip_grads_with_norm_": lambda g: fastclip.clip_grads_with_norm_(g, 1.0, 10.0),
    "clip_by_norm": lambda g: fastclip.clip_by_norm(g, 1.0),
    "clip_by_global_norm": lambda g: fastclip.clip_by_global_norm(g, 1.0),
}


@pytest.mark.parametrize("fname", sorted(CLIP_CALLS))
def test_masked_array_rejected_by_clip_functions(impl, fname):
    plain = np.array([3.0, 4.0])
    m = _masked([100.0, 5.0, 7.0], [True, False, False])
    data_before = m.data.copy()
    with pytest.raises(TypeError, match=r"grads\[1\] is a numpy\.ma\.MaskedArray|xs\[1\] is a "
                                        r"numpy\.ma\.MaskedArray|x\[1\] is a numpy\.ma\.MaskedArray"):
        CLIP_CALLS[fname]([plain, m])
    np.testing.assert_array_equal(m.data, data_before)
    np.testing.assert_array_equal(plain, [3.0, 4.0])


def test_masked_single_array_names_grads(impl):
    m = _masked([100.0, 5.0], [True, False])
    with pytest.raises(TypeError, match=r"^grads is a numpy\.ma\.MaskedArray"):
        fastclip.clip_grad_value_(m, 1.0)
    assert m.data[0] == 100.0


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW, RMSprop])
def test_masked_array_rejected_by_optimisers(impl, cls):
    with pytest.raises(TypeError, match=r"params\[0\] is a numpy\.ma\.MaskedArray"):
        cls([_masked([1.0, 2.0], [False, True])], lr=0.1)
    w = np.ones(2)
    opt = cls([w], lr=0.1)
    with pytest.raises(TypeError, match=r"grads\[0\] is a numpy\.ma\.MaskedArray"):
        opt.step([_masked([1.0, 2.0], [False, True])])
    np.testing.assert_array_equal(w, [1.0, 1.0])
    assert opt.step_count == 0


# ---------------------------------------------------------------------------
# np.matrix (an ndarray subclass): both implementations give the same result
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
def test_matrix_same_result_in_both_implementations():
    out = {}
    for name in IMPLS:
        if name == "c" and fastclip._dispatch.family("clip").compiled is None:
            continue
        with fastclip.use_implementation(name):
            g = np.matrix([[3.0, 0.0], [0.0, 4.0]])
            total = fastclip.clip_grad_norm_([g], 1.0)
            norms = fastclip.array_norms([g])
            w = np.matrix([[1.0, 1.0]])
            opt = Adam([w], lr=0.1, clip_norm=1.0)
            opt.step([np.matrix([[1.0, -2.0]])])
            out[name] = (total, norms, np.asarray(g).copy(), np.asarray(w).copy())
    assert out["python"][0] == 5.0
    np.testing.assert_allclose(out["python"][2], [[0.6, 0.0], [0.0, 0.8]], rtol=1e-6)
    if "c" in out:
        assert out["c"][0] == out["python"][0]
        for a, b in zip(out["c"][1:], out["python"][1:]):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# learning rates: inf, NaN and negative never reach the parameters
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("lr", [math.inf, math.nan, -0.1])
def test_bad_float_lr_rejected_at_construction(impl, lr):
    with pytest.raises(ValueError, match=r"\blr\b"):
        SGD([np.ones(3)], lr=lr)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, -1.0])
@pytest.mark.parametrize("cls", [SGD, Adam, RMSprop])
def test_bad_lr_callable_value_rejected_before_anything_changes(impl, cls, bad):
    w = np.array([1.0, -2.0, 3.0])
    opt = cls([w], lr=lambda step: 0.1 if step == 0 else bad)
    opt.step([np.ones(3)])
    w_after_first = w.copy()
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"lr callable returned .* at step 1"):
        opt.step([np.ones(3)])
    np.testing.assert_array_equal(w, w_after_first)
    assert opt.step_count == 1
    for a, b in zip(state["state"][0].values(), opt.state_dict()["state"][0].values()):
        np.testing.assert_array_equal(a, b)


def test_schedule_lr_is_accepted(impl):
    w = np.ones(2)
    opt = SGD([w], lr=S.constant(0.5))
    opt.step([np.ones(2)])
    np.testing.assert_array_equal(w, [0.5, 0.5])


# ---------------------------------------------------------------------------
# AutoClip / ZClip with negative sqnorms: a ValueError naming sqnorms
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: AutoClip(), lambda: ZClip(warmup_steps=1)],
                         ids=["AutoClip", "ZClip"])
def test_clippers_name_negative_sqnorms(impl, make):
    clipper = make()
    g = [np.array([3.0, 4.0]), np.array([1.0])]
    with pytest.raises(ValueError, match=r"^sqnorms holds a negative value"):
        clipper.clip_(g, sqnorms=np.array([25.0, -1.0]))
    np.testing.assert_array_equal(g[0], [3.0, 4.0])
    with pytest.raises(ValueError, match=r"^sqnorms must be a 1-d array"):
        clipper.clip_(g, sqnorms=np.array([25.0]))


def test_small_norm_type_overflows_to_inf_in_both_implementations(impl):
    """A p-norm with p near 0 overflows float64: inf (as in C and torch), never an
    OverflowError from the pure-Python twin; clipping by it zeroes the gradient."""
    g = [np.full(1000, 0.5)]
    assert fastclip.get_total_norm(g, 0.001) == math.inf
    assert fastclip.array_norms(g, 0.001).tolist() == [math.inf]
    assert fastclip.get_total_norm([np.full(3, 1e300)] * 3, 0.01) == math.inf
    assert fastclip.clip_grad_norm_(g, 1.0, 0.001) == math.inf
    assert (g[0] == 0).all()
