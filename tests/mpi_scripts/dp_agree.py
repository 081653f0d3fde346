"""One rank differing from the others: every rank raises, none hangs or steps alone.

Errors raised on one rank inside a training step (its clipper, its optimiser, its
validation, a callback that exits), and settings or data that differ across ranks
(which would make the replicas take different updates without a word).
"""

import numpy as np
from _common import expect, run

import fastclip
from fastclip import nn, optim
from fastclip.distributed import DataParallel, shard_slice


def _data():
    X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    return X, y


def _same_everywhere(comm, model):
    blob = b"".join(p.data.tobytes() for p in model.parameters())
    return len(set(comm.allgather(blob))) == 1


class _Picky:
    """A clipper that raises on one rank at its second call."""

    def __init__(self, bad):
        self.bad, self.calls = bad, 0

    def clip_(self, grads, params=None, sqnorms=None):
        self.calls += 1
        if self.bad and self.calls == 2:
            raise ValueError("clipper boom")
        return fastclip.clip_grad_norm_(grads, 1.0)

    def _agreement(self):
        return ()


def main(comm):
    rank, size = comm.Get_rank(), comm.Get_size()
    last = rank == size - 1
    X, y = _data()

    def fit(m, **kw):
        opt = kw.pop("optimizer", None) or optim.SGD(m.parameters(), lr=0.1)
        return fastclip.fit(m, X, y, optimizer=opt, **{"epochs": 1, "batch_size": 16,
                                                       "progress": False, "comm": comm, **kw})

    # fit: a clipper raising on one rank; every rank raises before any rank steps
    m = nn.MLP([4, 8, 2], rng=0)
    expect(ValueError, fit, m, clipper=_Picky(last), match="boom")
    assert _same_everywhere(comm, m)

    # fit: validation raising on one rank only
    def val_loss(out, t):
        if last and out.shape[0] == 10:
            raise ValueError("validation boom")
        return nn.softmax_cross_entropy(out, t)

    expect(ValueError, fit, nn.MLP([4, 8, 2], rng=0), loss=val_loss, classification=True,
           validation=(X[:10], y[:10]), match="boom")

    # fit: a callback that exits on one rank (SystemExit is not an Exception)
    def leave(epoch, hist):
        if last:
            raise SystemExit(0)

    if last:
        expect(SystemExit, fit, nn.MLP([4, 8, 2], rng=0), callbacks=[leave])
    else:
        expect(RuntimeError, fit, nn.MLP([4, 8, 2], rng=0), callbacks=[leave],
               match="SystemExit")

    # fit: settings that would give the replicas different updates
    for kw, what in (({"optimizer": "lr"}, "the optimiser"),
                     ({"clipper": "autoclip" if last else None}, "the clipper"),
                     ({"monitor": fastclip.GradientMonitor("skip", factor=5.0 if last
                                                           else 10.0)},
                      "the monitor's settings")):
        m = nn.MLP([4, 8, 2], rng=0)
        if kw.get("optimizer") == "lr":
            kw = {"optimizer": optim.SGD(m.parameters(), lr=0.2 if last else 0.1)}
        before = [p.data.copy() for p in m.parameters()]
        expect(ValueError, fit, m, **kw, match=f"{what} must be the same on every rank")
        assert all(np.array_equal(a, p.data) for a, p in zip(before, m.parameters()))

    # fit: each rank given its own data of the same shape
    Xr = X + np.float32(rank)
    m = nn.MLP([4, 8, 2], rng=0)
    expect(ValueError, fastclip.fit, m, Xr, y, epochs=1, batch_size=16, progress=False,
           comm=comm, match="same training data")

    # DataParallel: an optimiser on a subset of the parameters on one rank
    m = nn.MLP([4, 8, 2], rng=0)
    ps = m.parameters()
    expect(ValueError, DataParallel, m, optim.SGD(ps[:2] if last else ps, lr=0.1), comm,
           match="model.parameters()")
    # DataParallel: a clipper on one rank only, or another learning rate
    expect(ValueError, DataParallel, m, optim.SGD(ps, lr=0.1), comm,
           clipper=(lambda g: fastclip.clip_grad_norm_(g, 1.0)) if last else None,
           match="the clipper must be the same")
    expect(ValueError, DataParallel, m, optim.SGD(ps, lr=0.5 if last else 0.1), comm,
           match="the optimiser must be the same")
    # DataParallel: the optimiser raising on one rank (here a KeyboardInterrupt): every
    # rank raises, that rank its own exception, and the next step's collectives line up
    # (the other ranks did step: the replicas are then made equal again by a broadcast)
    dp = DataParallel(m, optim.SGD(ps, lr=0.1), comm)
    sl = shard_slice(16, comm)
    dp.step(X[:16][sl], y[:16][sl], nn.softmax_cross_entropy)
    before = [p.data.copy() for p in m.parameters()]
    real_step = dp.optimizer.step

    def failing(*a, **k):
        raise KeyboardInterrupt

    if last:
        dp.optimizer.step = failing
    e = expect(BaseException, dp.step, X[:16][sl], y[:16][sl], nn.softmax_cross_entropy)
    assert isinstance(e, KeyboardInterrupt if last else RuntimeError), repr(e)
    dp.optimizer.step = real_step
    if last:
        assert all(np.array_equal(a, p.data) for a, p in zip(before, m.parameters()))
    from fastclip.distributed import broadcast_parameters

    broadcast_parameters([p.data for p in m.parameters()], comm)
    dp.step(X[:16][sl], y[:16][sl], nn.softmax_cross_entropy)
    dp.check_replicas()


if __name__ == "__main__":
    run(main)
