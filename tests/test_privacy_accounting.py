"""Privacy accounting of fastclip.privacy against dp-accounting and Opacus."""

from __future__ import annotations

import math
import warnings

import pytest

from fastclip import privacy as P

dp_accounting = pytest.importorskip("dp_accounting")

# --- accounting --------------------------------------------------------------------


def _dpa_epsilon(sigma, q, steps, delta, kind):
    from dp_accounting import dp_event
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant
    ev = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    acc = (rdp_privacy_accountant.RdpAccountant(list(P.RDP_ORDERS)) if kind == "rdp"
           else pld_privacy_accountant.PLDAccountant())
    acc.compose(ev)
    return acc.get_epsilon(delta)


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_epsilon_equals_dp_accounting(kind):
    sigma, q, steps, delta = 1.1, 0.02, 150, 1e-5
    want = _dpa_epsilon(sigma, q, steps, delta, kind)
    got = P.compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta,
                            accountant=kind)
    assert got == pytest.approx(want, rel=1e-9)
    acc = P.PrivacyAccountant(kind)
    for _ in range(3):
        acc.step(noise_multiplier=sigma, sample_rate=q, steps=50)
    assert acc.history == [(sigma, q, 150)] and acc.steps == 150
    assert acc.get_epsilon(delta) == pytest.approx(want, rel=1e-9)


def test_epsilon_equals_opacus_rdp_and_noise_multiplier():
    pytest.importorskip("opacus")
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier
    sigma, q, steps, delta = 0.9, 0.01, 500, 1e-5
    o = RDPAccountant()
    o.history = [(sigma, q, steps)]
    got = P.compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)
    # both evaluate the subsampled Gaussian's RDP numerically at the same orders
    assert got == pytest.approx(o.get_epsilon(delta), rel=1e-4)
    with warnings.catch_warnings():  # Opacus warns when its largest order is optimal
        warnings.simplefilter("ignore", UserWarning)
        want = get_noise_multiplier(target_epsilon=3.0, target_delta=delta, sample_rate=q,
                                    epochs=5)
    mine = P.get_noise_multiplier(target_epsilon=3.0, target_delta=delta, sample_rate=q,
                                  epochs=5)
    # the same bisection; the two RDP evaluations may stop it one step apart
    assert mine == pytest.approx(want, rel=1e-2)
    eps = P.compute_epsilon(noise_multiplier=mine, sample_rate=q, steps=int(5 / q),
                            delta=delta)
    assert 3.0 - 0.01 <= eps <= 3.0


def test_accounting_edge_cases():
    assert P.compute_epsilon(noise_multiplier=0.0, sample_rate=0.1, steps=3,
                             delta=1e-5) == math.inf
    assert P.compute_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5) == 0
    one = P.compute_epsilon(noise_multiplier=2.0, sample_rate=1.0, steps=10, delta=1e-5)
    assert 0 < one < math.inf
    acc = P.PrivacyAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.1, steps=10)
    state = acc.state_dict()
    acc2 = P.PrivacyAccountant("pld")
    acc2.load_state_dict(state)
    assert acc2.mechanism == "rdp" and acc2.get_epsilon(1e-5) == acc.get_epsilon(1e-5)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: P.compute_epsilon(noise_multiplier=1, sample_rate=0.1, steps=1, delta=0.0),
         ValueError, "delta"),
        (lambda: P.compute_epsilon(noise_multiplier=1, sample_rate=0.1, steps=1, delta=1.0),
         ValueError, "delta"),
        (lambda: P.compute_epsilon(noise_multiplier=-1, sample_rate=0.1, steps=1, delta=0.1),
         ValueError, "noise_multiplier"),
        (lambda: P.compute_epsilon(noise_multiplier=1, sample_rate=0.0, steps=1, delta=0.1),
         ValueError, "sample_rate"),
        (lambda: P.compute_epsilon(noise_multiplier=1, sample_rate=1.1, steps=1, delta=0.1),
         ValueError, "sample_rate"),
        (lambda: P.compute_epsilon(noise_multiplier=1, sample_rate=0.5, steps=-1, delta=0.1),
         ValueError, "steps"),
        (lambda: P.PrivacyAccountant("gdp"), ValueError, "accountant"),
        (lambda: P.get_noise_multiplier(target_epsilon=1, target_delta=1e-5, sample_rate=0.1),
         ValueError, "epochs and steps"),
        (lambda: P.get_noise_multiplier(target_epsilon=0, target_delta=1e-5, sample_rate=0.1,
                                        steps=10), ValueError, "target_epsilon"),
        (lambda: P.get_noise_multiplier(target_epsilon=1, target_delta=2, sample_rate=0.1,
                                        steps=10), ValueError, "delta"),
    ],
)
def test_accounting_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_get_noise_multiplier_names_target_delta():
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"^target_delta must be in \(0, 1\)"):
            P.get_noise_multiplier(target_epsilon=1.0, target_delta=bad, sample_rate=0.01,
                                   epochs=1)


def test_noise_multiplier_for_less_than_one_step_is_an_error():
    """int(epochs / sample_rate) == 0 steps: an error naming epochs, raised at once
    (with no step every sigma gives epsilon 0, so no sigma meets the target)."""
    with pytest.raises(ValueError, match="epochs=0.1 at sample_rate=0.5 is less than one step"):
        P.get_noise_multiplier(target_epsilon=1.0, target_delta=1e-5, sample_rate=0.5,
                               epochs=0.1)


def test_accountant_state_is_checked_before_it_replaces_the_record():
    """A state without history (or with malformed entries) is an error naming it; the
    privacy already spent stays recorded."""
    a = P.PrivacyAccountant()
    a.step(noise_multiplier=1.0, sample_rate=0.1, steps=50)
    eps = a.get_epsilon(1e-5)
    for bad, exc in (({"mechanism": "rdp"}, ValueError),
                     ({"mechanism": "rdp", "histroy": [[1.0, 0.1, 5]]}, ValueError),
                     ({"mechanism": "rdp", "history": None}, TypeError),
                     ({"mechanism": "rdp", "history": "abc"}, TypeError),
                     ({"mechanism": "rdp", "history": [[1.0, 0.1]]}, ValueError),
                     (None, TypeError), ([], TypeError)):
        with pytest.raises(exc, match="state|history"):
            a.load_state_dict(bad)
        assert a.get_epsilon(1e-5) == eps
    b = P.PrivacyAccountant()
    b.load_state_dict(a.state_dict())
    assert b.get_epsilon(1e-5) == eps


@pytest.mark.parametrize("mech", ["rdp", "pld"])
def test_zero_step_entries_spend_nothing_and_hide_nothing(mech):
    """An entry of 0 steps (even with noise 0) is no step: the epsilon is that of the
    other entries, never 0 (privacy overstated) or inf."""
    want = P.compute_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=1e-5,
                             accountant=mech)
    a = P.PrivacyAccountant(mech)
    for hist in ([[0.0, 0.1, 0], [1.0, 0.1, 10]], [[1.0, 0.1, 10], [0.0, 1.0, 0]]):
        a.load_state_dict({"mechanism": mech, "history": hist})
        assert a.get_epsilon(1e-5) == pytest.approx(want, rel=1e-12) and want > 1
        assert a.steps == 10
    a.load_state_dict({"mechanism": mech, "history": [[0.0, 0.1, 0]]})
    assert a.get_epsilon(1e-5) == 0.0


def test_accountant_state_keeps_the_discretisation():
    a = P.PrivacyAccountant("pld", value_discretization_interval=1e-2)
    a.step(noise_multiplier=1.0, sample_rate=0.1, steps=20)
    b = P.PrivacyAccountant("pld")
    b.load_state_dict(a.state_dict())
    assert b.value_discretization_interval == 1e-2
    assert b.get_epsilon(1e-5) == a.get_epsilon(1e-5)
    with pytest.raises(ValueError, match="value_discretization_interval"):
        b.load_state_dict({**a.state_dict(), "value_discretization_interval": -1.0})
    assert b.value_discretization_interval == 1e-2 and b.steps == 20
