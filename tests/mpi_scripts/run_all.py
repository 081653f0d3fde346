"""Run every check script in one MPI job (saves the start-up cost of one launch each).

Prints ``OK <name> rank <r>`` after each script; on a failure prints the traceback
and aborts the job (the collectives of the remaining checks would not line up).
Usage: ``mpiexec -n 2 python run_all.py [name ...]``.
"""

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from mpi4py import MPI

NAMES = ["norm_sharded", "dp_train", "dp_nonfinite", "dp_shapes", "dp_agree", "example"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mpi_data_parallel.py"


def example(comm):
    """examples/mpi_data_parallel.py in a short mode (2 epochs)."""
    spec = importlib.util.spec_from_file_location("mpi_data_parallel", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    acc = mod.main(["--short"])
    assert acc > 0.5, acc


def check(name):
    return example if name == "example" else importlib.import_module(name).main


def main():
    comm = MPI.COMM_WORLD
    for name in sys.argv[1:] or NAMES:
        try:
            check(name)(comm)
            comm.Barrier()
        except BaseException:
            print(f"FAIL {name} rank {comm.Get_rank()}", flush=True)
            traceback.print_exc()
            sys.stderr.flush()
            comm.Abort(1)
        print(f"OK {name} rank {comm.Get_rank()}", flush=True)


if __name__ == "__main__":
    main()
