"""Models for testing fit: a minimal NumPy model with fastclip.nn's interface
(FakeMLP, for testing fit alone) and an MLP that records its backward calls
(SpyMLP; the MPI scripts use it too)."""

import numpy as np

from fastclip import nn


class SpyMLP(nn.MLP):
    """Records the input_grad of every backward."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.input_grads = []

    def backward(self, dy, *, input_grad=True):
        self.input_grads.append(input_grad)
        return super().backward(dy, input_grad=input_grad)


class FakeMLP:
    """Dense ReLU network, weights (in, out), y = x @ W + b; float64 or float32."""

    def __init__(self, sizes, dtype=np.float64, seed=0, scale=1.0):
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.W, self.b = [], []
        for i, o in zip(sizes[:-1], sizes[1:]):  # noqa: RUF007
            self.W.append((rng.standard_normal((i, o)) * scale * np.sqrt(2.0 / i)).astype(dtype))
            self.b.append(np.zeros(o, dtype))
        self.gW = [np.zeros_like(w) for w in self.W]
        self.gb = [np.zeros_like(b) for b in self.b]
        self._sq = np.zeros(2 * len(self.W))
        self.forward_calls = 0

    def parameters(self):
        return [a for pair in zip(self.W, self.b) for a in pair]

    def gradients(self):
        return [a for pair in zip(self.gW, self.gb) for a in pair]

    def parameter_names(self):
        return [f"{i}.{k}" for i in range(len(self.W)) for k in ("weight", "bias")]

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.W[0].shape[0]:
            raise ValueError(f"x must have shape (n, {self.W[0].shape[0]}), got {x.shape}")
        self.forward_calls += 1
        self.acts = [x]
        h = x
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            h = h @ w + b
            if i < len(self.W) - 1:
                h = np.maximum(h, 0)
            self.acts.append(h)
        return h

    __call__ = forward

    def backward(self, dy):
        for i in reversed(range(len(self.W))):
            a = self.acts[i]
            self.gW[i][...] = a.T @ dy
            self.gb[i][...] = dy.sum(axis=0)
            if i:
                dy = (dy @ self.W[i].T) * (self.acts[i] > 0)
        with np.errstate(over="ignore", invalid="ignore"):
            self._sq[:] = [float(np.sum(np.square(g, dtype=np.float64)))
                           for g in self.gradients()]
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
    p = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = -float(np.mean(np.log(p[np.arange(n), labels] + 1e-300)))
    d = p
    d[np.arange(n), labels] -= 1
    return loss, d / n


def mse(pred, target):
    d = pred - target
    return float(np.mean(d * d)), 2 * d / d.size
