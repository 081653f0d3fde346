"""Ranks whose gradient lists disagree get a clear error, on every rank (under mpiexec)."""

import numpy as np
from _common import expect, run

from fastclip import nn, optim
from fastclip.distributed import (
    DataParallel,
    GradientAllreducer,
    broadcast_parameters,
    check_same_shapes,
)


def main(comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    last = size - 1

    def dp_for(sizes, dtype=np.float64):
        model = nn.MLP(sizes, dtype=dtype, rng=0)
        return DataParallel(model, optim.SGD(model.parameters(), 0.1), comm)

    # A different hidden width on the last rank.
    e = expect(ValueError, dp_for, [4, 9 if rank == last else 8, 2])
    assert f"grads[0] has shape (4, 9) float64 on rank {last} but (4, 8) float64 on rank 0" in str(
        e
    ), str(e)
    # A different number of layers.
    e = expect(ValueError, dp_for, [4, 8, 8, 2] if rank == last else [4, 8, 2])
    assert f"6 arrays on rank {last} but 4 on rank 0" in str(e), str(e)
    # A different dtype.
    e = expect(ValueError, dp_for, [4, 8, 2], np.float32 if rank == last else np.float64)
    assert "float32" in str(e) and f"rank {last}" in str(e), str(e)
    # Matching lists work.
    dp_for([4, 8, 2]).check_replicas()

    # The same checks on their own.
    mine = [np.zeros((2, 3)), np.zeros(3 + (rank == last))]
    e = expect(ValueError, check_same_shapes, mine, comm, "params")
    assert f"params[1] has shape ({3 + 1},) float64 on rank {last}" in str(e), str(e)
    expect(ValueError, broadcast_parameters, mine, comm, match="params differ across ranks")

    # Per step: a rank that passes a different list than at construction.
    grads = [np.ones((2, 3)), np.ones(3)]
    red = GradientAllreducer(grads, comm)
    res = red.reduce_(weight=2.0)
    assert res.weight == 2.0 * size and np.array_equal(grads[0], np.ones((2, 3)))
    other = [np.ones((3, 2)), np.ones(3)] if rank == last else grads
    e = expect(ValueError, red.reduce_, other)
    if rank == last:
        assert "do not match the list given at construction" in str(e), str(e)
        assert "grads[0] has shape (3, 2) float64 now but (2, 3) float64 at construction" in str(e)
    else:
        assert f"rank {last} of {size}" in str(e), str(e)
    # A bad weight on one rank.
    expect(ValueError, red.reduce_, weight=-1.0 if rank == 0 else 1.0, match="weight")
    # Weighted average: sum_r w_r g_r / sum_r w_r.
    for g in grads:
        g.fill(rank + 1.0)
    res = red.reduce_(weight=float(rank))
    wsum = sum(range(size))
    assert res.weight == wsum
    assert np.allclose(grads[1], sum(r * (r + 1.0) for r in range(size)) / wsum)
    # Finite float32 gradients so large that weight * gradient overflows: the average
    # is still finite (as on one process), on every rank, and no rank is flagged; an
    # empty shard's NaN gradient (weight 0) still contributes nothing.
    big = [np.zeros(4, np.float32), np.ones(2, np.float32)]
    redb = GradientAllreducer(big, comm)
    for sq in (None, [4 * (3e37 if rank % 2 else 1e37) ** 2, 2.0]):
        for a, v in zip(big, (3e37 if rank % 2 else 1e37, 1.0)):
            a.fill(v)
        if rank == 0 and size > 2:
            big[0].fill(np.nan)
        w = 0.0 if rank == 0 and size > 2 else 64.0
        res = redb.reduce_(weight=w, sqnorms=sq if w else None)
        assert res.nonfinite_ranks == 0 and not res.local_nonfinite
        vals = [3e37 if r % 2 else 1e37 for r in range(size) if not (r == 0 and size > 2)]
        want = sum(vals) / len(vals)
        assert np.isfinite(big[0]).all() and np.allclose(big[0], want, rtol=1e-6), big[0]
        assert np.allclose(big[1], 1.0)
    # Bad comm.
    expect(TypeError, GradientAllreducer, grads, "comm", match="comm must be an mpi4py")

    # fit(comm=) with a bad argument on one rank only: every rank raises, none waits in
    # the first collective; then a good fit runs (the ranks are still in step).
    from fastclip.train import fit

    X = np.random.default_rng(0).standard_normal((16, 4))
    y = np.arange(16) % 2
    model = nn.MLP([4, 8, 2], rng=0)
    e = expect(ValueError, fit, model, X, y, optimizer=optim.SGD(model.parameters(), 0.1), epochs=1,
               batch_size=0 if rank == last else 4, progress=False, seed=0, comm=comm)
    if rank == last:
        assert "batch_size" in str(e), str(e)
    else:
        assert f"rank {last} of {size}" in str(e) and "batch_size" in str(e), str(e)
    hist = fit(model, X, y, optimizer=optim.SGD(model.parameters(), 0.1), epochs=1, batch_size=4,
               progress=False, seed=0, comm=comm)
    assert len(hist) == 4, len(hist)


if __name__ == "__main__":
    run(main)
