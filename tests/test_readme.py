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

The runner is shared with the documentation's blocks (tests/_codeblocks.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _codeblocks import needs, run_block

README = Path(__file__).resolve().parents[1] / "README.md"

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


def _params():
    for b in PYTHON:
        marks = [pytest.mark.mpi] if b["ranks"] else []
        kind = f"mpiexec-n{b['ranks']}" if b["ranks"] else "python"
        yield pytest.param(b, id=f"line{b['line']}-{kind}", marks=marks)


@pytest.mark.parametrize("block", list(_params()))
def test_readme_python_block_runs(block, tmp_path):
    run_block(block["code"], block["ranks"], f"the README block at line {block['line']}",
              tmp_path)


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
    assert needs(code) == ["sklearn", "torch", "matplotlib"]
