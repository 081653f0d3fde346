"""A non-finite gradient on one rank: every rank takes the same decision (under mpiexec).

The last rank's shard gets a NaN (or inf) at one step; with on_nonfinite="raise"
every rank raises FloatingPointError naming that rank, with "skip" every rank
drops the update, with "rollback" every rank restores the last snapshot and halves
the learning rate. No deadlock, replicas stay identical, training continues.
"""

import numpy as np
from _common import expect, run

from fastclip import nn, optim
from fastclip.distributed import DataParallel, shard_slice
from fastclip.nn import softmax_cross_entropy

SIZES, BATCH = [6, 8, 3], 12


def main(comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    last = size - 1
    for policy, bad_value in [("raise", np.nan), ("skip", np.inf), ("rollback", np.nan)]:
        model = nn.MLP(SIZES, dtype=np.float64, rng=7)
        opt = optim.SGD(model.parameters(), 0.1, momentum=0.9)
        dp = DataParallel(model, opt, comm, on_nonfinite=policy)
        rng = np.random.default_rng(99)
        for s in range(5):
            x = rng.standard_normal((BATCH, SIZES[0]))
            y = rng.integers(0, SIZES[-1], BATCH)
            sl = shard_slice(BATCH, comm)
            xs, ys = x[sl].copy(), y[sl]
            if s == 3 and rank == last:
                xs[0, 0] = bad_value
            before = model.state_dict()
            if s != 3:
                assert dp.step(xs, ys, softmax_cross_entropy).applied
                continue
            if policy == "raise":
                e = expect(FloatingPointError, dp.step, xs, ys, softmax_cross_entropy)
                assert f"rank(s) [{last}] of {size}" in str(e), str(e)
                assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
                assert opt.step_count == 3
            elif policy == "skip":
                res = dp.step(xs, ys, softmax_cross_entropy)
                assert not res.applied and dp.skipped == 1
                assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
            else:
                res = dp.step(xs, ys, softmax_cross_entropy)
                assert not res.applied and dp.rollbacks == 1 and opt.lr_scale == 0.5
                assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
                assert opt.step_count == 3
            dp.check_replicas()
        assert opt.step_count == 4
        dp.check_replicas()
        assert np.isfinite(model.parameters()[0].data).all()

    # An exception inside one rank's forward/loss: every rank raises, no deadlock.
    model = nn.MLP(SIZES, dtype=np.float64, rng=7)
    dp = DataParallel(model, optim.SGD(model.parameters(), 0.1), comm)
    x = np.ones((2, SIZES[0]))
    y = np.array([0, 1]) if rank != last else np.array([0, 99])  # label out of range
    e = expect(Exception, dp.step, x, y, softmax_cross_entropy)
    if rank == last:
        assert isinstance(e, ValueError) and "labels" in str(e), repr(e)
    else:
        assert isinstance(e, ValueError) and f"rank {last} of {size} failed" in str(e), repr(e)
    # Empty shards are fine (weight 0): the batch is smaller than the number of ranks.
    x1, y1 = np.ones((1, SIZES[0])), np.array([1])
    sl = shard_slice(1, comm)
    assert dp.step(x1[sl], y1[sl], softmax_cross_entropy).applied
    dp.check_replicas()


if __name__ == "__main__":
    run(main)
