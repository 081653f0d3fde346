"""Docstring paragraphs shared by several public functions, filled in at import.

A docstring line that holds only ``{name}`` (after its indentation) is
replaced by the paragraph ``name``, every line of it indented as that line; the
rest of the docstring stays as written (braces elsewhere are not touched). The
rendered ``__doc__`` (``help()``, Sphinx, doctest) is the full text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["GIVEN_PARAMS", "fill"]

# What the in-place functions of fastclip.clip and fastclip.adaptive take as gradients.
GIVEN_PARAMS = """
Given parameters (``model.parameters()`` of fastclip or torch), each
``p.grad`` is used and parameters whose grad is None are skipped, as in
PyTorch; given plain arrays (or plain torch tensors), the arrays are the
gradients themselves. Mixing the two in one call is a TypeError.
A nested dict/list/tuple of arrays is accepted too (leaves in order).
"""

T = TypeVar("T")

_SLOT = re.compile(r"^([ \t]*)\{(\w+)\}$", re.MULTILINE)


def fill(**paragraphs: str) -> Callable[[T], T]:
    """Decorator: put ``paragraphs`` (dedented text) into the slots of ``obj.__doc__``.

    A slot naming no paragraph raises KeyError at import.
    """

    def put(match: re.Match[str]) -> str:
        indent, name = match.groups()
        return "\n".join(indent + line if line else "" for line in
                         paragraphs[name].strip("\n").splitlines())

    def decorate(obj: T) -> T:
        obj.__doc__ = _SLOT.sub(put, obj.__doc__ or "")
        return obj

    return decorate
