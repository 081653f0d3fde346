"""fastclip.schedules: C path vs reference, published formulas, round trips, bad input."""

import json
import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastclip
C = pytest.importorskip("fastclip._schedules", reason="the compiled extension is not built")
from fastclip import schedules as S
from fastclip.reference import schedules as R


def _cases():
    cos = S.cosine(0.1, 100)
    return {
        "constant": S.constant(0.3),
        "step": S.step(0.1, 30, 0.5),
        "step_frac": S.step(0.1, 7.5, 0.9),
        "multistep": S.multistep(0.1, [50, 120, 300], 0.3),
        "piecewise_at": S.piecewise_constant([10, 100, 250], [1.0, 0.5, 0.1, 0.01]),
        "piecewise_after": S.piecewise_constant([10, 100], [1.0, 0.5, 0.1], switch="after"),
        "exponential": S.exponential(0.1, 50, 0.5),
        "exponential_all": S.exponential(0.1, 25, 0.8, transition_begin=40, staircase=True,
                                         end_value=0.01),
        "exponential_grow": S.exponential(0.01, 10, 1.5, end_value=0.2),
        "polynomial": S.polynomial(0.1, 200, end_value=0.001, power=2.0),
        "polynomial_cycle": S.polynomial(0.1, 70, end_value=0.01, power=0.5, cycle=True),
        "polynomial_begin": S.polynomial(0.1, 100, transition_begin=30),
        "inverse_time": S.inverse_time(0.1, 10, 0.5),
        "inverse_time_stair": S.inverse_time(0.1, 10, 0.5, power=1.5, staircase=True),
        "inverse_sqrt": S.inverse_sqrt(0.1),
        "inverse_sqrt_ts": S.inverse_sqrt(0.1, timescale=40),
        "cosine": cos,
        "cosine_alpha_exp": S.cosine(0.1, 300, alpha=0.05, exponent=2.0),
        "linear": S.linear(0.0, 0.1, 100),
        "linear_begin": S.linear(0.1, 0.02, 77, transition_begin=13),
        "warmup_shift": S.warmup(cos, 20, init_value=0.001),
        "warmup_noshift": S.warmup(S.exponential(0.1, 30, 0.7), 25, shift=False),
        "warmup_zero": S.warmup(cos, 0),
        "warmup_cosine": S.warmup_cosine(0.1, 50, 400, init_value=0.0, end_value=0.001),
        "warmup_cosine_keras": S.warmup_cosine(0.1, 50, 350, end_value=0.001, exponent=1.5,
                                               warmup_in_decay=False),
        "cosine_restarts": S.cosine_restarts(0.1, 50),
        "cosine_restarts_mul": S.cosine_restarts(0.1, 10, t_mul=2, eta_min=0.001, m_mul=0.8),
        "cosine_restarts_real": S.cosine_restarts(0.1, 7, t_mul=1.5),
        "one_cycle": S.one_cycle(0.1, 500),
        "one_cycle_lin3": S.one_cycle(0.1, 400, pct_start=0.25, anneal_strategy="linear",
                                      three_phase=True),
        "cyclic": S.cyclic(0.001, 0.1, 40),
        "cyclic_tri2": S.cyclic(0.001, 0.1, 30, 50, mode="triangular2"),
        "cyclic_exp": S.cyclic(0.001, 0.1, 25, mode="exp_range", gamma=0.995),
        "join": S.join([S.linear(0.0, 0.1, 20), cos, S.constant(0.001)], [20, 120]),
        "nested": S.join([S.warmup(S.step(0.1, 10), 5), S.join([cos, cos], [30])], [40]),
    }


CASES = _cases()
STEPS = np.concatenate([
    np.arange(0, 700, dtype=np.float64),
    np.linspace(0, 650, 517),
    [1e6, 1e9, 1e12, 2.0**60],
])


@pytest.fixture(autouse=True)
def _compiled():
    with fastclip.use_implementation("c"):
        yield


@pytest.mark.parametrize("name", sorted(CASES))
def test_c_equals_reference_scalar(name):
    s = CASES[name]
    low = s._fc_lowered
    c = np.array([C.evaluate(low, float(x)) for x in STEPS])
    r = np.array([R.evaluate(low, float(x)) for x in STEPS])
    # both use the C library's functions in the same order: identical or 1 ulp
    np.testing.assert_array_max_ulp(c, r, maxulp=1)
    # the public object's scalar call is the C path
    assert [s(float(x)) for x in STEPS[:50]] == c[:50].tolist()
    assert all(math.isfinite(v) for v in c)


@pytest.mark.parametrize("name", sorted(CASES))
def test_c_equals_reference_array(name):
    s = CASES[name]
    low = s._fc_lowered
    c_arr = C.evaluate(low, STEPS)
    r_arr = R.evaluate(low, STEPS)
    c_sc = np.array([C.evaluate(low, float(x)) for x in STEPS])
    # the C array loop and the C scalar call run the same code
    np.testing.assert_array_equal(c_arr, c_sc)
    # NumPy's vectorised cos/pow/log may differ from the C library's by an ulp,
    # which a subtraction like 1 + cos(x) near x = pi can amplify
    np.testing.assert_allclose(c_arr, r_arr, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(CASES))
def test_large_step_is_final_value(name):
    s = CASES[name]
    v = s(1e12)
    assert math.isfinite(v) and v >= 0
    assert math.isfinite(s(10**12)) and s(np.array([1e12]))[0] == v


def test_large_step_values():
    assert CASES["cosine"](1e12) == 0.0
    assert CASES["linear"](1e12) == 0.1
    assert CASES["exponential_all"](1e12) == 0.01
    assert CASES["exponential_grow"](1e12) == 0.2
    assert CASES["one_cycle"](1e12) == CASES["one_cycle"](499)
    assert CASES["warmup_cosine"](1e12) == pytest.approx(0.001, rel=1e-15)
    assert CASES["join"](1e12) == 0.001



@given(
    init=st.floats(0.0, 10.0),
    frac=st.floats(0.0, 1.0),
    steps_=st.floats(0.5, 1e4),
    power=st.floats(0.1, 4.0),
    x=st.lists(st.floats(0.0, 1e5), min_size=1, max_size=20),
    kind=st.sampled_from(["polynomial", "cosine", "exponential", "inverse_time",
                          "cosine_restarts", "cyclic", "warmup_cosine"]),
)
def test_hypothesis_c_equals_reference(init, frac, steps_, power, x, kind):
    if kind == "polynomial":
        s = S.polynomial(init, steps_, init * frac, power, cycle=frac > 0.5)
    elif kind == "cosine":
        s = S.cosine(init, steps_, alpha=frac, exponent=power)
    elif kind == "exponential":
        s = S.exponential(init, steps_, max(frac, 1e-3), staircase=power > 2)
    elif kind == "inverse_time":
        s = S.inverse_time(init, steps_, frac, power)
    elif kind == "cosine_restarts":
        s = S.cosine_restarts(init, steps_, t_mul=1 + power, m_mul=frac)
    elif kind == "cyclic":
        s = S.cyclic(init * frac, init, steps_, steps_ * power, mode="triangular2")
    else:
        s = S.warmup_cosine(init, steps_, steps_ * (1 + power), end_value=init * frac)
    arr = np.array(x)
    low = s._fc_lowered
    c = np.array([C.evaluate(low, v) for v in x])
    r = np.array([R.evaluate(low, v) for v in x])
    np.testing.assert_array_max_ulp(c, r, maxulp=1)
    np.testing.assert_array_equal(C.evaluate(low, arr), c)
    np.testing.assert_allclose(R.evaluate(low, arr), c, rtol=1e-12, atol=1e-15)
    for big in (1e12, 2.0**62):
        v = s(big)
        assert math.isfinite(v) and v >= 0 and v == R.evaluate(low, big)


# ---------------------------------------------------------------------------
# published optax / Keras formulas, computed by hand
# ---------------------------------------------------------------------------


def test_optax_cosine_decay_schedule():
    # optax: init * ((1 - alpha) * (0.5 * (1 + cos(pi * min(t, T) / T))) ** exponent + alpha)
    s = S.cosine(0.5, 100, alpha=0.1, exponent=2.0)
    for t in (0, 25, 50, 99, 100, 150):
        c = 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100))
        assert s(t) == pytest.approx(0.5 * (0.9 * c**2 + 0.1), rel=1e-15)
    assert s(50) == pytest.approx(0.5 * (0.9 * 0.25 + 0.1), rel=1e-15)


def test_optax_warmup_cosine_decay_schedule():
    # optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, 0.1): decay over 100 steps
    s = S.warmup_cosine(1.0, 10, 110, init_value=0.0, end_value=0.1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5, rel=1e-15)
    assert s(10) == 1.0
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-15)
    assert s(110) == pytest.approx(0.1, rel=1e-15)
    # Keras CosineDecay(0.0, 100, alpha=0.1, warmup_target=1.0, warmup_steps=10): same here
    k = S.warmup_cosine(1.0, 10, 100, end_value=0.1, warmup_in_decay=False)
    assert [k(t) for t in (0, 5, 10, 60, 110)] == pytest.approx([s(t) for t in (0, 5, 10, 60, 110)])


def test_optax_exponential_decay():
    s = S.exponential(1.0, 10, 0.5, transition_begin=5, staircase=False, end_value=0.2)
    assert s(0) == 1.0 and s(5) == 1.0
    assert s(15) == pytest.approx(0.5, rel=1e-15)
    assert s(20) == pytest.approx(0.5**1.5, rel=1e-15)
    assert s(100) == 0.2
    st_ = S.exponential(1.0, 10, 0.5, staircase=True)
    assert (st_(9.9), st_(10), st_(29)) == (1.0, 0.5, 0.25)


def test_optax_piecewise_constant_and_join_and_linear():
    # optax.piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.1}): switches at the boundary
    s = S.piecewise_constant([10, 20], [1.0, 0.5, 0.05])
    assert [s(t) for t in (9, 10, 19, 20)] == [1.0, 0.5, 0.5, 0.05]
    # Keras PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.05]): switches after it
    k = S.piecewise_constant([10, 20], [1.0, 0.5, 0.05], switch="after")
    assert [k(t) for t in (10, 11, 20, 21)] == [1.0, 0.5, 0.5, 0.05]
    # optax.join_schedules: each schedule from its own step 0, the switch at the boundary
    j = S.join([S.constant(1.0), S.linear(0.5, 0.0, 10)], [5])
    assert [j(t) for t in (4, 5, 10, 15, 20)] == [1.0, 0.5, 0.25, 0.0, 0.0]
    # optax.linear_schedule(0.1, 0.3, 4, transition_begin=2)
    lin = S.linear(0.1, 0.3, 4, transition_begin=2)
    assert lin(0) == pytest.approx(0.1) and lin(4) == pytest.approx(0.2) and lin(6) == 0.3


def test_keras_polynomial_inverse_time_restarts():
    # PolynomialDecay(0.1, 100, 0.01, power=0.5, cycle=True) at step 150: T = 200
    p = S.polynomial(0.1, 100, end_value=0.01, power=0.5, cycle=True)
    assert p(150) == pytest.approx(0.09 * (1 - 150 / 200) ** 0.5 + 0.01, rel=1e-15)
    assert p(0) == pytest.approx(0.1) and p(100) == pytest.approx(0.01)
    # InverseTimeDecay(0.1, 10, 0.5): 0.1 / (1 + 0.5 * t / 10)
    it = S.inverse_time(0.1, 10, 0.5)
    assert it(30) == pytest.approx(0.1 / 2.5, rel=1e-15)
    its = S.inverse_time(0.1, 10, 0.5, staircase=True)
    assert its(39) == pytest.approx(0.1 / 2.5, rel=1e-15)
    # CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5): period 2 runs 30..70 at peak 0.25
    r = S.cosine_restarts(1.0, 10, t_mul=2, m_mul=0.5)
    assert r(30) == pytest.approx(0.25, rel=1e-15)
    assert r(50) == pytest.approx(0.125, rel=1e-15)
    assert r(10) == pytest.approx(0.5, rel=1e-15)
    assert S.inverse_sqrt(1.0)(3) == 0.5


def test_warmup_shift_rules():
    inner = S.linear(1.0, 0.0, 100)
    a = S.warmup(inner, 10, init_value=0.0)
    b = S.warmup(inner, 10, init_value=0.0, shift=False)
    assert a(5) == pytest.approx(0.5) and a(10) == 1.0 and a(60) == pytest.approx(0.5)
    assert b(5) == pytest.approx(0.45) and b(10) == pytest.approx(0.9) and b(60) == pytest.approx(0.4)
    assert S.warmup(inner, 0)(7) == inner(7)


# ---------------------------------------------------------------------------
# steps: layouts, dtypes, bad input
# ---------------------------------------------------------------------------


def test_array_layouts_and_dtypes():
    s = CASES["warmup_cosine"]
    base = np.arange(24, dtype=np.float64).reshape(4, 6) * 17
    ref = np.array([[s(float(v)) for v in row] for row in base])
    for arr in (base, np.asfortranarray(base), base[:, ::2], base[::-1, ::-1], base.T):
        out = s(arr)
        assert out.shape == arr.shape and out.dtype == np.float64
        np.testing.assert_array_equal(out, np.array([[s(float(v)) for v in r] for r in arr]))
    for dt in (np.int64, np.int32, np.float32, np.uint8, np.int16, ">f8", ">i8"):
        arr = base.astype(dt) if np.dtype(dt).itemsize > 1 else (base % 200).astype(dt)
        np.testing.assert_array_equal(s(arr), [[s(float(v)) for v in r] for r in arr])
    np.testing.assert_array_equal(s(base[0, ::-1]), ref[0, ::-1])
    z = s(np.array(5.0))
    assert z.shape == () and float(z) == s(5.0)
    assert s(np.array([])).shape == (0,)
    assert s(np.zeros((3, 0))).shape == (3, 0)
    assert s([1, 2, 3]).tolist() == [s(1), s(2), s(3)]
    assert s(np.int64(7)) == s(7) and s(np.float32(7.5)) == s(7.5)
    assert isinstance(s(np.int64(7)), float) and isinstance(s(7), float)
    big = np.arange(300_000, dtype=np.int64)  # the OpenMP path
    np.testing.assert_array_equal(s(big)[::9973], [s(int(v)) for v in big[::9973]])


@pytest.mark.parametrize("impl", ["c", "python"])
def test_bad_steps(impl):
    s = CASES["cosine"]
    with fastclip.use_implementation(impl):
        for bad in (-1, -0.5, float("nan"), float("inf"), 10**400, np.float64(-1)):
            with pytest.raises(ValueError, match="step must be a finite number >= 0"):
                s(bad)
        for bad in ("3", None, True, 1j, object(), {"a": 1}):
            with pytest.raises(TypeError, match="step"):
                s(bad)
        with pytest.raises(ValueError, match=r"steps\[1, 2\] must be a finite number >= 0, got -3.0"):
            s(np.array([[0, 1, 2], [3, 4, -3]]))
        with pytest.raises(ValueError, match=r"steps\[2\] .* got nan"):
            s(np.array([0.0, 1.0, np.nan]))
        with pytest.raises(TypeError, match="steps must be an array of real numbers"):
            s(np.array([True, False]))
        with pytest.raises(TypeError, match="steps must be an array of real numbers"):
            s(np.array(["a"]))


def test_implementation_switch(monkeypatch):
    s = S.cosine(0.1, 100)
    calls = []
    real = R.evaluate

    def spy(low, step):
        calls.append(step)
        return real(low, step)

    monkeypatch.setattr(R, "evaluate", spy)
    import fastclip._schedules as cmod
    # the compiled module looked R.evaluate up at import: patch its binding too
    monkeypatch.setattr(cmod, "_ref", R)
    with fastclip.use_implementation("python"):
        assert s(30) == pytest.approx(real(s._fc_lowered, 30.0), rel=0, abs=0)
        s(np.arange(3))
    assert len(calls) == 2
    s(30)
    assert len(calls) == 2


# ---------------------------------------------------------------------------
# objects: equality, hashing, repr, pickle, dicts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trips(name):
    s = CASES[name]
    assert isinstance(s, S.Schedule)
    p = pickle.loads(pickle.dumps(s))
    assert p == s and hash(p) == hash(s) and type(p) is type(s)
    np.testing.assert_array_equal(p(STEPS), s(STEPS))
    ns = {k: getattr(S, k) for k in S.__all__}
    assert eval(repr(s), ns) == s
    d = s.to_dict()
    assert d["kind"] == s.kind
    again = S.from_dict(json.loads(json.dumps(d)))
    assert again == s and S.Schedule.from_dict(d) == s
    np.testing.assert_array_equal(again(STEPS), s(STEPS))


def test_equality_by_parameters():
    assert S.cosine(0.1, 100) == S.cosine(0.1, 100.0)
    assert S.cosine(0.1, 100) != S.cosine(0.1, 101)
    assert S.cosine(0.1, 100) != S.linear(0.1, 0.0, 100)
    assert S.cosine(0.1, 100) != "cosine"
    assert len({S.constant(1.0), S.constant(1), S.constant(2.0)}) == 2
    assert repr(S.step(0.1, 30)) == "step(init_value=0.1, step_size=30, gamma=0.1)"
    ref = R.Schedule("cosine", S.cosine(0.1, 100).params, S.cosine(0.1, 100)._fc_lowered)
    assert ref == S.cosine(0.1, 100) and hash(ref) == hash(S.cosine(0.1, 100))
    assert ref(np.arange(5.0)).tolist() == pytest.approx(S.cosine(0.1, 100)(np.arange(5.0)))
    # immutable
    with pytest.raises(AttributeError):
        S.cosine(0.1, 100).kind = "x"
    p = S.cosine(0.1, 100).params
    p["init_value"] = 5.0
    assert S.cosine(0.1, 100).params["init_value"] == 0.1


# ---------------------------------------------------------------------------
# bad parameters
# ---------------------------------------------------------------------------

BAD = [
    (S.constant, (-0.1,), {}, ValueError, "value must be >= 0"),
    (S.constant, (float("nan"),), {}, ValueError, "value must not be NaN"),
    (S.constant, ("0.1",), {}, TypeError, "value must be a real number"),
    (S.constant, (float("inf"),), {}, ValueError, "value must be finite"),
    (S.step, (0.1, 0), {}, ValueError, "step_size must be > 0"),
    (S.step, (0.1, 10, -0.5), {}, ValueError, "gamma must be >= 0"),
    (S.step, (0.1, 10, 1.5), {}, ValueError, "gamma must be <= 1"),
    (S.cosine_restarts, (0.1, 10), {"m_mul": 1.5}, ValueError, "m_mul must be <= 1"),
    (S.multistep, (0.1, [10, 5]), {}, ValueError, "milestones must be strictly increasing"),
    (S.multistep, (0.1, [10, 10]), {}, ValueError, "duplicate"),
    (S.multistep, (0.1, 10), {}, TypeError, "milestones must be a sequence"),
    (S.piecewise_constant, ([10, 20], [1.0, 0.5]), {}, ValueError, "values must have"),
    (S.piecewise_constant, ([10, float("nan")], [1, 2, 3]), {}, ValueError, r"boundaries\[1\]"),
    (S.piecewise_constant, ([10], [1, 2]), {"switch": "before"}, ValueError, "switch"),
    (S.exponential, (0.1, 0, 0.5), {}, ValueError, "transition_steps must be > 0"),
    (S.exponential, (0.1, -5, 0.5), {}, ValueError, "transition_steps must be > 0"),
    (S.exponential, (0.1, 10, -0.5), {}, ValueError, "decay_rate must be > 0"),
    (S.exponential, (0.1, 10, 1.5), {}, ValueError, "end_value"),
    (S.exponential, (0.1, 10, 0.5), {"end_value": 0.2}, ValueError, "end_value must be <="),
    (S.exponential, (0.1, 10, 0.5), {"transition_begin": -1}, ValueError, "transition_begin"),
    (S.exponential, (0.1, 10, 0.5), {"staircase": 1}, TypeError, "staircase must be a bool"),
    (S.polynomial, (0.1, 0), {}, ValueError, "decay_steps must be > 0"),
    (S.polynomial, (0.1, 10), {"power": 0}, ValueError, "power must be > 0"),
    (S.inverse_time, (0.1, 10, -1.0), {}, ValueError, "decay_rate must be >= 0"),
    (S.inverse_sqrt, (0.1,), {"timescale": 0}, ValueError, "timescale must be > 0"),
    (S.cosine, (0.1, 0), {}, ValueError, "decay_steps must be > 0"),
    (S.cosine, (-0.1, 10), {}, ValueError, "init_value must be >= 0"),
    (S.linear, (0.1, 0.0, 0), {}, ValueError, "transition_steps must be > 0"),
    (S.warmup, (lambda t: 0.1, 10), {}, TypeError, "schedule must be a fastclip schedule"),
    (S.warmup, (S.constant(0.1), -1), {}, ValueError, "warmup_steps must be >= 0"),
    (S.warmup_cosine, (0.1, 100, 50), {}, ValueError, "warmup_steps must be < decay_steps"),
    (S.warmup_cosine, (0.1, 100, 100), {}, ValueError, "warmup_steps must be < decay_steps"),
    (S.warmup_cosine, (0.1, 10, 100), {"exponent": float("nan")}, ValueError, "exponent"),
    (S.cosine_restarts, (0.1, 0), {}, ValueError, "t_0 must be > 0"),
    (S.cosine_restarts, (0.1, 10), {"t_mul": 0.5}, ValueError, "t_mul must be >= 1"),
    (S.one_cycle, (0.1, 0), {}, ValueError, "total_steps must be >= 1"),
    (S.one_cycle, (0.1, 10.5), {}, TypeError, "total_steps must be an integer"),
    (S.one_cycle, (0.1, 100), {"pct_start": 1.5}, ValueError, "pct_start must be in"),
    (S.one_cycle, (0.1, 100), {"pct_start": 0.0}, ValueError, "empty phase"),
    (S.one_cycle, (0.1, 100), {"anneal_strategy": "exp"}, ValueError, "anneal_strategy"),
    (S.one_cycle, (0.1, 100), {"div_factor": 0}, ValueError, "div_factor must be > 0"),
    (S.cyclic, (0.1, 1.0, 0), {}, ValueError, "step_size_up must be > 0"),
    (S.cyclic, (0.1, 1.0, 10), {"mode": "sine"}, ValueError, "mode must be one of"),
    (S.cyclic, (0.1, 1.0, 10), {"mode": "exp_range", "gamma": 1.5}, ValueError, "gamma"),
    (S.join, ([S.constant(1.0)], [5]), {}, ValueError, "boundaries must have"),
    (S.join, ([S.constant(1.0), S.constant(2.0)], [-5]), {}, ValueError, r"boundaries\[0\]"),
    (S.join, ([], []), {}, ValueError, "schedules must not be empty"),
    (S.join, ([S.constant(1.0), 0.5], [5]), {}, TypeError, r"schedules\[1\]"),
    (S.reduce_on_plateau, (0.1,), {"factor": 1.0}, ValueError, "factor must be < 1.0"),
    (S.reduce_on_plateau, (0.1,), {"mode": "up"}, ValueError, "mode must be one of"),
    (S.reduce_on_plateau, (0.1,), {"patience": -1}, ValueError, "patience must be >= 0"),
    (S.reduce_on_plateau, (0.1,), {"threshold_mode": "x"}, ValueError, "threshold_mode"),
]


@pytest.mark.parametrize("fn,args,kwargs,exc,msg", BAD, ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_parameters(fn, args, kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        fn(*args, **kwargs)


def test_from_dict_errors():
    with pytest.raises(TypeError, match="d must be a dict"):
        S.from_dict([1])
    with pytest.raises(ValueError, match="'kind'"):
        S.from_dict({"value": 1.0})
    with pytest.raises(ValueError, match="kind must be one of"):
        S.from_dict({"kind": "nope"})
    with pytest.raises(TypeError):
        S.from_dict({"kind": "constant", "value": 1.0, "extra": 2})


# ---------------------------------------------------------------------------
# reduce_on_plateau
# ---------------------------------------------------------------------------


def _run_plateau(impl, metrics, **kw):
    with fastclip.use_implementation(impl):
        p = S.reduce_on_plateau(1.0, **kw)
    return [p.step(m) for m in metrics], p


@pytest.mark.parametrize("kw", [
    {},
    {"mode": "max", "patience": 2, "cooldown": 3, "factor": 0.5},
    {"threshold_mode": "abs", "threshold": 0.05, "patience": 0, "min_lr": 0.05},
    {"mode": "max", "threshold_mode": "abs", "threshold": 0.1, "eps": 0.3, "factor": 0.5},
])
def test_plateau_c_equals_reference(kw, rng):
    metrics = list(np.cumsum(rng.standard_normal(300)) * 0.1 + 5)
    metrics[17] = float("nan")
    c, pc = _run_plateau("c", metrics, **kw)
    r, pr = _run_plateau("python", metrics, **kw)
    assert c == r
    assert pc.state_dict() == pr.state_dict()
    assert min(c) < 1.0 or kw.get("eps")


def test_plateau_state_and_pickle():
    p = S.reduce_on_plateau(0.1, patience=1, cooldown=1)
    for m in (1.0, 1.0, 1.0, 0.5, 0.6):
        p.step(m)
    assert p.lr == pytest.approx(0.01) and p(5) == p.lr and p(np.arange(3)).tolist() == [p.lr] * 3
    sd = p.state_dict()
    q = S.reduce_on_plateau(0.1)
    q.load_state_dict(sd)
    assert q.state_dict() == sd
    r = pickle.loads(pickle.dumps(p))
    assert r.state_dict() == sd
    for m in (0.7, 0.8, 0.9):
        assert p.step(m) == q.step(m) == r.step(m)
    assert "ReduceLROnPlateau(init_value=0.1" in repr(p)
    assert p.to_dict()["kind"] == "reduce_on_plateau"
    with pytest.raises(ValueError, match="missing"):
        q.load_state_dict({"lr": 0.1})
    with pytest.raises(ValueError, match="lr"):
        q.load_state_dict(dict(sd, lr=-1.0))
    assert q.state_dict() == p.state_dict()
    with pytest.raises(TypeError, match="metric must be a real number"):
        p.step("low")
    with pytest.raises(ValueError, match="step must be"):
        p(-1)


# ---------------------------------------------------------------------------
# plot_schedule
# ---------------------------------------------------------------------------


def test_plot_schedule():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = fastclip.plot_schedule(CASES["one_cycle"], 500, label="1cycle")
    line = ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_ydata(), CASES["one_cycle"](np.arange(500)))
    _fig, ax2 = plt.subplots()
    assert fastclip.plot_schedule(lambda t: 0.1 / (t + 1), [0, 1, 3], ax=ax2) is ax2
    assert ax2.get_lines()[0].get_ydata().tolist() == [0.1, 0.05, 0.025]
    plt.close("all")
    with pytest.raises(TypeError, match="sched must be"):
        fastclip.plot_schedule(3.0, 10)
    with pytest.raises(ValueError, match="steps"):
        fastclip.plot_schedule(CASES["cosine"], [-1, 2])


def test_plot_schedule_without_matplotlib(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "fastclip\[plot\]"'):
        fastclip.plot_schedule(CASES["cosine"], 10)


def test_reference_objects_when_not_compiled(monkeypatch):
    # without the extension, the factories build reference schedules
    monkeypatch.setattr(S._fam, "_compiled", None)
    s = S.warmup(S.cosine(0.1, 100), 10)
    assert type(s) is R.Schedule and isinstance(s, S.Schedule)
    monkeypatch.undo()
    c = S.warmup(S.cosine(0.1, 100), 10)
    assert type(c) is C.Schedule and c == s
    np.testing.assert_allclose(s(STEPS), c(STEPS), rtol=1e-13, atol=1e-15)
    assert s(37) == c(37)
    assert pickle.loads(pickle.dumps(s)) == c
    with pytest.raises(TypeError, match="abstract"):
        S.Schedule()


def test_array_independent_of_threads():
    from fastclip import _common

    steps = np.arange(400_000, dtype=np.float64) * 0.37
    outs = {}
    for serial in (False, True):
        _common.set_serial_only(serial)
        try:
            outs[serial] = {n: CASES[n](steps) for n in ("cosine_restarts_real", "one_cycle",
                                                        "nested", "linear", "step")}
        finally:
            _common.set_serial_only(False)
    for n in outs[False]:
        np.testing.assert_array_equal(outs[False][n], outs[True][n])
