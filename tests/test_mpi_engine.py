"""DataParallel on the step engine shared with fit, under ``mpiexec -n 2`` and ``-n 3``
(tests/mpi_scripts/dp_engine.py checks its results on every rank)."""

from __future__ import annotations

import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'fastclip[mpi]')")

from test_mpi import launch, passed  # the launcher of the other MPI tests

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n", [2, 3])
def test_data_parallel_policies_through_the_engine(n):
    """rollback with lr_factor, skip without giving up, a monitor's own settings, raise as
    GradientExplosionError, input_grad=False in DataParallel and fit(comm=...)."""
    assert passed((n, launch(n, "dp_engine")), "dp_engine")
