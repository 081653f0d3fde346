"""Data-parallel MLP step over MPI: all-reduce share and speed-up of 2 ranks over 1.

Launches ``bench/mpi_step.py`` under ``mpiexec`` (the MLP benchmark's step,
784-512-512-10 ReLU MLP, float32, global batch 256, SGD with global-norm clipping
at 1.0; see that file) in three configurations, interleaved round-robin
``--reps`` times so that machine load hits them alike, and prints the medians:

- 1 rank, every core's thread (the plain single-process step);
- 1 rank, 1 thread;
- 2 ranks, the cores shared between them (1 thread each on 2 cores).

all-reduce share = (pack + Allreduce + unpack time, waiting for the other rank
included) / step time on 2 ranks; speed-up = step time on 1 rank / on 2 ranks.

Run ``python bench/bench_mpi.py [--reps 5] [--steps 200]`` for the table, or
``pytest bench/bench_mpi.py --benchmark-only`` (one 2-rank job; the per-phase
figures land in the benchmark's ``extra_info``). Needs mpi4py and mpiexec
(``pip install "numpy-fastclip[mpi]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

STEP = Path(__file__).with_name("mpi_step.py")
CONFIGS = (("1 rank, all cores", 1, 0), ("1 rank, 1 thread", 1, 1), ("2 ranks", 2, 0))


def mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def run(ranks: int, threads: int = 0, steps: int = 200, batch: int = 256) -> dict:
    exe = mpiexec()
    if exe is None:
        raise RuntimeError("mpiexec not found (pip install 'numpy-fastclip[mpi]')")
    cmd = [exe, "-n", str(ranks), sys.executable, str(STEP), "--steps", str(steps),
           "--batch", str(batch), "--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def table(reps: int, steps: int, batch: int) -> str:
    results: dict[str, list[dict]] = {name: [] for name, _, _ in CONFIGS}
    for _ in range(reps):
        for name, ranks, threads in CONFIGS:
            results[name].append(run(ranks, threads, steps, batch))

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    rows = [("| configuration | threads/rank | step (ms) | compute (ms) | all-reduce (ms) "
             "| bare Allreduce (ms) | update (ms) |"), "|---|---|---|---|---|---|---|"]
    for name, _, _ in CONFIGS:
        r0 = results[name][0]
        rows.append(
            f"| {name} | {r0['threads_per_rank']} | {med(name, 'step_ms'):.2f} | "
            f"{med(name, 'compute_ms'):.2f} | {med(name, 'allreduce_ms'):.2f} | "
            f"{med(name, 'bare_allreduce_ms'):.2f} | {med(name, 'update_ms'):.2f} |"
        )
    two = med("2 ranks", "step_ms")
    rows.append("")
    rows.append(f"all-reduce share on 2 ranks: {med('2 ranks', 'allreduce_share'):.1%} "
                f"({results['2 ranks'][0]['params']} float32 parameters per Allreduce)")
    rows.append(f"speed-up of 2 ranks over 1 rank (all cores): "
                f"{med('1 rank, all cores', 'step_ms') / two:.2f}x; over 1 rank (1 thread): "
                f"{med('1 rank, 1 thread', 'step_ms') / two:.2f}x  (medians of {reps} runs "
                f"of {steps} steps, global batch {batch})")
    return "\n".join(rows)


def test_mpi_data_parallel_step(benchmark):
    pytest.importorskip("mpi4py")
    if mpiexec() is None:
        pytest.fail("mpiexec not found (pip install 'numpy-fastclip[mpi]')")
    res = benchmark.pedantic(run, args=(2, 0, 100), rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    assert res["ranks"] == 2 and 0.0 <= res["allreduce_share"] <= 1.0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    print(table(a.reps, a.steps, a.batch))
