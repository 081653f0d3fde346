"""Make fastclip's compiled modules unimportable, as on a machine without a C compiler.

Not a test module. :func:`install` puts a finder first on ``sys.meta_path`` that
raises :class:`ModuleNotFoundError` for every ``fastclip._*`` module that would
load from a compiled extension file (and for the generated ``_build_info``);
the pure-Python modules import as usual. ``conftest.py`` installs it when
``FASTCLIP_TEST_NO_EXTENSION=1``, so that ``FASTCLIP_TEST_NO_EXTENSION=1 pytest``
runs the suite as it runs where the extension is not built.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

ENV = "FASTCLIP_TEST_NO_EXTENSION"


class BlockCompiled(importlib.abc.MetaPathFinder):
    """Refuses compiled ``fastclip._*`` modules; defers everything else."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> None:
        if not fullname.startswith("fastclip._"):
            return None
        if fullname == "fastclip._build_info":  # written by the build, with the modules
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if (spec.origin or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                raise ModuleNotFoundError(
                    f"No module named {fullname!r} (compiled module blocked)", name=fullname)
            return None  # a Python module: let the regular finders load it
        return None


def install() -> None:
    """Block the compiled modules in this process (before fastclip is imported)."""
    if any(isinstance(f, BlockCompiled) for f in sys.meta_path):
        return
    loaded = [m for m in sys.modules if m == "fastclip" or m.startswith("fastclip.")]
    if loaded:
        raise RuntimeError(f"install() must run before fastclip is imported; loaded: {loaded}")
    sys.meta_path.insert(0, BlockCompiled())
