"""Schedules at the edges of the float range, keyword-only arguments, from_dict guards.

Every value test runs with both implementations and with scalar and array steps.
"""

from __future__ import annotations

import math
import pickle
import sys

import numpy as np
import pytest
from _testing import implementation_fixture

import fastclip
from fastclip import schedules as S

BIG = sys.float_info.max
STEPS = [0.0, 1.0, 12345.5, 1e20, 1e300, 1e308, BIG / 2, BIG]


impl = implementation_fixture("schedules")


EXTREME = {
    "restarts_tmul_1e300": lambda: S.cosine_restarts(0.1, 10, 1e300),
    "restarts_tiny_t0": lambda: S.cosine_restarts(0.1, 1e-300, 1.0000001),
    "restarts_tiny_t0_tmul1": lambda: S.cosine_restarts(0.1, 1e-300, eta_min=0.01),
    "restarts_tmul2_mmul": lambda: S.cosine_restarts(0.1, 10, 2, m_mul=0.5),
    "cyclic_tiny": lambda: S.cyclic(0.1, 1.0, 1e-300),
    "cyclic_tiny_tri2": lambda: S.cyclic(0.1, 1.0, 1e-300, mode="triangular2"),
    "cyclic_tiny_exp": lambda: S.cyclic(0.1, 1.0, 1e-300, mode="exp_range", gamma=0.5),
    "step_tiny": lambda: S.step(0.1, 1e-300, 0.5),
    "exponential_tiny_stair": lambda: S.exponential(0.1, 1e-300, 0.5, staircase=True),
    "exponential_tiny_growth": lambda: S.exponential(0.1, 1e-300, 2.0, staircase=True,
                                                     end_value=1.0),
    "inverse_time_tiny_stair": lambda: S.inverse_time(0.1, 1e-300, 0.5, staircase=True),
    "polynomial_tiny_cycle": lambda: S.polynomial(0.1, decay_steps=1e-300, cycle=True),
}


@pytest.mark.parametrize("name", sorted(EXTREME))
def test_finite_values_at_every_finite_step(impl, name):
    s = EXTREME[name]()
    lo = min(s.params.get("eta_min", 0.0), s.params.get("base_lr", 0.0), 0.0)
    for x in STEPS:
        v = s(x)
        assert isinstance(v, float) and math.isfinite(v), (x, v)
        assert v >= lo
    arr = s(np.array(STEPS))
    assert np.all(np.isfinite(arr)), arr


@pytest.mark.parametrize("name", sorted(EXTREME))
def test_extremes_agree_between_implementations(name):
    if fastclip._dispatch.family("schedules").compiled is None:
        pytest.skip("the compiled extension is not built")
    s = EXTREME[name]()
    out = {}
    for impl in ("c", "python"):
        with fastclip.use_implementation(impl):
            out[impl] = np.array([s(x) for x in STEPS])
    np.testing.assert_allclose(out["c"], out["python"], rtol=1e-9, atol=0)


def test_restarts_in_range_where_the_log_domain_is_used(impl):
    # period i starts at 1e-300 * (1.0000001**i - 1) / 1e-7: the overflowing branch
    s = S.cosine_restarts(1.0, 1e-300, 1.0000001, eta_min=0.0)
    for x in (1e20, 1e100, 1e300):
        assert 0.0 <= s(x) <= 1.0


def test_ordinary_steps_unchanged(impl):
    # the new branches are only taken where the old formula overflowed
    s = S.cosine_restarts(0.1, 10, 2)
    assert s(0) == 0.1
    assert s(10) == 0.1  # restart
    assert s(5) == pytest.approx(0.05, rel=1e-12)
    c = S.cyclic(0.1, 1.0, 10)
    assert c(10) == pytest.approx(1.0, rel=1e-12)
    assert c(20) == pytest.approx(0.1, rel=1e-12)


def test_plateau_rejects_an_int_step_too_large_for_a_float(impl):
    sched = S.reduce_on_plateau(0.1)
    with pytest.raises(ValueError, match="step must be a finite number >= 0"):
        sched(10**400)
    with pytest.raises(ValueError, match="step must be a finite number >= 0"):
        S.cosine(0.1, 10)(10**400)
    assert sched(10**15) == 0.1


# ---------------------------------------------------------------------------
# from_dict: huge ints, self-references, deep nesting
# ---------------------------------------------------------------------------
def test_from_dict_int_too_large_names_the_field():
    with pytest.raises(ValueError, match=r"^init_value must be finite"):
        S.from_dict({"kind": "cosine", "init_value": 10**400, "decay_steps": 10})
    with pytest.raises(ValueError, match=r"decay_steps must be finite"):
        S.from_dict({"kind": "cosine", "init_value": 0.1, "decay_steps": 10**400})
    with pytest.raises(ValueError, match=r"total_steps must be <= 2\*\*63 - 1"):
        S.from_dict({"kind": "one_cycle", "max_lr": 0.1, "total_steps": 10**30})
    with pytest.raises(ValueError, match=r"^d\['schedule'\]: init_value must be finite"):
        S.from_dict({"kind": "warmup", "warmup_steps": 5,
                     "schedule": {"kind": "cosine", "init_value": 10**400, "decay_steps": 3}})


def test_from_dict_self_reference_is_a_value_error():
    d = {"kind": "warmup", "warmup_steps": 5}
    d["schedule"] = d
    with pytest.raises(ValueError, match=r"d\['schedule'\] contains itself"):
        S.from_dict(d)
    j = {"kind": "join", "boundaries": [3]}
    j["schedules"] = [{"kind": "constant", "value": 0.1}, j]
    with pytest.raises(ValueError, match=r"d\['schedules'\]\[1\] contains itself"):
        S.from_dict(j)


def test_from_dict_deep_nesting_is_a_value_error():
    d = {"kind": "constant", "value": 0.1}
    for _ in range(5000):
        d = {"kind": "warmup", "warmup_steps": 1, "schedule": d}
    with pytest.raises(ValueError, match="nests schedules more than 64 levels deep"):
        S.from_dict(d)


def test_from_dict_shared_child_is_fine():
    child = {"kind": "constant", "value": 0.1}
    s = S.from_dict({"kind": "join", "schedules": [child, child], "boundaries": [3]})
    assert s(5) == 0.1


# ---------------------------------------------------------------------------
# keyword-only parameters where fastclip's order differs from the anchor's
# ---------------------------------------------------------------------------
def test_warmup_cosine_in_optax_order_fails_loudly():
    with pytest.raises(TypeError):
        S.warmup_cosine(0.0, 0.1, 500, 10000)  # optax: init, peak, warmup, decay
    with pytest.raises(TypeError):
        S.warmup_cosine(0.1, 500, 10000)  # fastclip's former order
    s = S.warmup_cosine(init_value=0.0, peak_value=0.1, warmup_steps=500, decay_steps=10000)
    assert s(0) == 0.0
    assert s(500) == pytest.approx(0.1)


def test_polynomial_keywords_and_optax_alias():
    with pytest.raises(TypeError):
        S.polynomial(1.0, 0.5, 1.0, 100)  # optax's positional order
    a = S.polynomial(1.0, decay_steps=100, end_value=0.5, power=2.0)
    b = S.polynomial(1.0, transition_steps=100, end_value=0.5, power=2.0)
    assert a == b
    assert a(50) == pytest.approx((1.0 - 0.5) * 0.25 + 0.5)
    with pytest.raises(TypeError, match="decay_steps or transition_steps, not both"):
        S.polynomial(1.0, decay_steps=100, transition_steps=100)
    with pytest.raises(TypeError, match="missing the required argument decay_steps"):
        S.polynomial(1.0)


def test_cosine_restarts_torch_names_and_keyword_only_tail():
    a = S.cosine_restarts(0.1, 10, 2)  # torch's order: T_0, T_mult
    b = S.cosine_restarts(0.1, T_0=10, T_mult=2)
    c = S.cosine_restarts(0.1, t_0=10, t_mul=2)
    assert a == b == c
    assert a.params["t_0"] == 10 and a.params["t_mul"] == 2
    with pytest.raises(TypeError):
        S.cosine_restarts(0.1, 10, 2.0, 0.9)  # Keras's 4th is m_mul, torch's eta_min
    with pytest.raises(TypeError, match="T_0 or t_0, not both"):
        S.cosine_restarts(0.1, 10, t_0=10)
    with pytest.raises(TypeError, match="missing the required argument T_0"):
        S.cosine_restarts(0.1)
    assert S.from_dict(a.to_dict()) == a
    assert pickle.loads(pickle.dumps(a)) == a


def test_one_cycle_and_inverse_time_keyword_only_tail():
    with pytest.raises(TypeError):
        S.one_cycle(0.1, 100, 10)  # torch's 3rd argument is epochs
    assert S.one_cycle(0.1, 100, pct_start=0.25).params["pct_start"] == 0.25
    with pytest.raises(TypeError):
        S.inverse_time(0.1, 10, 0.5, True)  # Keras's 4th argument is staircase
    assert S.inverse_time(0.1, 10, 0.5, staircase=True)(15) == pytest.approx(0.1 / 1.5)


def test_polynomial_cycle_at_a_subnormal_step(impl):
    """step / decay_steps underflows to 0 at a subnormal step: the period is still one
    decay, so the value is the step-0 value in both implementations."""
    s = S.polynomial(1.0, decay_steps=7, end_value=0.1, power=0.5, cycle=True)
    assert s(5e-324) == s(0.0) == 1.0
    np.testing.assert_array_equal(s(np.array([5e-324, 0.0])), [1.0, 1.0])


@pytest.mark.parametrize("impl_name", ["c", "python"])
@pytest.mark.parametrize("t0,tm", [(7, 1.3), (30, 1.7), (0.1, 2.5), (0.1, 1.75), (10, 2.0)])
def test_cosine_restarts_starts_its_first_restart_at_its_peak(impl_name, t0, tm):
    """Step T_0 begins period 1 (T_cur = 0): the peak, as Keras' CosineDecayRestarts and
    torch's CosineAnnealingWarmRestarts, not the floor of period 0 (t0 * (tm - 1) /
    (tm - 1) rounds above t0 for a non-integer T_mult)."""
    from fastclip import schedules as S

    with fastclip.use_implementation(impl_name):
        s = S.cosine_restarts(1.0, T_0=t0, T_mult=tm, eta_min=0.1)
        assert s(t0) == 1.0
        assert s(np.array([float(t0)]))[0] == 1.0
        assert 0.1 <= s(t0 * 0.999) < 0.11


class _ArrayLike:
    """A step held by another array library (as JAX gives optax schedules their count)."""

    def __init__(self, v):
        self.v = np.asarray(v)

    def __array__(self, dtype=None, copy=None):
        return self.v if dtype is None else self.v.astype(dtype)


@pytest.mark.parametrize("impl_name", ["c", "python"])
def test_array_likes_are_steps(impl_name):
    """A JAX-style 0-d or 1-d array is evaluated like the ndarray it converts to."""
    with fastclip.use_implementation(impl_name):
        s = S.cosine(0.1, 100)
        for v in (3, [1, 2], np.int32(7)):
            got = s(_ArrayLike(v))
            assert isinstance(got, np.ndarray)
            np.testing.assert_array_equal(got, s(np.asarray(v)))
        assert S.reduce_on_plateau(0.1)(_ArrayLike(3)) == 0.1
        with pytest.raises(TypeError, match="real numbers"):
            s(_ArrayLike(["a"]))
        with pytest.raises(ValueError, match=">= 0"):
            s(_ArrayLike(-1))


def test_integers_beyond_the_float_range_are_named_as_such(impl) -> None:
    sch = S.cosine(0.1, 100)
    with pytest.raises(ValueError, match=r"^step must be a finite number >= 0, got a "
                                         r"negative integer too large for a float$"):
        sch(-10**400)
    with pytest.raises(ValueError, match=r"^step must be a finite number >= 0, got an "
                                         r"integer too large for a float$"):
        sch(10**400)
    # in an array of steps: an integer beyond int64/uint64 is a float step, as alone
    assert sch([1, 2**64]).tolist() == [sch(1), sch(2**64)]
    with pytest.raises(ValueError, match=r"^steps\[1\] must be a finite number >= 0"):
        sch([1, -2**70])
    with pytest.raises(ValueError, match=r"^steps\[0, 1\] must be a finite number >= 0, got "
                                         r"an integer too large for a float$"):
        sch([[1, 10**400]])
    with pytest.raises(ValueError, match=r"^metric must be a real number, got an integer too "
                                         r"large for a float$"):
        S.ReduceLROnPlateau(0.1).step(10**400)


def test_a_numpy_bool_step_is_refused_as_a_step(impl) -> None:
    with pytest.raises(TypeError, match=r"^step must be a real number or an array of them, "
                                        r"got bool"):
        S.cosine(0.1, 100)(np.True_)


def test_from_dict_names_a_missing_or_unknown_parameter(impl) -> None:
    with pytest.raises(ValueError, match=r"^cosine needs the parameter 'decay_steps'$"):
        S.from_dict({"kind": "cosine", "init_value": 0.1})
    with pytest.raises(ValueError, match=r"^cosine has no parameter 'decay_step'; its "
                                         r"parameters are 'init_value', 'decay_steps'"):
        S.from_dict({"kind": "cosine", "init_value": 0.1, "decay_step": 10})
    with pytest.raises(ValueError, match=r"^d\['schedules'\]\[1\]: step has no parameter 'x'"):
        S.from_dict({"kind": "join", "boundaries": [5], "schedules": [
            {"kind": "constant", "value": 0.1}, {"kind": "step", "x": 1}]})
