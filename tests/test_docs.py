"""The Sphinx documentation in docs/: the API reference covers every public name, every
schedule has a page with its curve, every python example runs, and the site builds with
warnings as errors.

- Coverage: every name in the ``__all__`` of each public module of fastclip (found by
  walking the package, so a module or name added later is caught) is listed in
  docs/api.rst under its module, or is the same object as a name listed there (the
  top-level re-exports), or is a module documented there.
- Examples: each ``.. code-block:: python`` of docs/ runs in a fresh interpreter
  (tests/_codeblocks.py, as for the README); one preceded by the comment
  ``.. mpiexec -n N`` runs under ``mpiexec -n N`` (``mpi`` marker).
- Build: ``python -m sphinx -W -b html`` on a copy of docs/ (needs sphinx, numpydoc and
  matplotlib: the ``docs`` extra).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _codeblocks import run_block

import fastclip

DOCS = Path(__file__).resolve().parents[1] / "docs"
API = DOCS / "api.rst"
# the pure-NumPy twin of the compiled modules: the same names, documented in prose; and
# the C kernels' shared library, which sits beside the extension modules (pkgutil lists
# any file with a shared-library suffix) but is no Python module
NOT_IN_API = {"fastclip.reference", "fastclip.libfastclip_kernels"}


def public_modules() -> list[str]:
    mods = ["fastclip"]
    for info in pkgutil.iter_modules(fastclip.__path__):
        name = f"fastclip.{info.name}"
        if info.name.startswith("_") or name in NOT_IN_API:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            # a plain C shared library next to the modules (the kernels), not a module
            if "does not define module export function" in str(exc):
                continue
            raise
        mods.append(name)
    return mods


def api_entries(text: str) -> tuple[set[str], set[str]]:
    """(documented fully qualified names, documented modules) of an API reference page."""
    names: set[str] = set()
    modules: set[str] = set()
    current = None
    in_summary = False
    for line in text.splitlines():
        m = re.match(r"^\.\. (currentmodule|automodule|module)::\s*(\S+)", line)
        if m:
            current = m.group(2)
            if m.group(1) != "currentmodule":
                modules.add(current)
            in_summary = False
            continue
        if line.startswith(".. autosummary::"):
            in_summary = True
            continue
        m = re.match(r"^\.\. (?:py:)?(?:data|function|class|auto\w+)::\s*(\S+)", line)
        if m:
            target = m.group(1)
            names.add(target if target.startswith("fastclip.") else f"{current}.{target}")
            in_summary = False
            continue
        if line.startswith(".. "):
            in_summary = False
            continue
        if in_summary:
            entry = line.strip()
            if not line.startswith("   "):
                if entry:
                    in_summary = False
                continue
            if entry and not entry.startswith(":"):
                names.add(entry if entry.startswith("fastclip.") else f"{current}.{entry}")
    return names, modules


def _resolve(fq: str):
    mod, _, attr = fq.rpartition(".")
    return getattr(importlib.import_module(mod), attr)


def test_api_parser():
    text = textwrap.dedent("""\
        .. automodule:: fastclip.clip

        .. currentmodule:: fastclip.clip

        .. autosummary::
           :toctree: api

           clip_grad_norm_
           zero_nans_

        Some prose.

        .. data:: __version__
        """)
    names, modules = api_entries(text)
    assert names == {"fastclip.clip.clip_grad_norm_", "fastclip.clip.zero_nans_",
                     "fastclip.clip.__version__"}
    assert modules == {"fastclip.clip"}


@pytest.mark.parametrize("modname", public_modules())
def test_every_public_name_is_in_the_api_reference(modname):
    names, modules = api_entries(API.read_text(encoding="utf-8"))
    assert modname in modules, f"docs/api.rst has no '.. automodule:: {modname}'"
    mod = importlib.import_module(modname)
    public = getattr(mod, "__all__", None)
    assert public is not None, f"{modname} has no __all__"
    documented = {}
    for fq in names:
        try:
            documented[fq] = _resolve(fq)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"docs/api.rst lists {fq}, which does not exist: {exc}")
    missing = []
    for name in public:
        obj = getattr(mod, name)
        if f"{modname}.{name}" in names:
            continue
        if inspect.ismodule(obj) and obj.__name__ in modules:
            continue
        if not isinstance(obj, (str, int, float, tuple)) and any(
                o is obj for o in documented.values()):
            continue
        missing.append(name)
    assert not missing, (f"{modname}.__all__ names missing from docs/api.rst (add them "
                         f"to the module's autosummary list): {missing}")


def test_every_schedule_has_a_page_with_its_curve():
    from fastclip import schedules

    factories = [n for n in schedules.__all__
                 if inspect.isfunction(getattr(schedules, n)) and n != "from_dict"]
    index = (DOCS / "schedules" / "index.rst").read_text(encoding="utf-8")
    for name in factories:
        page = DOCS / "schedules" / f"{name}.rst"
        assert page.exists(), f"no docs/schedules/{name}.rst"
        text = page.read_text(encoding="utf-8")
        assert ".. schedule-plot::" in text, f"docs/schedules/{name}.rst draws no curve"
        assert f"S.{name}(" in text, f"docs/schedules/{name}.rst does not plot {name}"
        assert re.search(rf"(?m)^   {name}$", index), f"{name} is not in the schedules toctree"


def rst_python_blocks(text: str) -> list[dict]:
    """The ``.. code-block:: python`` blocks: first code line, code, mpiexec ranks."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip())
        prev = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
        mark = re.fullmatch(r"\.\. mpiexec -n (\d+)", prev)
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith(":"):  # directive options
            j += 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        start = j
        while j < len(lines) and (not lines[j].strip()
                                  or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        code = textwrap.dedent("\n".join(lines[start:j])).strip("\n") + "\n"
        blocks.append({"line": start + 1, "code": code,
                       "ranks": int(mark.group(1)) if mark else None})
    return blocks


def _doc_blocks():
    for path in sorted(DOCS.rglob("*.rst")):
        if path.relative_to(DOCS).parts[0] in ("_build", "api", "_templates"):
            continue  # build output, generated API stubs, templates
        rel = path.relative_to(DOCS)
        for b in rst_python_blocks(path.read_text(encoding="utf-8")):
            marks = [pytest.mark.mpi] if b["ranks"] else []
            yield pytest.param(rel, b, id=f"{rel}:{b['line']}", marks=marks)


def test_rst_block_parser():
    text = ("Title\n\n.. code-block:: python\n\n   import numpy\n\n   x = 1\n\nProse.\n\n"
            ".. mpiexec -n 2\n.. code-block:: python\n\n   print(2)\n")
    blocks = rst_python_blocks(text)
    assert [(b["line"], b["code"], b["ranks"]) for b in blocks] == [
        (5, "import numpy\n\nx = 1\n", None), (14, "print(2)\n", 2)]


@pytest.mark.parametrize(("path", "block"), list(_doc_blocks()))
def test_docs_python_block_runs(path, block, tmp_path):
    run_block(block["code"], block["ranks"], f"the docs/{path} block at line {block['line']}",
              tmp_path)


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    for name in ("sphinx", "numpydoc", "matplotlib"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"building the docs needs {name} (pip install 'numpy-fastclip[docs]')")
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "api"))
    out = tmp_path / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
                           "-b", "html", str(src), str(out)],
                          capture_output=True, text=True, check=False, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index", "getting_started", "clipping", "layers_optimisers", "training",
                 "adaptive", "distributed", "api"):
        assert (out / f"{page}.html").exists(), page
    curve = (out / "schedules" / "warmup_cosine.html").read_text(encoding="utf-8")
    img = re.search(r'src="\.\./(_images/[0-9a-f]+\.png)"', curve)
    assert img and (out / img.group(1)).stat().st_size > 5000, "no schedule curve drawn"
    assert (out / "api" / "fastclip.clip.zero_nans_.html").exists()
