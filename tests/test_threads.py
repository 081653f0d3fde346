"""Threads: concurrent Python threads, thread counts, fork, threadpoolctl.

Every case of ``_harden.CASES`` (one per public kernel of every family) runs on
arrays large enough for the kernels to use the pool's helper threads
(more than ``FC_PARALLEL_MIN`` elements, csrc/fc_threads.h). The thread count is
OpenMP's setting (OMP_NUM_THREADS, threadpoolctl), capped at the processors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import _harden as H
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

pytest.importorskip("fastclip._common", reason="the compiled extension is not built")
from fastclip import _common  # noqa: E402

HERE = Path(__file__).resolve().parent
# Above FC_PARALLEL_MIN: many FC_BLOCKs and a ragged tail; the dense array of
# H.mixed_arrays is parallel on its own, the whole list (strided views
# included) in the kernels that split lists into blocks.
BIG = H.PARALLEL_MIN + 4099
N_THREADS = 3
ROUNDS = 2


@pytest.mark.parametrize("case", H.CASES, ids=H.CASE_IDS)
def test_concurrent_python_threads_match_serial(case: H.Case) -> None:
    mod = H.compiled(case.family)
    seeds = [100 + t for t in range(N_THREADS)]
    expected = {s: H.digest(case.call(mod, H.make(case, s, BIG))) for s in seeds}
    inputs = {(s, r): H.make(case, s, BIG) for s in seeds for r in range(ROUNDS)}
    got: dict[tuple[int, int], str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(N_THREADS)

    def worker(seed: int) -> None:
        try:
            barrier.wait()
            for r in range(ROUNDS):
                got[(seed, r)] = H.digest(case.call(mod, inputs[(seed, r)]))
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a kernel call hung in a thread"
    assert not errors, errors
    for (seed, r), d in got.items():
        assert d == expected[seed], f"thread with seed {seed}, round {r}: result differs from serial"
    assert len(got) == N_THREADS * ROUNDS


_DIGEST_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {here!r})
    import _harden as H
    from fastclip import _common
    out = {{"threads": _common.max_threads(), "serial": _common.serial_only()}}
    for case in H.CASES:
        out[case.id] = H.digest(case.call(H.compiled(case.family), H.make(case, 7, {big})))
    print("RESULT " + json.dumps(out))
    """
)


def _run_all(script: str, envs: dict[int, dict[str, str]], timeout: float = 300) -> dict:
    """Run ``script`` once per environment, concurrently; parse its RESULT line."""
    procs = {}
    for key, extra in envs.items():
        procs[key] = subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(HERE),
        )
    results = {}
    try:
        for key, proc in procs.items():
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-4000:]
            # (an editable install may print its rebuild log to stdout: take our line)
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            assert len(lines) == 1, out[-4000:]
            results[key] = json.loads(lines[0][len("RESULT "):])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def test_bit_identical_across_omp_num_threads() -> None:
    script = _DIGEST_SCRIPT.format(here=str(HERE), big=BIG)
    # fastclip's own OpenMP threads vary; the BLAS (OpenBLAS also reads
    # OMP_NUM_THREADS) is pinned to one thread: a threaded float32 GEMM of
    # OpenBLAS does not give the single-threaded bits, which is BLAS's
    # business, not the kernels' (fastclip.nn's matrix products go through it).
    blas = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = _run_all(script, {n: {"OMP_NUM_THREADS": str(n), **blas} for n in (1, 2, 3, 8)})
    if _common.openmp_enabled():
        cap = min(_common.num_procs(), _common.MAX_THREADS)
        assert {n: r.pop("threads") for n, r in runs.items()} == {
            n: min(n, cap) for n in (1, 2, 3, 8)}
    else:
        assert {r.pop("threads") for r in runs.values()} == {1}
    first = runs[1]
    assert set(first) == {"serial", *H.CASE_IDS}
    for n, r in runs.items():
        diff = [k for k in first if r[k] != first[k]]
        assert not diff, f"OMP_NUM_THREADS={n} changes the results of {diff}"


_FORK_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing as mp, os, sys
    sys.path.insert(0, {here!r})
    import _harden as H
    from fastclip import _common

    def results():
        return {{c.id: H.digest(c.call(H.compiled(c.family), H.make(c, 3, {big})))
                 for c in H.CASES}}

    def warm():
        # a parallel region of OMP_NUM_THREADS threads right before the fork
        import numpy as np
        return H.compiled("clip").get_total_norm(np.ones(4 * H.PARALLEL_MIN))

    def child(q):
        warm()
        from threadpoolctl import threadpool_limits
        from fastclip import _nn

        with threadpool_limits(2):  # a child that raises its thread count must not hang
            got = results()
        q.put({{"serial": _common.serial_only(), "threads": _common.max_threads(),
                "results": got, "gemm": _nn.gemm_library()}})

    if __name__ == "__main__":
        method = "fork" if hasattr(os, "fork") else "spawn"
        parent = results()  # starts the OpenMP pool (OMP_NUM_THREADS=2)
        warm()
        ctx = mp.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        try:
            got = q.get(timeout=60)
        except Exception:
            got = None
        p.join(30)
        hung = p.is_alive()
        if hung:
            p.kill()
        again = results()  # the parent keeps its threads after the fork
        print("RESULT " + json.dumps({{
            "method": method, "hung": hung, "exitcode": p.exitcode, "child": got,
            "parent": parent, "again": again == parent,
            "parent_threads": _common.max_threads(), "parent_serial": _common.serial_only()}}))
    """
)


def _mkl_usable() -> bool:
    try:
        from fastclip import _blas
    except ImportError:
        return False
    return bool(_blas._mkl_candidates())


@pytest.mark.parametrize("blas", ["scipy-openblas32", "mkl"])
def test_fork_after_openmp_does_not_hang(tmp_path: Path, blas: str) -> None:
    # Under either BLAS of fastclip.nn (the cases include the layers' GEMMs): MKL
    # runs on GNU OpenMP, whose threads a forked child does not have.
    if blas == "mkl" and not _mkl_usable():
        pytest.skip("the mkl wheel (the mkl extra) is not installed")
    # A script file: the "spawn" method (Windows has no fork) re-imports __main__.
    path = tmp_path / "fork_check.py"
    path.write_text(_FORK_SCRIPT.format(here=str(HERE), big=BIG))
    env = dict(os.environ, OMP_NUM_THREADS="2", FASTCLIP_BLAS=blas)
    proc = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True,
        timeout=300, cwd=str(HERE),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-4000:]
    out = json.loads(lines[0][len("RESULT "):])
    assert not out["hung"] and out["child"] is not None, "the child hung in a kernel"
    assert out["exitcode"] == 0
    assert out["child"]["gemm"].startswith(blas + " "), out["child"]["gemm"]
    assert out["child"]["results"] == out["parent"]
    assert out["again"]
    if out["method"] == "fork":
        # kernels stay on the calling thread in a forked child, not in the parent
        assert out["child"]["serial"] is True and out["child"]["threads"] == 1
        assert out["parent_serial"] is False
    if _common.openmp_enabled():
        assert out["parent_threads"] == min(2, _common.num_procs())


def test_threadpoolctl_controls_fastclip_threads() -> None:
    if not _common.openmp_enabled():
        with threadpool_limits(1):
            assert _common.max_threads() == 1
        assert _common.max_threads() == 1
        return
    before = _common.max_threads()
    # fastclip's OpenMP runtime is visible to threadpoolctl ...
    assert any(p["user_api"] == "openmp" for p in threadpool_info())
    # ... and its limits are what fastclip's kernels use.
    with threadpool_limits(1):
        assert _common.max_threads() == 1
        with threadpool_limits(3, user_api="openmp"):
            assert _common.max_threads() == min(3, _common.num_procs(), _common.MAX_THREADS)
        assert _common.max_threads() == 1
    assert _common.max_threads() == before


def test_results_under_threadpool_limits_are_identical() -> None:
    case = next(c for c in H.CASES if c.id == "clip.clip_grad_norm_")
    mod = H.compiled(case.family)
    with threadpool_limits(1):
        one = H.digest(case.call(mod, H.make(case, 5, BIG)))
    with threadpool_limits(2, user_api="openmp"):
        two = H.digest(case.call(mod, H.make(case, 5, BIG)))
    assert one == two


def test_serial_only_round_trip() -> None:
    assert _common.serial_only() is False
    before = _common.max_threads()
    try:
        _common.set_serial_only(True)
        assert _common.serial_only() is True
        assert _common.max_threads() == 1
    finally:
        _common.set_serial_only(False)
    assert _common.serial_only() is False
    assert _common.max_threads() == before


def test_kernel_results_do_not_depend_on_the_calling_thread() -> None:
    # A kernel on a fresh Python thread (a fresh OpenMP pool) gives the
    # results of the main thread.
    case = next(c for c in H.CASES if c.id == "clip.array_norms[p=3.0]")
    mod = H.compiled(case.family)
    main = H.digest(case.call(mod, H.make(case, 9, BIG)))
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(H.digest(case.call(mod, H.make(case, 9, BIG)))))
    t.start()
    t.join(60)
    assert box == [main]


@pytest.fixture()
def openmp_regions():
    """Runs a test with the kernels' parallel passes on OpenMP threads, then restores."""
    before = _common.openmp_regions()
    yield
    _common.set_openmp_regions(before)


@pytest.mark.parametrize("case", H.CASES, ids=H.CASE_IDS)
def test_openmp_regions_give_the_pools_results(case: H.Case, openmp_regions) -> None:
    # the parallel passes on OpenMP threads (what fastclip does when MKL runs the
    # GEMMs on the same runtime) or on the pool's helpers: the same bits, also from
    # several Python threads at once
    from threadpoolctl import threadpool_limits

    mod = H.compiled(case.family)
    with threadpool_limits(2):
        _common.set_openmp_regions(False)
        pool = H.digest(case.call(mod, H.make(case, 9, BIG)))
        _common.set_openmp_regions(True)
        assert _common.openmp_regions() is _common.openmp_enabled()
        omp = H.digest(case.call(mod, H.make(case, 9, BIG)))
        got: list[str] = []
        threads = [threading.Thread(target=lambda: got.append(
            H.digest(case.call(mod, H.make(case, 9, BIG))))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert omp == pool
    assert got == [pool, pool]


# The two-pass schedule (fc_parallel_for_noting, then fc_parallel_for_again):
# the clipping kernels' scaling pass gives each thread back the blocks it read
# in the norm pass. Whatever the threads do, every item runs once in each pass.
TWO_PASS_SIZES = [0, 1, 2, 3, 33, 1000, 5000]


def _check_two_passes(n: int, first, second, slots, order) -> None:
    assert first.tolist() == [1] * n
    assert second.tolist() == [1] * n
    assert sorted(order.tolist()) == list(range(n))
    assert all(s < _common.MAX_THREADS for s in slots.tolist())


@pytest.mark.parametrize("regions", [False, True], ids=["pool", "openmp"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", TWO_PASS_SIZES)
def test_two_pass_schedule_runs_every_item_once(n: int, threads: int, regions: bool,
                                                openmp_regions) -> None:
    _common.set_openmp_regions(regions)
    with threadpool_limits(threads):
        for parallel in (False, True):
            for _ in range(3):
                first, second, slots, order = _common._two_pass_trace(n, parallel)
                _check_two_passes(n, first, second, slots, order)
                if not parallel or threads == 1:
                    # one thread: every item noted on it, the last one run first
                    assert slots.tolist() == [0] * n
                    assert order.tolist() == list(range(n))[::-1]


def test_two_pass_schedule_own_items_latest_first_then_the_others_earliest() -> None:
    # one thread (slot 0): its own items from the latest, then the other slots'
    # from the earliest; slots no thread holds are taken all the same
    n = 12
    given = np.array([0, 1, 0, 5, 0, 1, 63, 0, 1, 5, 0, 1], np.uint8)
    with threadpool_limits(1):
        first, second, _, order = _common._two_pass_trace(n, True, given)
    assert first.tolist() == [1] * n and second.tolist() == [1] * n
    ran = [int(i) for i in np.argsort(order)]
    assert ran == [10, 7, 4, 2, 0, 1, 5, 8, 11, 3, 9, 6]


@pytest.mark.parametrize("given_slot", [0, 1, 7, 63])
def test_two_pass_schedule_with_threads_takes_every_slot(given_slot: int) -> None:
    # with helpers: items noted on any slot (held by a thread or not, one slot
    # or spread) still run once each
    n = 2000
    rng = np.random.default_rng(given_slot)
    with threadpool_limits(2):
        for given in (np.full(n, given_slot, np.uint8),
                      rng.integers(0, given_slot + 1, n).astype(np.uint8)):
            first, second, _, order = _common._two_pass_trace(n, True, given)
            assert first.min() == first.max() == 1
            assert second.min() == second.max() == 1
            assert sorted(order.tolist()) == list(range(n))


def test_two_pass_schedule_from_several_python_threads() -> None:
    n = 3000
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(20):
                _check_two_passes(n, *_common._two_pass_trace(n, True))
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    with threadpool_limits(2):
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
