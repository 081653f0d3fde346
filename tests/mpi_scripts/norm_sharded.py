"""Sharded get_total_norm / clip_grad_norm_ / clip_by_global_norm (run under mpiexec).

Every rank builds the same full list of arrays and keeps its own block (block
sizes differ, rank 0's block may be empty); the sharded results must equal the
single-process results on the full list, bit for bit, on every rank.
"""

import math

import numpy as np
from _common import expect, run

import fastclip
from fastclip.distributed import allreduce_norm


def full_list(seed, n_arrays):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_arrays):
        shape = [(), (7,), (5, 3), (4, 3, 2), (0,)][i % 5]
        dt = np.float32 if i % 3 == 0 else np.float64
        a = np.asarray(rng.standard_normal(shape), dtype=dt)
        if i % 4 == 1:
            a = np.asfortranarray(a)
        out.append(a)
    return out


def blocks(n, size):
    # Uneven blocks; rank 0 gets nothing when there are enough ranks.
    cuts = [0] + [min(n, (r * (r + 1) * n) // (size * (size + 1))) for r in range(1, size)] + [n]
    if size > 1:
        cuts[1] = 0
    return [(cuts[r], cuts[r + 1]) for r in range(size)]


def mine(lst, comm):
    lo, hi = blocks(len(lst), comm.Get_size())[comm.Get_rank()]
    return lst[lo:hi]


def same_on_all_ranks(comm, value):
    bits = np.array([value], dtype=np.float64).view(np.int64)[0]
    allbits = comm.allgather(int(bits))
    assert len(set(allbits)) == 1, allbits


def main(comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    for impl in ("c", "python"):
        with fastclip.use_implementation(impl):
            for seed, n_arrays, scale in [(0, 11, 1.0), (1, 7, 1e200), (2, 6, 1e-200), (3, 1, 1.0)]:
                full = [np.multiply(a, scale, out=a) if a.dtype == np.float64 else a
                        for a in full_list(seed, n_arrays)]
                local = mine(full, comm)
                for p in (1.0, 2.0, 3.5, math.inf, "inf"):
                    want = fastclip.get_total_norm(full, p)
                    got = fastclip.get_total_norm(local, p, comm=comm)
                    assert got == want or (math.isnan(got) and math.isnan(want)), (p, got, want)
                    same_on_all_ranks(comm, got)
                    got2 = allreduce_norm(fastclip.array_norms(local, p), p, comm)
                    assert got2 == want, (p, got2, want)
                    # clip_grad_norm_: same coefficient, same bits as one process.
                    ref = [a.copy() for a in full]
                    want_total = fastclip.clip_grad_norm_(ref, 0.5, p)
                    mine_copy = [a.copy() for a in local]
                    got_total = fastclip.clip_grad_norm_(mine_copy, 0.5, p, comm=comm)
                    assert got_total == want_total
                    for a, b in zip(mine_copy, mine(ref, comm)):
                        assert a.dtype == b.dtype and np.array_equal(a, b)
                new, g = fastclip.clip_by_global_norm(local, 0.25, comm=comm)
                ref_new, ref_g = fastclip.clip_by_global_norm(full, 0.25)
                assert g == ref_g
                same_on_all_ranks(comm, g)
                for a, b in zip(new, mine(ref_new, comm)):
                    assert np.array_equal(a, b)
                # use_norm given: no communication, same as the local call.
                new2, g2 = fastclip.clip_by_global_norm(local, 0.25, use_norm=ref_g, comm=comm)
                assert g2 == ref_g and all(np.array_equal(a, b) for a, b in zip(new2, new))

    # Adaptive clippers with comm: the global norm of every rank's arrays, the same state
    # and the same decision on every rank as one clipper on the concatenated list.
    from fastclip import AGC, AutoClip, ZClip

    for make in (lambda c: AutoClip(50.0, comm=c), lambda c: ZClip(z_thresh=0.5, warmup_steps=3, comm=c),
                 lambda c: AGC(0.05, comm=c)):
        one, sharded = make(None), make(comm)
        rng = np.random.default_rng(5)
        clipped = 0
        params = [np.asarray(np.asarray(a, dtype=np.float64) + 1.0) for a in full_list(9, 8)]
        for step in range(8):
            full = [np.asarray(rng.standard_normal(a.shape) * (1 + 3 * (step % 3)))
                    for a in params]
            local = [a.copy() for a in mine(full, comm)]
            n1 = one.clip_(full, params)
            n2 = sharded.clip_(local, mine(params, comm))
            assert n1 == n2, (type(one).__name__, step, n1, n2)
            clipped += one.last_clipped
            same_on_all_ranks(comm, n2)
            for a, b in zip(local, mine(full, comm)):
                assert np.array_equal(a, b)
        assert clipped >= 1, (type(one).__name__, clipped)
        s1, s2 = one.state_dict(), sharded.state_dict()
        assert s1.keys() == s2.keys() and all(
            np.array_equal(np.asarray(s1[k], dtype=object), np.asarray(s2[k], dtype=object))
            for k in s1), (s1, s2)
    expect(TypeError, AutoClip, comm="world", match="comm")
    # Bad input to a clipper on one rank only: every rank raises, no deadlock, and the
    # next collective call still works (the ranks are in step).
    for make in (lambda: AutoClip(50.0, comm=comm), lambda: ZClip(comm=comm),
                 lambda: AGC(0.05, comm=comm)):
        clipper = make()
        g = [np.ones(3), np.ones(2)]
        p = [np.ones(3), np.ones(2)]
        if rank == size - 1:
            g = [np.ones(3, dtype=np.int64), np.ones(2)]
        e = expect(TypeError, clipper.clip_, g, p)
        if rank != size - 1:
            assert f"rank {size - 1} of {size}" in str(e), str(e)
        if isinstance(clipper, AGC):
            e = expect(ValueError, clipper.clip_, [np.ones(3)], None if rank == 0 else [np.ones(3)])
            assert "params" in str(e), str(e)
        good = [np.ones(3), np.ones(2)]
        assert clipper.clip_(good, [np.ones(3), np.ones(2)]) == math.sqrt(5 * size)

    # Clippers whose settings or state differ between ranks would take different
    # decisions on the same global norm: every rank raises, nothing is clipped.
    last = rank == size - 1
    for make in (lambda: AutoClip(10.0 if last else 50.0, comm=comm),
                 lambda: ZClip(z_thresh=3.0 if last else 2.5, comm=comm),
                 lambda: AGC(0.02 if last else 0.05, comm=comm)):
        g = [np.full(3, 5.0)]
        expect(ValueError, make().clip_, g, [np.ones(3)], match="settings and state")
        assert (g[0] == 5.0).all()
    ac = AutoClip(50.0, comm=comm)
    if last:
        ac.load_state_dict({**ac.state_dict(), "history": [1.0, 2.0]})
    expect(ValueError, ac.clip_, [np.full(3, 5.0)], match="settings and state")

    # A single ndarray per rank: the norm of all ranks' arrays together.
    x = np.arange(size * 4, dtype=np.float64).reshape(size, 4)
    assert fastclip.get_total_norm(x[rank], comm=comm) == fastclip.get_total_norm(list(x))

    # Non-finite on the last rank only: every rank raises, naming that rank; nothing modified.
    g = [np.ones(3), np.full(2, 2.0)]
    if rank == size - 1:
        g[1][0] = np.nan
    before = [a.copy() for a in g]
    e = expect(FloatingPointError, fastclip.clip_grad_norm_, g, 1.0,
               error_if_nonfinite=True, comm=comm)
    assert f"grads[1] on rank {size - 1}" in str(e), str(e)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(g, before))
    e = expect(FloatingPointError, fastclip.get_total_norm, g, 2.0, True, comm=comm)
    assert f"on rank {size - 1}" in str(e)
    # Without error_if_nonfinite: NaN norm everywhere, NaN gradients everywhere (PyTorch).
    t = fastclip.clip_grad_norm_(g, 1.0, comm=comm)
    assert math.isnan(t) and np.isnan(g[0]).all()

    # Bad input on one rank only: every rank raises the same type, no deadlock.
    bad = [np.ones(3, dtype=np.int64)] if rank == size - 1 else [np.ones(3)]
    e = expect(TypeError, fastclip.get_total_norm, bad, comm=comm)
    if rank != size - 1:
        assert f"rank {size - 1} of {size}" in str(e) and "grads[0]" in str(e), str(e)
    ro = np.ones(3)
    if rank == 0:
        ro.setflags(write=False)
    expect(ValueError, fastclip.clip_grad_norm_, [ro], 1.0, comm=comm, match="read-only")
    mx = -1.0 if rank == 0 else 1.0
    expect(ValueError, fastclip.clip_grad_norm_, [np.ones(2)], mx, comm=comm, match="max_norm")
    # Arguments that must agree across ranks.
    expect(ValueError, fastclip.get_total_norm, [np.ones(2)], 2.0 if rank else 1.0, comm=comm,
           match="norm_type must be the same on every rank")
    expect(ValueError, fastclip.clip_grad_norm_, [np.ones(2)], 1.0 + rank, comm=comm,
           match="max_norm")
    expect(ValueError, allreduce_norm, [1.0, -2.0] if rank == 0 else [1.0], 2.0, comm,
           match="local_norms")
    # comm validation (local, no collective involved).
    expect(TypeError, fastclip.get_total_norm, [np.ones(2)], comm="world", match="comm")
    expect(TypeError, fastclip.clip_grad_norm_, [np.ones(2)], 1.0, comm=object(), match="comm")
    expect(TypeError, fastclip.clip_by_global_norm, [np.ones(2)], 1.0, comm=1, match="comm")
    from mpi4py import MPI

    expect(ValueError, fastclip.get_total_norm, [np.ones(2)], comm=MPI.COMM_NULL, match="COMM_NULL")
    # Sub-communicators work too: the norm over the ranks of the sub-group only.
    sub = comm.Split(rank % 2, rank)
    v = fastclip.get_total_norm([np.full(1, float(rank + 1))], 1.0, comm=sub)
    assert v == float(sum(r + 1 for r in range(size) if r % 2 == rank % 2))
    sub.Free()

    # Arguments that fail before the collective on one rank only (not an iterable,
    # a non-bool error_if_nonfinite): every rank raises, and the ranks stay in step.
    last = rank == size - 1
    g = [np.ones(3)]
    for call in (lambda: fastclip.get_total_norm("abc" if last else g, comm=comm),
                 lambda: fastclip.clip_grad_norm_(5 if last else g, 1.0, comm=comm),
                 lambda: fastclip.clip_by_global_norm(None if last else g, 1.0, comm=comm),
                 lambda: fastclip.get_total_norm(g, error_if_nonfinite="yes" if last else False,
                                                 comm=comm),
                 lambda: AutoClip(comm=comm)("abc" if last else [np.ones(2)])):
        expect(TypeError, call)
    # use_norm given on one rank only: every rank raises instead of the others waiting
    # in the all-gather of the norms; nothing is returned half-clipped
    expect(ValueError, fastclip.clip_by_global_norm, g, 1.0, use_norm=2.0 if last else None,
           comm=comm, match="use_norm")
    expect(ValueError, fastclip.clip_by_global_norm, g, 1.0, use_norm=-1.0, comm=comm,
           match="use_norm")
    expect(ValueError, fastclip.clip_by_global_norm, g, 1.0, use_norm=8.0 if last else 4.0,
           comm=comm, match="use_norm")
    # AGC: a params shape mismatch on one rank is found before any rank clips in place
    ga = [np.full((4, 3), 10.0)]
    pa = [np.ones((5, 3)) if last else np.ones((4, 3))]
    expect(ValueError, AGC(0.01, comm=comm).clip_, ga, pa, match="shape")
    assert (ga[0] == 10.0).all()
    assert fastclip.get_total_norm([np.ones(4)], comm=comm) == math.sqrt(4 * size)

    # fit: a loss that raises on one rank only makes every rank raise (no rank waits in
    # the step's all-reduce)
    from fastclip import nn

    X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    calls = [0]

    def loss(out, t):
        calls[0] += 1
        if last and calls[0] == 3:
            raise ValueError("boom in loss")
        return nn.softmax_cross_entropy(out, t)

    expect(ValueError, fastclip.fit, nn.MLP([4, 8, 2], rng=0), X, y, loss=loss, epochs=1,
           batch_size=16, classification=True, progress=False, comm=comm, match="boom")

    from fastclip.distributed import DataParallel

    # settings that would make the ranks take different steps are refused on every rank;
    # a rank given another kind of generator shuffles with the root's
    for kw in ({"epochs": 2 if last else 1}, {"batch_size": 32 if last else 16},
               {"monitor": "raise" if last else "skip"}):
        expect(ValueError, fastclip.fit, nn.MLP([4, 8, 2], rng=0), X, y, progress=False,
               comm=comm, **{"epochs": 1, "batch_size": 16, **kw}, match="same on every rank")
    mseed = nn.MLP([4, 8, 2], rng=0)
    fastclip.fit(mseed, X, y, epochs=1, batch_size=16, progress=False, comm=comm,
                 seed=np.random.Generator(np.random.MT19937(1)) if last else 0)
    wb = b"".join(p.data.tobytes() for p in mseed.parameters())
    assert len(set(comm.allgather(wb))) == 1
    m2 = nn.MLP([4, 8, 2], rng=0)
    expect(ValueError, DataParallel, m2, fastclip.optim.SGD(m2.parameters(), lr=0.1), comm,
           on_nonfinite="raise" if last else "skip", match="same on every rank")

    # broadcast_parameters: a bad root on one rank, or different roots, raise everywhere
    from fastclip.distributed import broadcast_parameters

    w = [np.full(3, float(rank))]
    expect(ValueError, broadcast_parameters, w, comm, root=size + 5 if last else 0,
           match="root")
    expect(ValueError, broadcast_parameters, w, comm, root=1 if last else 0,
           match="the same on every rank")
    assert (w[0] == rank).all()

    # callbacks: one raising on one rank makes every rank raise; one asking to stop on
    # one rank stops every rank after the same epoch
    def boom(epoch, hist):
        if last:
            raise RuntimeError("callback boom")

    expect(RuntimeError, fastclip.fit, nn.MLP([4, 8, 2], rng=0), X, y, epochs=2,
           batch_size=16, progress=False, comm=comm, callbacks=[boom], match="boom")
    h = fastclip.fit(nn.MLP([4, 8, 2], rng=0), X, y, epochs=3, batch_size=16, progress=False,
                     comm=comm, callbacks=[lambda e, hist: last])
    assert h.n_epochs == 1 and h.stopped_early

    # fit with batch normalisation: a rank's block of one row is refused on every rank
    # before training; the running statistics are rank 0's on every rank after an
    # epoch, so the replicas agree in evaluation mode too
    bn = nn.MLP([4, 8, 2], batchnorm=True, rng=0)
    expect(ValueError, fastclip.fit, bn, X, y, epochs=1, batch_size=2 * size - 1,
           progress=False, comm=comm, match="row")
    h = fastclip.fit(bn, X, y, epochs=2, batch_size=8 * size, progress=False, seed=0,
                     validation=(X, y), comm=comm)
    bufs = b"".join(b.tobytes() for _, b in bn.named_buffers())
    assert len(set(comm.allgather(bufs))) == 1
    assert len(set(comm.allgather(h.val_loss.tobytes()))) == 1

    # An adaptive clipper given to fit/DataParallel clips the reduced gradients: one
    # built with comm (which would add up the ranks' identical gradients as shards) is
    # refused on every rank; one without comm is used through its clip_.
    expect(ValueError, fastclip.fit, nn.MLP([4, 8, 2], rng=0), X, y, epochs=1,
           progress=False, comm=comm, clipper=AutoClip(comm=comm), match="own comm")
    from fastclip.distributed import DataParallel, shard_slice

    m = nn.MLP([4, 8, 2], rng=0)
    expect(ValueError, DataParallel, m, fastclip.optim.SGD(m.parameters(), lr=0.1), comm,
           clipper=AutoClip(comm=comm), match="own comm")
    ac = AutoClip(50.0)
    dpar = DataParallel(m, fastclip.optim.SGD(m.parameters(), lr=0.1), comm, clipper=ac)
    sl = shard_slice(16, comm)
    dpar.step(X[:16][sl], y[:16][sl], nn.softmax_cross_entropy)
    assert len(ac.history) == 1
    assert len(set(comm.allgather(float(ac.history[0])))) == 1

    # a clipper raising on one rank only makes every rank raise, with no update applied;
    # the next step runs on every rank
    def picky(grads):
        if last:
            raise ValueError("clipper boom")
        return fastclip.clip_grad_norm_(grads, 1.0)

    m3 = nn.MLP([4, 8, 2], rng=0)
    dp3 = DataParallel(m3, fastclip.optim.SGD(m3.parameters(), lr=0.1), comm, clipper=picky)
    before = [p.data.copy() for p in m3.parameters()]
    expect(ValueError, dp3.step, X[:16][sl], y[:16][sl], nn.softmax_cross_entropy,
           match="boom")
    assert all(np.array_equal(a, p.data) for a, p in zip(before, m3.parameters()))
    dp3.clipper = lambda grads: fastclip.clip_grad_norm_(grads, 1.0)
    assert dp3.step(X[:16][sl], y[:16][sl], nn.softmax_cross_entropy).applied
    dp3.check_replicas()


if __name__ == "__main__":
    run(main)
