"""One optimiser stepped from several threads gives the sequential result."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
from _testing import implementation_fixture

from fastclip.optim import SGD, Adam, RMSprop

impl = implementation_fixture("optim")


def _make(cls, rng):
    params = [rng.standard_normal((64, 32)), rng.standard_normal(32)]
    kw = {"momentum": 0.9} if cls is not Adam else {}
    # an lr that depends on the step: two threads using the same step_count would
    # apply the same lr twice and give another result than the sequential run
    return params, cls([p for p in params], lr=lambda t: 0.01 / (1 + t), clip_norm=1.0, **kw)


@pytest.mark.parametrize("cls", [SGD, Adam, RMSprop])
def test_threads_give_the_sequential_result(impl, cls):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((64, 32)), rng.standard_normal(32)]
    p_seq, seq = _make(cls, np.random.default_rng(1))
    p_thr, thr = _make(cls, np.random.default_rng(1))
    n_threads, n_steps = 4, 50
    for _ in range(n_threads * n_steps):
        seq.step(grads)
    start = threading.Barrier(n_threads)
    errors = []

    def work():
        try:
            start.wait()
            for _ in range(n_steps):
                thr.step(grads)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert thr.step_count == seq.step_count == n_threads * n_steps
    for a, b in zip(p_thr, p_seq):
        np.testing.assert_array_equal(a, b)
    st_t, st_s = thr.state_dict(), seq.state_dict()
    for da, db in zip(st_t["state"], st_s["state"]):
        for k in da:
            np.testing.assert_array_equal(da[k], db[k])


def test_state_dict_during_steps_is_a_whole_step(impl):
    # SGD with momentum from step 1: after k whole steps of gradient g the buffer is
    # g * (1 + m + ... + m^(k-1)); a torn read would match no k
    w = np.zeros(1000)
    opt = SGD([w], lr=0.0, momentum=0.5)
    g = [np.ones(1000)]
    stop = threading.Event()

    def stepper():
        while not stop.is_set():
            opt.step(g)

    t = threading.Thread(target=stepper)
    t.start()
    try:
        for _ in range(200):
            sd = opt.state_dict()
            buf = sd["state"][0]["momentum_buffer"]
            k = sd["step_count"]
            expected = 0.0 if k == 0 else (1 - 0.5**k) / 0.5
            np.testing.assert_allclose(buf, expected, rtol=1e-12)
    finally:
        stop.set()
        t.join()


def test_copies_get_their_own_lock(impl):
    w = np.ones(3)
    opt = Adam([w], lr=0.1)
    opt.step([np.ones(3)])
    for other in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert other._lock is not opt._lock
        other.step([np.ones(3)])
        assert other.step_count == 2
    assert opt.step_count == 1
