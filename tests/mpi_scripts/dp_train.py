"""Data-parallel training vs one process on the full batch (run under mpiexec).

Every rank trains its replica on its shard of each global batch (shards differ in
size when the batch does not divide evenly); rank 0 also trains a copy on the
full batch without MPI. After 20 steps the parameters must agree to 1e-12
(float64) and be identical on every rank.
"""

import numpy as np
from _common import run

from fastclip import nn, optim
from fastclip.distributed import DataParallel, shard_slice
from fastclip.nn import softmax_cross_entropy

STEPS, BATCH, SIZES = 20, 64, [12, 16, 16, 5]


def make(seed):
    model = nn.MLP(SIZES, dtype=np.float64, rng=seed)
    # lr and clip_norm chosen so that clipping is active on most steps.
    return model, optim.SGD(model.parameters(), 0.2, momentum=0.9, clip_norm=0.3)


def main(comm):
    rank = comm.Get_rank()
    rng = np.random.default_rng(123)
    X = rng.standard_normal((STEPS * BATCH, SIZES[0]))
    y = rng.integers(0, SIZES[-1], STEPS * BATCH)
    # Different initial parameters on every rank: the broadcast makes them rank 0's.
    model, opt = make(seed=1000 + rank)
    dp = DataParallel(model, opt, comm)
    dp.check_replicas()
    clipped = 0
    losses = []
    for s in range(STEPS):
        xb, yb = X[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH]
        sl = shard_slice(BATCH, comm)
        res = dp.step(xb[sl], yb[sl], softmax_cross_entropy)
        assert res.applied
        clipped += res.norm > 0.3
        losses.append(res.loss)
    dp.check_replicas()
    assert clipped >= STEPS // 2, clipped
    if rank == 0:
        ref, ref_opt = make(seed=1000)
        ref_losses = []
        for s in range(STEPS):
            xb, yb = X[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH]
            loss, d = softmax_cross_entropy(ref.forward(xb), yb)
            ref.backward(d)
            ref_opt.step(ref.gradients())
            ref_losses.append(loss)
        worst = 0.0
        for a, b in zip([q.data for q in model.parameters()], [q.data for q in ref.parameters()]):
            worst = max(worst, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
        print(f"max relative difference {worst:.3e}", flush=True)
        assert worst <= 1e-12, worst
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
        assert not np.array_equal(model.parameters()[0].data, make(1000)[0].parameters()[0].data)

    # The same through fastclip.train.fit(..., comm=comm): 2 epochs of 10 batches, shuffled
    # with seed 0, AutoClip after the reduction; rank 0 compares with fit on one process.
    from fastclip import AutoClip
    from fastclip.train import fit

    Xf, yf = X[: 10 * BATCH], y[: 10 * BATCH]
    model, opt = make(seed=2000 + rank)
    hist = fit(model, Xf, yf, optimizer=opt, epochs=2, batch_size=BATCH, clipper=AutoClip(25.0),
               monitor="skip", progress=False, seed=0, comm=comm)
    digests = comm.allgather(b"".join(p.tobytes() for p in [q.data for q in model.parameters()]))
    assert all(d == digests[0] for d in digests)
    if rank == 0:
        ref, ref_opt = make(seed=2000)
        ref_hist = fit(ref, Xf, yf, optimizer=ref_opt, epochs=2, batch_size=BATCH,
                       clipper=AutoClip(25.0), monitor="skip", progress=False, seed=0)
        worst = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                    for a, b in zip([q.data for q in model.parameters()], [q.data for q in ref.parameters()]))
        print(f"fit: max relative difference {worst:.3e}", flush=True)
        assert worst <= 1e-12, worst
        np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=1e-12)
        np.testing.assert_allclose(hist.grad_norm, ref_hist.grad_norm, rtol=1e-12)
        assert hist.n_steps == 20


if __name__ == "__main__":
    run(main)
