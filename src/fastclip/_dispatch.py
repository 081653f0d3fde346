"""Run-time choice between the compiled kernels and the NumPy reference.

Each kernel family (``clip``, ``schedules``, ``nn``, ...) has a compiled module
``fastclip._<family>`` and a reference module ``fastclip.reference.<family>``
with the same functions. Public modules call through a :class:`Family`, whose
``impl`` attribute points at one of the two; :func:`set_implementation`
switches every family at once.

The initial choice comes from the ``FASTCLIP_IMPLEMENTATION`` environment
variable (``c`` or ``python``); when it is unset, the compiled kernels are
used if they were built and the reference otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

IMPLEMENTATIONS = ("c", "python")
_ENV = "FASTCLIP_IMPLEMENTATION"


class Family:
    """One kernel family: its compiled and reference modules."""

    __slots__ = ("name", "impl", "_compiled", "_compiled_error", "_not_built", "_reference")

    def __init__(self, name: str) -> None:
        self.name = name
        self._reference: ModuleType = importlib.import_module(f"fastclip.reference.{name}")
        try:
            self._compiled: ModuleType | None = importlib.import_module(f"fastclip._{name}")
            self._compiled_error: str | None = None
            self._not_built = False
        except ImportError as exc:  # extension not built, or it cannot load what it needs
            self._compiled = None
            self._compiled_error = str(exc)
            self._not_built = isinstance(exc, ModuleNotFoundError)
        self.impl: ModuleType = self._reference
        self._select(_current)

    @property
    def compiled(self) -> ModuleType | None:
        return self._compiled

    @property
    def reference(self) -> ModuleType:
        return self._reference

    def _select(self, name: str) -> None:
        if name == "c":
            if self._compiled is None:
                # a module that is not there: build advice; one that failed to load says
                # itself what to do (e.g. the BLAS it needs)
                advice = (f"; install fastclip from a wheel or build it with a C compiler, "
                          f"or set {_ENV}=python" if self._not_built else "")
                raise ImportError(
                    f"fastclip's compiled module fastclip._{self.name} is not available "
                    f"({self._compiled_error}){advice}"
                )
            self.impl = self._compiled
        else:
            self.impl = self._reference


_FAMILIES: dict[str, Family] = {}


def _compiled_available() -> bool:
    try:
        importlib.import_module("fastclip._common")
    except ImportError:
        return False
    return True


def _initial() -> str:
    env = os.environ.get(_ENV, "").strip().lower()
    if env:
        if env not in IMPLEMENTATIONS:
            raise ValueError(f"{_ENV} must be one of {IMPLEMENTATIONS}, got {env!r}")
        return env
    return "c" if _compiled_available() else "python"


_current = _initial()


def family(name: str) -> Family:
    """The :class:`Family` for ``name``, created on first use."""
    fam = _FAMILIES.get(name)
    if fam is None:
        fam = _FAMILIES[name] = Family(name)
    return fam


def get_implementation() -> str:
    """The implementation in use: ``"c"`` or ``"python"``."""
    return _current


def set_implementation(name: str) -> None:
    """Select the compiled kernels (``"c"``) or the NumPy reference (``"python"``).

    Parameters
    ----------
    name : {"c", "python"}
        Applies to every kernel family at once, process-wide.

    Raises
    ------
    ValueError
        If ``name`` is not one of the two.
    ImportError
        If ``"c"`` is asked for and the extension modules are not built.
    """
    global _current
    if not isinstance(name, str) or name.lower() not in IMPLEMENTATIONS:
        raise ValueError(f"name must be one of {IMPLEMENTATIONS}, got {name!r}")
    name = name.lower()
    previous = _current
    try:
        for fam in _FAMILIES.values():
            fam._select(name)
    except ImportError:
        for fam in _FAMILIES.values():
            fam._select(previous)
        raise
    _current = name


@contextlib.contextmanager
def use_implementation(name: str) -> Iterator[None]:
    """Context manager: run a block with ``name``, then restore the previous one."""
    previous = _current
    set_implementation(name)
    try:
        yield
    finally:
        set_implementation(previous)
