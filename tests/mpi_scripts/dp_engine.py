"""DataParallel on the shared step engine (under mpiexec): lr_factor and a monitor's own
settings apply, skipping never gives up without a monitor, no input gradient is computed,
and GradientExplosionError (a FloatingPointError) stops every rank."""

import sys
from pathlib import Path

import numpy as np
from _common import expect, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared test models
from _fake_model import SpyMLP  # noqa: E402

from fastclip import nn, optim
from fastclip.distributed import DataParallel, shard_slice
from fastclip.nn import softmax_cross_entropy
from fastclip.train import GradientExplosionError, GradientMonitor, fit

SIZES, BATCH = [6, 8, 3], 12


def batches(comm, n, bad_steps=(), bad_value=np.nan):
    rng = np.random.default_rng(5)
    last = comm.Get_size() - 1
    for s in range(n):
        x = rng.standard_normal((BATCH, SIZES[0]))
        y = rng.integers(0, SIZES[-1], BATCH)
        sl = shard_slice(BATCH, comm)
        xs, ys = x[sl].copy(), y[sl]
        if s in bad_steps and comm.Get_rank() == last:
            xs[0, 0] = bad_value
        yield s, xs, ys


def main(comm):
    # rollback with lr_factor (was a fixed 0.5)
    model = SpyMLP(SIZES, dtype=np.float64, rng=7)
    opt = optim.SGD(model.parameters(), 0.1, momentum=0.9)
    dp = DataParallel(model, opt, comm, on_nonfinite="rollback", lr_factor=0.25)
    for s, xs, ys in batches(comm, 6, bad_steps=(2, 4)):
        res = dp.step(xs, ys, softmax_cross_entropy)
        assert res.applied == (s not in (2, 4))
    assert dp.rollbacks == 2 and opt.lr_scale == 0.25 * 0.25, (dp.rollbacks, opt.lr_scale)
    assert opt.step_count == 4
    assert model.input_grads and not any(model.input_grads)  # input_grad=False every step
    assert [e.kind for e in dp.events] == ["nonfinite", "nonfinite"]
    dp.check_replicas()

    # skip without a monitor never gives up (more than the monitor default of 5 in a row)
    model = nn.MLP(SIZES, dtype=np.float64, rng=7)
    opt = optim.SGD(model.parameters(), 0.1)
    dp = DataParallel(model, opt, comm, on_nonfinite="skip")
    for _, xs, ys in batches(comm, 9, bad_steps=range(1, 9)):
        dp.step(xs, ys, softmax_cross_entropy)
    assert dp.skipped == 8 and opt.step_count == 1
    dp.check_replicas()

    # a monitor: its policy, lr_factor and checkpoint_every apply, and its max_rollbacks
    model = nn.MLP(SIZES, dtype=np.float64, rng=7)
    opt = optim.SGD(model.parameters(), 0.1)
    mon = GradientMonitor("rollback", lr_factor=0.3, checkpoint_every=1, max_rollbacks=1)
    dp = DataParallel(model, opt, comm, monitor=mon)
    it = batches(comm, 5, bad_steps=(1, 3), bad_value=np.inf)
    _, xs, ys = next(it)
    assert dp.step(xs, ys, softmax_cross_entropy).applied
    _, xs, ys = next(it)
    assert not dp.step(xs, ys, softmax_cross_entropy).applied
    assert opt.lr_scale == 0.3 and mon.rollbacks == 1
    _, xs, ys = next(it)
    assert dp.step(xs, ys, softmax_cross_entropy).applied
    _, xs, ys = next(it)
    e = expect(GradientExplosionError, dp.step, xs, ys, softmax_cross_entropy)
    assert "gave up after 1 rollbacks" in str(e), str(e)
    dp.check_replicas()

    # raise: a GradientExplosionError, still a FloatingPointError, on every rank
    model = nn.MLP(SIZES, dtype=np.float64, rng=7)
    dp = DataParallel(model, optim.SGD(model.parameters(), 0.1), comm)
    for s, xs, ys in batches(comm, 2, bad_steps=(1,)):
        if s == 1:
            e = expect(FloatingPointError, dp.step, xs, ys, softmax_cross_entropy)
            assert isinstance(e, GradientExplosionError) and "non-finite gradient on rank(s)" \
                in str(e), repr(e)
        else:
            dp.step(xs, ys, softmax_cross_entropy)

    # a monitor together with on_nonfinite is ambiguous: ValueError on every rank
    model = nn.MLP(SIZES, dtype=np.float64, rng=7)
    expect(ValueError, DataParallel, model, optim.SGD(model.parameters(), 0.1), comm,
           monitor=GradientMonitor("skip"), on_nonfinite="skip", match="either monitor")
    expect(TypeError, DataParallel, model, optim.SGD(model.parameters(), 0.1), comm,
           monitor="skip", match="monitor must be a fastclip.train.GradientMonitor")

    # fit(..., comm=comm) skips the input gradient too
    model = SpyMLP(SIZES, dtype=np.float64, rng=7)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, SIZES[0])), rng.integers(0, SIZES[-1], 40)
    fit(model, X, y, epochs=1, batch_size=20, seed=0, comm=comm, progress=False)
    assert model.input_grads == [False, False], model.input_grads


if __name__ == "__main__":
    run(main)
