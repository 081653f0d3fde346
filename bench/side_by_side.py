"""Two installed versions of fastclip side by side: the MLP step and clip_grad_norm_.

Each version is an interpreter with fastclip installed (a regular install, not an
editable one: an editable install rebuilds on import) and the ``bench/`` directory
of the same version (its ``bench_mlp.FastclipStep`` and ``bench_clip._data``).
Every measurement is a fresh process per version and round, the order of the two
versions alternating between rounds, 0.3 s of warm-up, 2 threads (``--threads``,
set with threadpoolctl once fastclip and the bench modules are imported: a limit
set before reaches only the libraries already loaded); the table gives
the median over rounds of each process's median and the ratio old / new (above 1:
the new version is faster).

- ``step B``: one ``FastclipStep`` (forward, softmax cross-entropy, backward, SGD
  with ``clip_norm=1.0``) of the 784-512-512-10 MLP at batch B.
- ``clip``: ``fastclip._clip.clip_grad_norm_`` on the MLP gradient set to half its
  norm, in the loop pattern (each call after a fresh copy of the gradients and a
  128 x 784 @ 784 x 512 GEMM).

Usage::

    python bench/side_by_side.py --old PYTHON_OLD BENCH_DIR_OLD --new PYTHON_NEW BENCH_DIR_NEW \
        [--rounds 11] [--cases step32 step256 step2048 clip] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPS = {"step32": 200, "step256": 60, "step2048": 12, "clip": 200}


def _worker(bench_dir: str, case: str, reps: int, threads: int) -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, bench_dir)
    setup = between = None
    if case.startswith("step"):
        import bench_mlp

        x, y = bench_mlp.make_problem(int(case[4:]))
        fn = bench_mlp.FastclipStep(x, y)
    else:
        import bench_clip

        from fastclip import _clip

        work, orig = bench_clip._data("mlp")[:2]
        total = float(np.sqrt(sum(np.vdot(g.astype(np.float64), g) for g in orig)))

        def fn():
            return _clip.clip_grad_norm_(work, total / 2)

        setup = bench_clip._restorer(work, orig)
        rng = np.random.default_rng(1)
        a = rng.standard_normal((128, 784), dtype=np.float32)
        b = rng.standard_normal((784, 512), dtype=np.float32)
        c = np.empty((128, 512), np.float32)

        def between():
            np.matmul(a, b, out=c)

    threadpool_limits(threads)  # after the imports: fastclip's OpenMP runtime is loaded
    t_end = time.perf_counter() + 0.3
    while time.perf_counter() < t_end:
        if setup:
            setup()
        fn()
    ts = []
    for _ in range(reps):
        if setup:
            setup()
        if between:
            between()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    print(json.dumps(statistics.median(ts)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", nargs=2, metavar=("PYTHON", "BENCH_DIR"))
    ap.add_argument("--new", nargs=2, metavar=("PYTHON", "BENCH_DIR"))
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--cases", nargs="+", default=list(REPS), choices=list(REPS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker[0], a.worker[1], REPS[a.worker[1]], a.threads)
        return
    if not (a.old and a.new):
        ap.error("--old and --new are required")
    versions = {"old": a.old, "new": a.new}
    print("| case | old | new | old / new |")
    print("|---|---:|---:|---:|")
    for case in a.cases:
        res: dict[str, list[float]] = {k: [] for k in versions}
        for r in range(a.rounds):
            for k in (list(versions) if r % 2 == 0 else list(versions)[::-1]):
                py, bench_dir = versions[k]
                out = subprocess.run([py, os.path.abspath(__file__), "--worker", bench_dir, case,
                                      "--threads", str(a.threads)],
                                     capture_output=True, text=True, check=True, cwd="/")
                res[k].append(json.loads(out.stdout.strip().splitlines()[-1]))
        o, n = (statistics.median(res[k]) * 1e3 for k in versions)
        print(f"| {case} | {o:.3f} ms | {n:.3f} ms | {o / n:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
