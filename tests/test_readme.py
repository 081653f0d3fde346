"""Every fenced ``python`` block of README.md runs as written.

Each block runs on its own, top to bottom, in a fresh interpreter (a new process, in an
empty temporary directory): that is what a reader does who copies one block, so every
block carries its own imports and data and never relies on an earlier block.

- A block preceded by ``<!-- mpiexec -n N -->`` (on the line right before the fence) runs
  under ``mpiexec -n N`` (the MPI that mpi4py uses, found as tests/test_mpi.py finds it);
  those runs carry the ``mpi`` marker, like the other MPI tests.
- A block that imports an optional package (torch, scikit-learn, matplotlib, ...) or calls
  a fastclip function that imports one lazily (``plot_schedule``: matplotlib) runs only
  when that package is importable here; otherwise it is skipped, naming the package.
  Any other failure, a missing non-optional package included, fails the test.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TIMEOUT = 600  # seconds per block; the slowest (a 20-epoch fit) takes seconds

# import name -> what to install, for the packages a README block may need that the
# core dependencies do not bring
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

_MPI_MARK = re.compile(r"^<!--\s*mpiexec\s+-n\s+(\d+)\s*-->$")
_FENCE = re.compile(r"^```(\S*)\s*$")


def readme_blocks(text: str) -> list[dict]:
    """The fenced blocks of ``text``: language, first code line, code, mpiexec ranks."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            raise ValueError(f"README.md: the fence on line {start + 1} is never closed")
        before = lines[start - 1].strip() if start > 0 else ""
        mark = _MPI_MARK.match(before)
        blocks.append({
            "lang": m.group(1),
            "line": start + 2,  # 1-based number of the first code line
            "code": "\n".join(lines[start + 1:j]) + "\n",
            "ranks": int(mark.group(1)) if mark else None,
            "before": before,
        })
        i = j + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b["lang"] == "python"]


def _needs(code: str) -> list[str]:
    """The optional packages a block imports, or needs through a lazy fastclip call."""
    found = []
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


def _skip_unless_installed(block: dict) -> None:
    for name in _needs(block["code"]):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"the README block at line {block['line']} needs {name}, which is "
                        f"not installed (pip install {OPTIONAL[name]})")


def _run(cmd: list[str], cwd: Path, env: dict, what: str) -> None:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{what} did not finish in {TIMEOUT} s:\n{out}")
    assert proc.returncode == 0, f"{what} exited with {proc.returncode}:\n{out}"


def _env() -> dict:
    # no display: matplotlib draws off-screen; the block's own cwd is a temporary directory
    return dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")


def _params():
    for b in PYTHON:
        marks = [pytest.mark.mpi] if b["ranks"] else []
        kind = f"mpiexec-n{b['ranks']}" if b["ranks"] else "python"
        yield pytest.param(b, id=f"line{b['line']}-{kind}", marks=marks)


@pytest.mark.parametrize("block", list(_params()))
def test_readme_python_block_runs(block, tmp_path):
    _skip_unless_installed(block)
    script = tmp_path / "readme_block.py"
    script.write_text(block["code"], encoding="utf-8")
    what = f"the README block at line {block['line']}"
    if block["ranks"] is None:
        _run([sys.executable, str(script)], tmp_path, _env(), what)
        return
    pytest.importorskip("mpi4py", reason="mpi4py is not installed "
                        "(pip install 'numpy-fastclip[mpi]')")
    import fastclip  # noqa: F401  (an editable build rebuilds here once, not once per rank)
    from test_mpi import _mpiexec

    exe = _mpiexec()
    cmd = [exe, "-n", str(block["ranks"])]
    version = subprocess.run([exe, "--version"], check=False, capture_output=True, text=True,
                             timeout=60)
    if "Open MPI" in version.stdout + version.stderr:
        cmd.append("--oversubscribe")
    _run(cmd + [sys.executable, str(script)], tmp_path, dict(_env(), OMP_NUM_THREADS="1"),
         f"{what} under {' '.join(cmd)}")


def test_readme_structure():
    # the README opens with the demo command and the test command, which .ci/run runs
    assert BLOCKS[0]["lang"] == "bash" and "fastclip demo" in BLOCKS[0]["code"]
    assert BLOCKS[1]["lang"] == "bash" and BLOCKS[1]["before"] == "<!-- test-command -->"
    assert "-m pytest" in BLOCKS[1]["code"]
    assert PYTHON, "no python blocks found in README.md"
    # an mpiexec mark is only ever put in front of a python block
    text = README.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(text):
        if _MPI_MARK.match(line.strip()):
            assert n + 1 < len(text) and text[n + 1].strip() == "```python", \
                f"README.md line {n + 1}: an mpiexec mark not followed by a python fence"
    assert any(b["ranks"] for b in PYTHON), "the MPI blocks lost their mpiexec mark"


def test_block_parser_and_needs():
    text = "x\n```python\nimport numpy\n```\n<!-- mpiexec -n 3 -->\n```python\nprint(1)\n```\n"
    blocks = readme_blocks(text)
    assert [(b["lang"], b["line"], b["ranks"]) for b in blocks] == [("python", 3, None),
                                                                      ("python", 7, 3)]
    assert blocks[1]["code"] == "print(1)\n"
    with pytest.raises(ValueError, match="never closed"):
        readme_blocks("```python\nprint(1)\n")
    code = ("import numpy as np\nfrom sklearn.datasets import load_digits\nimport torch.nn\n"
            "# import pandas\nfastclip.plot_schedule(s, 10)\n")
    assert _needs(code) == ["sklearn", "torch", "matplotlib"]
