"""Which BLAS the GEMMs of fastclip.nn call (fastclip._blas, FASTCLIP_BLAS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("fastclip._nn")

# A forward/backward of a small MLP in a child process: what the GEMM library gives.
CHILD = r"""
import json, sys
import numpy as np
import fastclip
from fastclip import _nn, nn

rng = np.random.default_rng(3)
out = {"gemm": _nn.gemm_library(), "config": fastclip.get_config()["kernels"]["gemm"]}
for dtype in ("float32", "float64"):
    model = nn.MLP([37, 64, 33, 5], dtype=dtype, rng=0)
    x = rng.standard_normal((29, 37)).astype(dtype)
    y = model.forward(x)
    dx = model.backward(np.ones_like(y) / y.size)
    out[dtype] = [y.tolist(), dx.tolist()] + [g.tolist() for g in model.gradients()]
print(json.dumps(out))
"""


def _child(blas: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("FASTCLIP_BLAS", None)
    if blas is not None:
        env["FASTCLIP_BLAS"] = blas
    env["FASTCLIP_IMPLEMENTATION"] = "c"
    return subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def _have_openblas32() -> bool:
    try:
        import scipy_openblas32  # noqa: F401
    except ImportError:
        return False
    return True


def test_default_prefers_scipy_openblas32_and_reports_it() -> None:
    r = _child(None)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["gemm"] == got["config"]
    if _have_openblas32():
        assert got["gemm"].startswith("scipy-openblas32 "), got["gemm"]
    else:
        assert got["gemm"] == "scipy.linalg.cython_blas"


@pytest.mark.skipif(not _have_openblas32(), reason="scipy-openblas32 is not installed")
def test_both_libraries_give_the_same_layers() -> None:
    a, b = _child("scipy-openblas32"), _child("scipy")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    ra, rb = json.loads(a.stdout.splitlines()[-1]), json.loads(b.stdout.splitlines()[-1])
    assert ra["gemm"].startswith("scipy-openblas32 ")
    assert rb["gemm"] == "scipy.linalg.cython_blas"
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-12)):
        for u, v in zip(ra[dtype], rb[dtype], strict=True):
            u, v = np.asarray(u), np.asarray(v)
            scale = max(np.abs(v).max(), 1e-30)
            assert np.abs(u - v).max() <= rtol * scale, dtype


def test_bad_value_names_the_variable() -> None:
    r = _child("mkl")
    assert r.returncode != 0
    assert "FASTCLIP_BLAS must be one of" in r.stderr and "'mkl'" in r.stderr, r.stderr


def test_install_falls_back_to_scipy_when_the_wheel_cannot_load(monkeypatch) -> None:
    from fastclip import _blas

    def broken() -> tuple[int, int, str]:
        raise OSError("no library")

    monkeypatch.setattr(_blas, "_openblas32", broken)
    calls: list[tuple[int, int, str]] = []
    monkeypatch.delenv("FASTCLIP_BLAS", raising=False)
    _blas.install(lambda s, d, name: calls.append((s, d, name)))
    assert calls == [(0, 0, "")]
    monkeypatch.setenv("FASTCLIP_BLAS", "scipy-openblas32")
    with pytest.raises(ImportError, match="FASTCLIP_BLAS=scipy-openblas32"):
        _blas.install(lambda s, d, name: calls.append((s, d, name)))
    assert len(calls) == 1
