"""Pytrees (nested dicts, lists, tuples) in the clipping functions, without JAX."""

from collections import OrderedDict, namedtuple

import numpy as np
import pytest

import fastclip

IMPLS = ["c", "python"]
Pair = namedtuple("Pair", "w b")


def _tree(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "dense": {"w": rng.standard_normal((3, 4)).astype(dtype), "b": np.full(4, 2.0, dtype)},
        "head": [rng.standard_normal(5).astype(dtype), (np.full(2, -3.0, dtype), None)],
        "pair": Pair(np.ones(2, dtype), np.arange(3, dtype=dtype)),
    }


def _leaves(t):
    if isinstance(t, dict):
        return [x for v in t.values() for x in _leaves(v)]
    if isinstance(t, (list, tuple)):
        return [x for v in t for x in _leaves(v)]
    return [] if t is None else [t]


def _same_structure(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same_structure(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_structure(x, y)


class ArrayLike:
    """Exposes only __array__, as a JAX CPU array does (read-only memory)."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        v = self._a.view()
        v.flags.writeable = False
        return v


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_of_place_functions_keep_the_structure(impl, dtype):
    tree = _tree(dtype)
    before = [x.copy() for x in _leaves(tree)]
    flat = _leaves(tree)
    with fastclip.use_implementation(impl):
        out = fastclip.clip_by_value(tree, -1.0, 1.0)
        _same_structure(out, tree)
        for o, w in zip(_leaves(out), fastclip.clip_by_value(flat, -1.0, 1.0)):
            assert np.array_equal(o, w) and o.dtype == dtype

        out = fastclip.clip_by_norm(tree, 1.5)
        _same_structure(out, tree)
        for o, w in zip(_leaves(out), fastclip.clip_by_norm(flat, 1.5)):
            assert np.array_equal(o, w)

        out, g = fastclip.clip_by_global_norm(tree, 1.5)
        want, wg = fastclip.clip_by_global_norm(flat, 1.5)
        assert g == wg
        _same_structure(out, tree)
        for o, w in zip(_leaves(out), want):
            assert np.array_equal(o, w)

        norms = fastclip.array_norms(tree)
        _same_structure(norms, {"dense": {"w": 0.0, "b": 0.0}, "head": [0.0, (0.0, None)],
                                "pair": Pair(0.0, 0.0)})
        assert all(type(v) is float for v in _leaves(norms))
        assert _leaves(norms) == list(fastclip.array_norms(flat))
        assert fastclip.get_total_norm(tree) == fastclip.get_total_norm(flat)
    for x, b in zip(_leaves(tree), before):
        assert np.array_equal(x, b)  # inputs untouched


def test_leaves_in_insertion_order_not_sorted():
    tree = {"z": np.full(1, 3.0), "a": np.full(1, 4.0)}
    assert list(fastclip.clip_by_value(tree, 0, 10)) == ["z", "a"]
    od = OrderedDict([("z", np.ones(1)), ("a", np.ones(1))])
    out = fastclip.clip_by_norm(od, 0.5)
    assert type(out) is OrderedDict and list(out) == ["z", "a"]


def test_flat_sequences_keep_their_old_results():
    a, b = np.full(2, 3.0), np.full(2, 4.0)
    assert isinstance(fastclip.clip_by_value([a, b], 0, 1), list)
    assert isinstance(fastclip.clip_by_value((a, b), 0, 1), tuple)
    assert isinstance(fastclip.clip_by_value(iter([a, b]), 0, 1), list)
    assert isinstance(fastclip.clip_by_value(a, 0, 1), np.ndarray)
    n = fastclip.array_norms((a, b))
    assert isinstance(n, np.ndarray) and n.shape == (2,)
    assert isinstance(fastclip.array_norms(iter([a, b])), np.ndarray)
    out, _ = fastclip.clip_by_global_norm([a, b], 1.0)
    assert isinstance(out, list)
    out, _ = fastclip.clip_by_global_norm(Pair(a, b), 1.0)
    assert type(out) is Pair


@pytest.mark.parametrize("impl", IMPLS)
def test_array_like_leaves_are_read(impl):
    with fastclip.use_implementation(impl):
        tree = {"w": ArrayLike(np.full(3, 5.0)), "b": ArrayLike(np.zeros(2))}
        out = fastclip.clip_by_value(tree, -1, 1)
        assert type(out["w"]) is np.ndarray and np.array_equal(out["w"], np.ones(3))
        out["w"][0] = 0.0  # a new, writeable NumPy array
        assert fastclip.array_norms(tree) == {"w": float(np.sqrt(75.0)), "b": 0.0}
        out, g = fastclip.clip_by_global_norm([ArrayLike(np.full(3, 5.0))], 1.0)
        assert isinstance(out[0], np.ndarray)
        assert fastclip.get_total_norm(tree) == g
        single = fastclip.clip_by_value(ArrayLike(np.full(2, 9.0)), 0, 1)
        assert isinstance(single, np.ndarray) and np.array_equal(single, np.ones(2))


@pytest.mark.parametrize("impl", IMPLS)
def test_in_place_functions_on_trees(impl):
    with fastclip.use_implementation(impl):
        tree = {"a": np.array([3.0]), "b": [np.array([4.0])]}
        assert fastclip.clip_grad_norm_(tree, 1.0) == 5.0
        np.testing.assert_allclose([tree["a"][0], tree["b"][0][0]], [0.6, 0.8], rtol=1e-6)
        fastclip.clip_grad_value_(tree, 0.7)
        assert tree["a"][0] == pytest.approx(0.6) and tree["b"][0][0] == 0.7


@pytest.mark.parametrize("impl", IMPLS)
def test_in_place_on_read_only_leaves_raises_the_usual_error(impl):
    with fastclip.use_implementation(impl):
        ro = np.ones(3)
        ro.flags.writeable = False
        ok = np.full(2, 10.0)
        for fn, args in [(fastclip.clip_grad_norm_, (1.0,)), (fastclip.clip_grad_value_, (1.0,)),
                         (fastclip.clip_grads_with_norm_, (1.0, 10.0))]:
            with pytest.raises(ValueError, match=r"^grads\['r'\]\[0\] is read-only; this "
                                                 "function modifies its arguments in place"):
                fn({"ok": ok, "r": [ro]}, *args)
            with pytest.raises(ValueError, match=r"^grads\['x'\] is read-only"):
                fn({"ok": ok, "x": ArrayLike(np.ones(2))}, *args)
        assert np.array_equal(ok, np.full(2, 10.0))


def test_bad_leaves_are_named_by_their_path():
    with pytest.raises(TypeError, match=r"^x\['a'\]\[1\] must be a numpy\.ndarray, got str"):
        fastclip.clip_by_value({"a": [np.ones(1), "s"]}, 0, 1)
    with pytest.raises(TypeError, match=r"^xs\['i'\] must have dtype float32 or float64, "
                                        "got int64"):
        fastclip.clip_by_global_norm({"i": np.ones(2, np.int64)}, 1.0)
    with pytest.raises(TypeError, match=r"^x must be a numpy\.ndarray or an iterable of them, "
                                        "got int"):
        fastclip.clip_by_norm(3, 1.0)


def test_defaultdict_keeps_its_type_and_default_factory():
    import collections

    d = collections.defaultdict(list, {"a": np.ones(3), "b": np.full(2, 5.0)})
    out, _ = fastclip.clip_by_global_norm(d, 1.0)
    assert type(out) is collections.defaultdict and out.default_factory is list
    assert list(out) == ["a", "b"] and out["missing"] == []
