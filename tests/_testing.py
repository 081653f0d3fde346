"""Helpers shared by several test modules.

``implementation_fixture(family)``: a fixture running a test once per
implementation ("c", "python"), skipping "c" where the extension is not built.
``central_difference(loss, arr, index, eps)``: one entry of a finite-difference
gradient. ``run_to_end(cmd, ...)``: a subprocess that must finish in time and
exit 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
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


def run_to_end(cmd: list[str], *, env: dict, timeout: float, what: str,
               cwd: Path | None = None, hang_hint: str = "") -> str:
    """Run ``cmd`` in its own session and return its output (stderr merged).

    Fails the test when it exits non-zero, or when it has not finished after
    ``timeout`` seconds (its whole process group is then killed).
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{what} did not finish in {timeout} s{hang_hint}:\n{out}")
    assert proc.returncode == 0, f"{what} exited with {proc.returncode}:\n{out}"
    return out
