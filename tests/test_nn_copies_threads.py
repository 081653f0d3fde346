"""fastclip.nn models copied (deepcopy, pickle) behave like the original; forward is
safe from several threads. Both implementations (C and the NumPy reference)."""

import copy
import pickle
import threading

import numpy as np
import pytest

import fastclip
from fastclip import nn, optim
from fastclip.train import fit

IMPLS = ["c", "python"]


def _copies(model):
    return {
        "deepcopy": copy.deepcopy(model),
        "pickle": pickle.loads(pickle.dumps(model)),
    }


def _data(n=96, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return centers[y] + rng.standard_normal((n, d)), y


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("make", [
    lambda: nn.MLP([6, 16, 16, 3], rng=0, dtype=np.float64),
    lambda: nn.MLP([6, 8, 3], activation="prelu", rng=1, dtype=np.float32),
    lambda: nn.Linear(6, 3, rng=2, dtype=np.float64),
], ids=["mlp64", "prelu32", "linear"])
def test_copy_reports_the_same_grad_sqnorms(impl, make):
    with fastclip.use_implementation(impl):
        model = make()
        x = np.random.default_rng(3).standard_normal((5, 6)).astype(model.dtype)
        labels = np.array([0, 1, 2, 0, 1])
        for name, c in _copies(model).items():
            for m in (model, c):
                _, d = nn.softmax_cross_entropy(m(x), labels)
                m.backward(d, input_grad=False)
            assert (c.grad_sqnorms() > 0).all(), name
            np.testing.assert_array_equal(c.grad_sqnorms(), model.grad_sqnorms(), err_msg=name)
            for g, h in zip(c.gradients(), model.gradients()):
                np.testing.assert_array_equal(g, h, err_msg=name)
            # the copy's arrays are its own
            assert not any(np.shares_memory(a, b) for a, b in
                           zip([p.data for p in c.parameters()], [p.data for p in model.parameters()]))


@pytest.mark.parametrize("impl", IMPLS)
def test_copy_between_forward_and_backward(impl):
    with fastclip.use_implementation(impl):
        model = nn.MLP([6, 8, 3], rng=0, dtype=np.float64)
        x = np.random.default_rng(0).standard_normal((4, 6))
        _, d = nn.softmax_cross_entropy(model(x), np.array([0, 1, 2, 1]))
        for name, c in _copies(model).items():
            c.backward(d)
            model.backward(d)
            np.testing.assert_array_equal(c.grad_sqnorms(), model.grad_sqnorms(), err_msg=name)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_train_exactly_like_the_original(impl, how):
    """fit with clip_norm and with an adaptive clipper: the same history and parameters."""
    X, y = _data()
    with fastclip.use_implementation(impl):
        base = nn.MLP([6, 16, 3], rng=5, dtype=np.float64)
        copy_ = _copies(base)[how]
        histories, params = [], []
        for m in (base, copy_):
            opt = optim.SGD(m.parameters(), 0.2, momentum=0.9, clip_norm=0.5)
            h = fit(m, X, y, optimizer=opt, epochs=2, batch_size=16, clipper="autoclip",
                    seed=1, progress=False)
            histories.append(h)
            params.append([p.data.copy() for p in m.parameters()])
        assert (histories[0].grad_norm > 0).all()
        np.testing.assert_array_equal(histories[0].grad_norm, histories[1].grad_norm)
        np.testing.assert_array_equal(histories[0].layer_norms, histories[1].layer_norms)
        np.testing.assert_array_equal(histories[0].loss, histories[1].loss)
        for a, b in zip(*params):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_copy_optimizer_step_with_sqnorms_stays_finite(impl):
    with fastclip.use_implementation(impl):
        m = copy.deepcopy(nn.MLP([6, 8, 3], rng=0, dtype=np.float32))
        opt = optim.Adam(m.parameters(), 1e-2, clip_norm=1.0)
        x = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
        for _ in range(3):
            _, d = nn.softmax_cross_entropy(m(x), np.arange(8) % 3)
            m.backward(d, input_grad=False)
            norm = opt.step(m.gradients(), sqnorms=m.grad_sqnorms())
            assert norm > 0
        assert all(np.isfinite(p).all() for p in m.parameters())


@pytest.mark.parametrize("impl", IMPLS)
def test_inference_from_two_threads_gets_its_own_output(impl):
    """Two threads share one model and one batch size; each must see its own result."""
    with fastclip.use_implementation(impl):
        model = nn.MLP([64, 128, 128, 64], rng=0, dtype=np.float64)
        rng = np.random.default_rng(0)
        inputs = [rng.standard_normal((128, 64)) for _ in range(2)]
        expected = [model(x).copy() for x in inputs]
        errors: list[str] = []
        start = threading.Barrier(2)

        def work(k):
            start.wait()
            for it in range(40):
                out = model(inputs[k])
                if not np.array_equal(out, expected[k]):
                    errors.append(f"thread {k}, iteration {it}: another thread's output")
                    return

        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]


def test_backward_uses_the_calling_threads_forward():
    model = nn.MLP([4, 5, 2], rng=0, dtype=np.float64)
    x = np.ones((3, 4))
    _, d = nn.softmax_cross_entropy(model(x), np.array([0, 1, 0]))
    seen = []

    def other():
        try:
            model.backward(d)
        except RuntimeError as e:
            seen.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen and "before forward" in seen[0]
    model.backward(d)  # the main thread's forward is still there
    assert (model.grad_sqnorms() > 0).all()


def test_buffers_of_finished_threads_are_released():
    model = nn.MLP([4, 5, 2], rng=0, dtype=np.float64)
    for _ in range(5):
        t = threading.Thread(target=model, args=(np.ones((3, 4)),))
        t.start()
        t.join()
    model(np.ones((3, 4)))
    assert len(model._runs) <= 2  # this thread's, plus at most the last finished one's
