"""Helpers shared by several test modules.

``implementation_fixture(family)``: a fixture running a test once per
implementation ("c", "python"), skipping "c" where the extension is not built.
``central_difference(loss, arr, index, eps)``: one entry of a finite-difference
gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fastclip
import fastclip._dispatch


def implementation_fixture(family: str) -> Any:
    """A fixture ``impl``: the test runs under each implementation of ``family``."""

    @pytest.fixture(params=["c", "python"])
    def impl(request: Any) -> Iterator[str]:
        if request.param == "c" and fastclip._dispatch.family(family).compiled is None:
            pytest.skip("the compiled extension is not built")
        with fastclip.use_implementation(request.param):
            yield request.param

    return impl


def central_difference(loss: Callable[[], float], arr: Any, index: Any, eps: float) -> float:
    """``(loss() at arr[index] + eps - loss() at arr[index] - eps) / (2 eps)``;
    ``arr[index]`` is restored."""
    old = arr[index]
    arr[index] = old + eps
    lp = loss()
    arr[index] = old - eps
    lm = loss()
    arr[index] = old
    return (lp - lm) / (2 * eps)
