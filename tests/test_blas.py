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
cfg = fastclip.get_config()["kernels"]
out = {"gemm": _nn.gemm_library(), "config": cfg["gemm"], "reason": cfg["gemm_reason"],
       "scipy": sorted(m for m in sys.modules if m == "scipy" or m.startswith("scipy."))}
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


def _result(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    # the last line: an editable install that rebuilds on import prints before it
    return json.loads(r.stdout.splitlines()[-1])


def _reference_layers() -> dict[str, list[np.ndarray]]:
    """The same forward/backward through NumPy's matmul (the reference)."""
    import fastclip
    from fastclip import nn

    rng = np.random.default_rng(3)
    out = {}
    with fastclip.use_implementation("python"):
        for dtype in ("float32", "float64"):
            model = nn.MLP([37, 64, 33, 5], dtype=dtype, rng=0)
            x = rng.standard_normal((29, 37)).astype(dtype)
            y = model.forward(x)
            dx = model.backward(np.ones_like(y) / y.size)
            out[dtype] = [y, dx, *model.gradients()]
    return out


def test_default_is_scipy_openblas32_reported_with_its_reason_and_no_scipy() -> None:
    got = _result(_child(None))
    assert got["gemm"] == got["config"]
    assert got["gemm"].startswith("scipy-openblas32 "), got["gemm"]
    assert "FASTCLIP_BLAS unset" in got["reason"], got["reason"]
    assert got["scipy"] == [], "fastclip.nn imported SciPy"


@pytest.mark.parametrize("value", ["auto", "scipy-openblas32", " Scipy-OpenBLAS32 ", ""])
def test_every_accepted_value_gives_the_same_library_and_layers(value: str) -> None:
    got = _result(_child(value))
    assert got["gemm"].startswith("scipy-openblas32 "), got["gemm"]
    ref = _reference_layers()
    for dtype, rtol in (("float32", 2e-5), ("float64", 1e-12)):
        for u, v in zip(got[dtype], ref[dtype], strict=True):
            u = np.asarray(u)
            scale = max(float(np.abs(v).max()), 1e-30)
            assert np.abs(u - v).max() <= rtol * scale, dtype
    if value.strip():
        assert f"FASTCLIP_BLAS={value.strip()!r}" in got["reason"], got["reason"]


@pytest.mark.parametrize("value", ["mkl", "scipy", "openblas"])
def test_bad_value_is_a_clear_error_naming_the_variable(value: str) -> None:
    r = _child(value)
    assert r.returncode != 0
    assert "ValueError: FASTCLIP_BLAS must be one of ('auto', 'scipy-openblas32')" in r.stderr
    assert repr(value) in r.stderr, r.stderr


def test_install_raises_import_error_when_the_wheel_cannot_load(monkeypatch) -> None:
    from fastclip import _blas

    def broken() -> tuple[int, int, str]:
        raise OSError("no library")

    monkeypatch.setattr(_blas, "_openblas32", broken)
    calls: list[tuple[int, int, str]] = []
    for value in (None, "scipy-openblas32"):
        if value is None:
            monkeypatch.delenv("FASTCLIP_BLAS", raising=False)
        else:
            monkeypatch.setenv("FASTCLIP_BLAS", value)
        with pytest.raises(ImportError, match="need the scipy-openblas32 wheel .* no library"):
            _blas.install(lambda s, d, name: calls.append((s, d, name)))
    assert calls == []


def test_set_gemm_rejects_null_pointers() -> None:
    from fastclip import _nn

    before = _nn.gemm_library()
    with pytest.raises(ValueError, match="must be non-zero"):
        _nn._set_gemm(0, 0, "nothing")
    assert _nn.gemm_library() == before
