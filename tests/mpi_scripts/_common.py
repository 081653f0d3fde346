"""Shared by the scripts that tests/test_mpi.py runs under mpiexec."""

from __future__ import annotations

import sys
import traceback

import numpy as np


def expect(exc_type, fn, *args, match=None, **kwargs):
    """Call fn and return the exception it must raise (AssertionError otherwise)."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        if match is not None and match not in str(e):
            raise AssertionError(f"message {str(e)!r} does not contain {match!r}") from e
        return e
    raise AssertionError(f"{getattr(fn, '__name__', fn)} did not raise {exc_type.__name__}")


def run(main):
    """Run main(comm); print 'OK rank r' or the traceback, and exit non-zero on failure."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        main(comm)
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        comm.Abort(1)
    print(f"OK rank {comm.Get_rank()}", flush=True)


# A tiny MLP, loss and SGD following /work/CONTRACTS.md (fastclip.nn / fastclip.optim
# interfaces), so that the data-parallel scripts do not depend on those modules.
class TinyMLP:
    def __init__(self, sizes, rng, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.W = [rng.standard_normal((a, b)).astype(dtype) * np.sqrt(2.0 / a)
                  for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(b, dtype=dtype) for b in sizes[1:]]
        self.dW = [np.zeros_like(w) for w in self.W]
        self.db = [np.zeros_like(b) for b in self.b]
        self._sq = np.zeros(2 * len(self.W))

    def parameters(self):
        return [p for pair in zip(self.W, self.b) for p in pair]

    def gradients(self):
        return [g for pair in zip(self.dW, self.db) for g in pair]

    def parameter_names(self):
        return [f"{i}.{n}" for i in range(len(self.W)) for n in ("weight", "bias")]

    def forward(self, x):
        self._xs = []
        h = x
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            self._xs.append(h)
            h = h @ w + b
            if i < len(self.W) - 1:
                h = np.maximum(h, 0)
        return h

    __call__ = forward

    def backward(self, dy):
        for i in reversed(range(len(self.W))):
            x = self._xs[i]
            self.dW[i][...] = x.T @ dy
            self.db[i][...] = dy.sum(axis=0)
            if i:
                dy = (dy @ self.W[i].T) * (x > 0)
        self._sq[:] = [float(np.sum(g.astype(np.float64) ** 2)) for g in self.gradients()]
        return dy

    def grad_sqnorms(self):
        return self._sq.copy()

    def state_dict(self):
        return {n: p.copy() for n, p in zip(self.parameter_names(), self.parameters())}

    def load_state_dict(self, d):
        for n, p in zip(self.parameter_names(), self.parameters()):
            np.copyto(p, d[n])


def softmax_cross_entropy(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = float(-np.log(prob[np.arange(n), labels]).mean())
    d = prob
    d[np.arange(n), labels] -= 1
    return loss, d / n


class TinySGD:
    """PyTorch SGD with momentum and global-norm clipping (the fastclip.optim contract)."""

    def __init__(self, params, lr, momentum=0.0, *, clip_norm=None):
        import fastclip

        self._fc = fastclip
        self.params = list(params)
        self.base_lr = lr
        self.momentum = momentum
        self.clip_norm = clip_norm
        self.lr_scale = 1.0
        self.step_count = 0
        self.buf = [np.zeros_like(p) for p in self.params]

    @property
    def lr(self):
        return self.base_lr * self.lr_scale

    def step(self, grads, *, sqnorms=None, on_nonfinite="raise"):
        norm = self._fc.get_total_norm(grads)
        if not np.isfinite(norm):
            if on_nonfinite == "raise":
                raise FloatingPointError("non-finite gradient norm")
            return norm
        coef = 1.0
        if self.clip_norm is not None:
            coef = min(1.0, self.clip_norm / (norm + 1e-6))
        for p, g, b in zip(self.params, grads, self.buf):
            d = g * coef
            if self.momentum:
                b *= self.momentum
                b += d
                d = b
            p -= self.lr * d
        self.step_count += 1
        return norm

    def state_dict(self):
        return {"buf": [b.copy() for b in self.buf], "step_count": self.step_count}

    def load_state_dict(self, d):
        for b, s in zip(self.buf, d["buf"]):
            np.copyto(b, s)
        self.step_count = d["step_count"]
