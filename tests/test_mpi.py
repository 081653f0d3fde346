"""Real multi-process runs under ``mpiexec -n 2`` / ``-n 3`` (scripts in tests/mpi_scripts).

Each script checks its own results on every rank and prints ``OK rank r``; a rank
that fails calls MPI_Abort. Every run has a timeout so that a deadlock fails the
test instead of hanging it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _testing import run_to_end

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'numpy-fastclip[mpi]')")

import fastclip  # noqa: F401  (imported first: an editable build rebuilds once, not per rank)

pytestmark = pytest.mark.mpi

SCRIPTS = Path(__file__).parent / "mpi_scripts"
TIMEOUT = 180  # seconds per launch; the runs take a few seconds (2 shared cores)


def _mpiexec() -> str:
    """The mpiexec of the MPI that mpi4py uses: next to the interpreter (wheels) or on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        pytest.fail(
            "mpi4py is importable but no mpiexec was found next to the interpreter or on "
            "PATH; install an MPI launcher (pip install 'numpy-fastclip[mpi]' brings MPICH's)"
        )
    return found


def launch(n: int, *names: str) -> str:
    """Run ``mpiexec -n n python run_all.py names...``; fail on error or timeout.

    Returns the output; every named check must have printed ``OK <name> rank r``
    on every rank.
    """
    exe = _mpiexec()
    cmd = [exe, "-n", str(n)]
    version = subprocess.run([exe, "--version"], check=False, capture_output=True, text=True, timeout=60)
    if "Open MPI" in version.stdout + version.stderr:
        cmd.append("--oversubscribe")
    cmd += [sys.executable, str(SCRIPTS / "run_all.py"), *names]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return run_to_end(cmd, env=env, timeout=TIMEOUT, what=" ".join(cmd),
                      hang_hint=" (deadlock?)")


@pytest.fixture(scope="module", params=[2, 3], ids=["2 ranks", "3 ranks"])
def job(request):
    """One MPI job per rank count runs every check (scripts in tests/mpi_scripts)."""
    n = request.param
    return n, launch(n)


def passed(job, name: str) -> bool:
    n, out = job
    ok = {int(r) for r in re.findall(rf"OK {name} rank (\d+)", out)}
    assert ok == set(range(n)), f"{name}: ranks OK {sorted(ok)} of {n}\n{out}"
    return True


def test_sharded_norm_equals_single_process_norm(job):
    """get_total_norm/clip_grad_norm_/clip_by_global_norm with comm: bit-identical on all
    ranks and to one process on the concatenation (p = 1, 2, 3.5, inf; float32/64;
    1e200/1e-200 values; empty shards); non-finite and bad input on one rank raise on all."""
    assert passed(job, "norm_sharded")


def test_data_parallel_matches_full_batch(job):
    """20 steps of clipped SGD with momentum (fastclip.nn MLP, float64): the ranks on
    shards of each batch (uneven with 3 ranks) give the parameters of one process on the
    full batch to 1e-12 relative, identical on every rank; the same through
    fastclip.train.fit(..., comm=comm) with an AutoClip clipper after the reduction."""
    assert passed(job, "dp_train")
    found = re.findall(r"(fit: )?max relative difference ([0-9.e+-]+)", job[1])
    assert sorted(kind for kind, _ in found) == ["", "fit: "], job[1]
    assert all(float(worst) <= 1e-12 for _, worst in found), found


def test_nonfinite_gradient_same_decision_on_every_rank(job):
    """NaN/inf on the last rank only: raise / skip / rollback on every rank, no deadlock;
    an exception in one rank's loss raises on every rank; empty shards work."""
    assert passed(job, "dp_nonfinite")


def test_gradient_shapes_disagree_clear_error(job):
    """Different shapes, lengths or dtypes across ranks: ValueError on every rank."""
    assert passed(job, "dp_shapes")


def test_one_rank_differing_raises_on_every_rank(job):
    """A clipper, validation, callback (SystemExit) or optimiser failing on one rank, and
    optimiser/clipper/monitor settings or data that differ across ranks: every rank
    raises (no deadlock, no rank stepping alone), nothing is trained."""
    assert passed(job, "dp_agree")


def test_example_runs(job):
    """examples/mpi_data_parallel.py (fit with comm=, 2 epochs): replicas identical."""
    assert passed(job, "example")
    assert "replicas identical on all" in job[1] and ": True" in job[1]
