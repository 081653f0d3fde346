"""Shared by the scripts that tests/test_mpi.py runs under mpiexec."""

from __future__ import annotations

import sys
import traceback


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

