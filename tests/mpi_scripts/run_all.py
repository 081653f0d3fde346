"""Run every check script in one MPI job (saves the start-up cost of one launch each).

Prints ``OK <name> rank <r>`` after each script; on a failure prints the traceback
and aborts the job (the collectives of the remaining checks would not line up).
Usage: ``mpiexec -n 2 python run_all.py [name ...]``.
"""

import importlib
import sys
import traceback

from mpi4py import MPI

NAMES = ["norm_sharded", "dp_train", "dp_nonfinite", "dp_shapes"]


def main():
    comm = MPI.COMM_WORLD
    for name in sys.argv[1:] or NAMES:
        try:
            importlib.import_module(name).main(comm)
            comm.Barrier()
        except BaseException:
            print(f"FAIL {name} rank {comm.Get_rank()}", flush=True)
            traceback.print_exc()
            sys.stderr.flush()
            comm.Abort(1)
        print(f"OK {name} rank {comm.Get_rank()}", flush=True)


if __name__ == "__main__":
    main()
