"""fastclip.distributed without MPI: lazy import, argument checks, single-process paths.

The multi-process cases are in test_mpi.py (they launch mpiexec).
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _testing import implementation_fixture

import fastclip
from fastclip import distributed as dist


def test_fastclip_works_without_mpi4py():
    # mpi4py made unimportable: fastclip and fastclip.distributed import and work,
    # comm=None never touches MPI, and a non-communicator is a clear TypeError.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["mpi4py"] = None
        import numpy as np
        import fastclip, fastclip.distributed as d
        g = [np.full(4, 3.0), np.full(4, 4.0)]
        assert fastclip.clip_grad_norm_(g, 1.0, comm=None) == 10.0
        assert fastclip.get_total_norm(g, comm=None) == fastclip.get_total_norm(g)
        try:
            fastclip.get_total_norm(g, comm="COMM_WORLD")
        except TypeError as e:
            assert "comm must be an mpi4py communicator" in str(e), e
        else:
            raise AssertionError("no TypeError")
        assert "mpi4py.MPI" not in sys.modules
        print("fine")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "fine" in out.stdout, out.stderr


@pytest.mark.parametrize("bad", [None, 0, "world", object(), [1, 2]])
def test_check_comm_rejects_non_communicators(bad):
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        dist.check_comm(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda g: fastclip.get_total_norm(g, comm=1),
        lambda g: fastclip.clip_grad_norm_(g, 1.0, comm=1),
        lambda g: fastclip.clip_by_global_norm(g, 1.0, comm=1),
        lambda g: fastclip.clip_by_global_norm(g, 1.0, use_norm=2.0, comm=1),
        lambda g: dist.allreduce_norm([1.0], 2.0, 1),
        lambda g: dist.GradientAllreducer(g, 1),
        lambda g: dist.check_same_shapes(g, 1),
        lambda g: dist.broadcast_parameters(g, 1),
        lambda g: dist.shard_slice(4, 1),
    ],
)
def test_bad_comm_everywhere_nothing_modified(call):
    g = [np.full(3, 5.0)]
    with pytest.raises(TypeError, match="comm"):
        call(g)
    assert np.array_equal(g[0], np.full(3, 5.0))


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_allreduce_norm_single_process(rng, p):
    g = [rng.standard_normal(s) for s in [(3, 4), (5,), ()]]
    assert dist.allreduce_norm(fastclip.array_norms(g, p), p) == fastclip.get_total_norm(g, p)
    assert dist.allreduce_norm([], p) == 0.0


def test_allreduce_norm_bad_input():
    with pytest.raises(ValueError, match="local_norms must be >= 0"):
        dist.allreduce_norm([1.0, -1.0])
    with pytest.raises(ValueError, match="local_norms must be 1-D"):
        dist.allreduce_norm(np.ones((2, 2)))
    with pytest.raises(TypeError, match="local_norms"):
        dist.allreduce_norm(["a"])
    with pytest.raises(ValueError, match="norm_type"):
        dist.allreduce_norm([1.0], 0.0)


def test_total_norm_kernels_agree_with_get_total_norm(rng):
    _distributed = pytest.importorskip("fastclip._distributed",
                                       reason="the compiled extension is not built")
    from fastclip.reference import distributed as ref

    for scale in (1.0, 1e200, 1e-200):
        norms = np.abs(rng.standard_normal(9)) * scale
        for p in (1.0, 2.0, 2.5, math.inf):
            g = [np.array([v]) for v in norms]
            with fastclip.use_implementation("c"):
                assert _distributed.total_norm(norms, p) == fastclip.get_total_norm(g, p)
            with fastclip.use_implementation("python"):
                assert ref.total_norm(norms, p) == fastclip.get_total_norm(g, p)


def test_shard_slice_covers_the_range_in_rank_order():
    for n in (0, 1, 7, 256):
        for size in (1, 2, 3, 5):
            parts = [dist._block(n, size, r) for r in range(size)]
            idx = np.concatenate([np.arange(n)[s] for s in parts])
            assert np.array_equal(idx, np.arange(n))
            lens = [s.stop - s.start for s in parts]
            assert max(lens) - min(lens) <= 1
    assert dist.shard_slice(10) == slice(0, 10)
    with pytest.raises(ValueError, match="n must be"):
        dist.shard_slice(-1)


def _outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        return type(e), str(e)


impl = implementation_fixture("clip")


def test_comm_self_matches_single_process(rng, impl):
    # The collectives validate once (fastclip._checks) and call the *_checked
    # kernels: on a one-rank communicator every result is bit-identical to the
    # single-process call, and every bad input gives the same exception and
    # message with nothing modified.
    MPI = pytest.importorskip("mpi4py.MPI")
    comm = MPI.COMM_SELF
    ro = np.ones(3)
    ro.flags.writeable = False
    base = np.ones(6)
    for p in (1.0, 2.0, 3.0, math.inf):
        g = [rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal(11) * 1e3,
             np.asfortranarray(rng.standard_normal((4, 6)))[:, ::2]]
        h = [a.copy() for a in g]
        assert fastclip.get_total_norm(g, p, comm=comm) == fastclip.get_total_norm(g, p)
        assert fastclip.clip_grad_norm_(g, 1.0, p, comm=comm) == fastclip.clip_grad_norm_(
            h, 1.0, p)
        assert all(np.array_equal(a, b) for a, b in zip(g, h))
        out, n = fastclip.clip_by_global_norm(g, 0.5, comm=comm)
        want, m = fastclip.clip_by_global_norm(g, 0.5)
        assert n == m and all(a.dtype == b.dtype and np.array_equal(a, b)
                              for a, b in zip(out, want))
    bad = [
        ([np.ones(3), np.ones(3, np.int32)], 1.0, 2.0),
        ([np.ones(3).astype(">f8")], 1.0, 2.0),
        ([np.ones(3), ro], 1.0, 2.0),
        ([base[:4], base[2:]], 1.0, 2.0),
        (5, 1.0, 2.0),
        ([np.full(3, 5.0)], -1.0, 2.0),
        ([np.full(3, 5.0)], 1.0, 0.0),
    ]
    for grads, mx, p in bad:
        given = grads if isinstance(grads, list) else []
        before = [np.array(a, copy=True) for a in given]
        got = _outcome(fastclip.clip_grad_norm_, grads, mx, p, comm=comm)
        assert got == _outcome(fastclip.clip_grad_norm_, grads, mx, p)
        assert got[0] in (TypeError, ValueError)
        assert all(np.array_equal(a, b) for a, b in zip(given, before))
    for xs, c in (([np.ones(2), "a"], 1.0), ([np.ones(2)], 0.0)):
        got = _outcome(fastclip.clip_by_global_norm, xs, c, comm=comm)
        assert got == _outcome(fastclip.clip_by_global_norm, xs, c)
        assert got[0] in (TypeError, ValueError)


def test_checked_kernels_agree(rng):
    # The entry points of the collectives: compiled and reference twins agree
    # (to rounding, as the checked functions they serve).
    from fastclip.reference import clip as ref

    _clip = pytest.importorskip("fastclip._clip", reason="the compiled extension is not built")

    arrays = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(7)[::2],
              np.empty(0)]
    for p in (1.0, 2.0, 3.0, math.inf):
        np.testing.assert_allclose(_clip.array_norms_checked(arrays, p),
                                   ref.array_norms_checked(arrays, p), rtol=1e-12)
    for g in (0.0, 0.3, 7.0, math.inf, math.nan):
        for a, b in zip(_clip.clip_by_global_norm_checked(arrays, 0.5, g),
                        ref.clip_by_global_norm_checked(arrays, 0.5, g)):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=1e-6)
    x = [a.copy() for a in arrays]
    y = [a.copy() for a in arrays]
    _clip.clip_grads_with_norm_checked_(x, 1.0, 9.0)
    ref.clip_grads_with_norm_checked_(y, 1.0, 9.0)
    for a, b in zip(x, y):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-6)
