"""Run documentation code blocks (README.md, docs/*.rst) as a reader would.

Each block runs on its own, top to bottom, in a fresh interpreter (a new process, in an
empty temporary directory): a reader copies one block, so every block carries its own
imports and data and never relies on an earlier one. Blocks marked for ``mpiexec`` run
under ``mpiexec -n N`` (the MPI that mpi4py uses, found as tests/test_mpi.py finds it).
A block that needs an optional package (it imports torch, scikit-learn, matplotlib, ...
or calls a fastclip function that imports one lazily) is skipped, naming the package,
when that package is not installed; any other failure fails the test.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _testing import run_to_end

TIMEOUT = 600  # seconds per block; the slowest (a 20-epoch fit) takes seconds

# import name -> what to install, for the packages a block may need that the core
# dependencies do not bring
OPTIONAL = {
    "torch": "torch",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
    "pandas": "pandas",
    "tqdm": "tqdm",
    "mpi4py": "mpi4py",
    "opacus": "opacus",
    "dp_accounting": "dp-accounting",
}
# fastclip names that import an optional package when called
LAZY = {"plot_schedule": "matplotlib", "to_pandas": "pandas"}


def needs(code: str) -> list[str]:
    """The optional packages a block imports, or needs through a lazy fastclip call."""
    found: list[str] = []
    for node in ast.walk(ast.parse(code)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module.split(".")[0]]
        elif isinstance(node, ast.Attribute) and node.attr in LAZY:
            names = [LAZY[node.attr]]
        elif isinstance(node, ast.Name) and node.id in LAZY:
            names = [LAZY[node.id]]
        found += [n for n in names if n in OPTIONAL and n not in found]
    return found


def _run(cmd: list[str], cwd: Path, env: dict, what: str) -> None:
    run_to_end(cmd, cwd=cwd, env=env, timeout=TIMEOUT, what=what)


def run_block(code: str, ranks: int | None, where: str, tmp_path: Path) -> None:
    """Run ``code`` in a fresh interpreter (under ``mpiexec -n ranks`` if given)."""
    for name in needs(code):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{where} needs {name}, which is not installed "
                        f"(pip install {OPTIONAL[name]})")
    script = tmp_path / "doc_block.py"
    script.write_text(code, encoding="utf-8")
    # no display: matplotlib draws off-screen
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    if ranks is None:
        _run([sys.executable, str(script)], tmp_path, env, where)
        return
    pytest.importorskip("mpi4py", reason="mpi4py is not installed "
                        "(pip install 'numpy-fastclip[mpi]')")
    from test_mpi import _mpiexec

    import fastclip  # noqa: F401  (an editable build rebuilds here once, not once per rank)

    exe = _mpiexec()
    cmd = [exe, "-n", str(ranks)]
    version = subprocess.run([exe, "--version"], check=False, capture_output=True, text=True,
                             timeout=60)
    if "Open MPI" in version.stdout + version.stderr:
        cmd.append("--oversubscribe")
    _run(cmd + [sys.executable, str(script)], tmp_path, dict(env, OMP_NUM_THREADS="1"),
         f"{where} under {' '.join(cmd)}")
