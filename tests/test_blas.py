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
       "parallel": cfg["parallel"],
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


def _mkl_usable() -> bool:
    from fastclip import _blas

    return bool(_blas._mkl_candidates())


def _auto_library() -> str:
    """What 'auto' must choose on this machine."""
    from fastclip import _common

    return "mkl " if _common.cpu_vendor() == "intel" and _mkl_usable() else "scipy-openblas32 "


def _same_layers_as_the_reference(got: dict) -> None:
    ref = _reference_layers()
    for dtype, rtol in (("float32", 2e-5), ("float64", 1e-12)):
        for u, v in zip(got[dtype], ref[dtype], strict=True):
            u = np.asarray(u)
            scale = max(float(np.abs(v).max()), 1e-30)
            assert np.abs(u - v).max() <= rtol * scale, dtype


def test_default_is_auto_reported_with_its_reason_and_no_scipy() -> None:
    got = _result(_child(None))
    assert got["gemm"] == got["config"]
    assert got["gemm"].startswith(_auto_library()), got["gemm"]
    assert "FASTCLIP_BLAS unset" in got["reason"], got["reason"]
    assert got["scipy"] == [], "fastclip.nn imported SciPy"


@pytest.mark.parametrize("value", ["auto", "scipy-openblas32", " Scipy-OpenBLAS32 ", "", "mkl"])
def test_every_accepted_value_gives_its_library_and_the_same_layers(value: str) -> None:
    if value == "mkl" and not _mkl_usable():
        pytest.skip("the mkl wheel is not installed")
    got = _result(_child(value))
    want = {"mkl": "mkl ", "scipy-openblas32": "scipy-openblas32 "}.get(
        value.strip().lower(), _auto_library())
    assert got["gemm"].startswith(want), got["gemm"]
    # MKL runs on fastclip's OpenMP runtime: the kernels' passes then use its threads
    assert got["parallel"] == ("OpenMP threads (shared with the GEMMs)" if want == "mkl "
                               else "the kernels' pool"), got["parallel"]
    _same_layers_as_the_reference(got)
    if value.strip():
        assert f"FASTCLIP_BLAS={value.strip()!r}" in got["reason"], got["reason"]


@pytest.mark.parametrize("value", ["mkl_rt", "scipy", "openblas"])
def test_bad_value_is_a_clear_error_naming_the_variable(value: str) -> None:
    r = _child(value)
    assert r.returncode != 0
    assert ("ValueError: FASTCLIP_BLAS must be one of ('auto', 'scipy-openblas32', 'mkl')"
            in r.stderr), r.stderr
    assert repr(value) in r.stderr, r.stderr


def test_install_raises_import_error_when_the_wheel_cannot_load(monkeypatch) -> None:
    from fastclip import _blas

    def broken() -> tuple[int, int, str]:
        raise OSError("no library")

    monkeypatch.setattr(_blas, "_openblas32", broken)
    monkeypatch.setattr(_blas, "_mkl_candidates", list)  # auto then needs OpenBLAS
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


@pytest.fixture()
def blas_state():
    """Restores what install() records, for tests that call it in this process."""
    from fastclip import _blas

    saved = (_blas._lib, _blas._sgemm_name, _blas._reason)
    yield _blas
    _blas._lib, _blas._sgemm_name, _blas._reason = saved


def test_mkl_asked_for_but_absent_is_an_import_error_that_says_how_to_get_it(monkeypatch) -> None:
    from fastclip import _blas

    monkeypatch.setattr(_blas, "_mkl_candidates", list)
    monkeypatch.setenv("FASTCLIP_BLAS", "mkl")
    calls: list[tuple[int, int, str]] = []
    with pytest.raises(ImportError, match=r"FASTCLIP_BLAS=mkl.*pip install numpy-fastclip\[mkl\]"):
        _blas.install(lambda s, d, name: calls.append((s, d, name)))
    assert calls == []


@pytest.mark.parametrize("vendor", ["amd", "other"])
def test_auto_uses_openblas_on_cpus_other_than_intel(monkeypatch, blas_state, vendor: str) -> None:
    from fastclip import _blas

    monkeypatch.delenv("FASTCLIP_BLAS", raising=False)
    monkeypatch.setattr(_blas, "_cpu_vendor", lambda: vendor)
    monkeypatch.setattr(_blas, "_mkl", lambda: pytest.fail("MKL loaded on a non-Intel CPU"))
    calls: list[tuple[int, int, str]] = []
    _blas.install(lambda s, d, name: calls.append((s, d, name)))
    assert len(calls) == 1 and calls[0][2].startswith("scipy-openblas32 ")
    assert f"not an Intel CPU ({vendor})" in _blas.reason()


def test_auto_on_intel_without_the_mkl_wheel_says_how_to_get_it(monkeypatch, blas_state) -> None:
    from fastclip import _blas

    monkeypatch.delenv("FASTCLIP_BLAS", raising=False)
    monkeypatch.setattr(_blas, "_cpu_vendor", lambda: "intel")
    monkeypatch.setattr(_blas, "_mkl_candidates", list)
    calls: list[tuple[int, int, str]] = []
    _blas.install(lambda s, d, name: calls.append((s, d, name)))
    assert calls[0][2].startswith("scipy-openblas32 ")
    assert "numpy-fastclip[mkl]" in _blas.reason()


def test_cpu_vendor_is_one_of_three_names_and_show_config_says_it(capsys) -> None:
    import fastclip
    from fastclip import _common

    vendor = _common.cpu_vendor()
    assert vendor in ("intel", "amd", "other")
    assert fastclip.get_config()["kernels"]["cpu_vendor"] == vendor
    fastclip.show_config()
    assert f"CPU vendor: {vendor}" in capsys.readouterr().out


THREADS_CHILD = r"""
import json
import numpy as np
from threadpoolctl import threadpool_limits
from fastclip import _nn, nn

model = nn.MLP([784, 512, 512, 10], rng=0)
x = np.random.default_rng(1).standard_normal((512, 784)).astype(np.float32)
out = {"gemm": _nn.gemm_library()}
for n in (1, 2):
    with threadpool_limits(n):
        y = model.forward(x)
        model.backward(np.ones_like(y) / y.size)
        out[n] = [y.tobytes().hex()] + [g.tobytes().hex() for g in model.gradients()]
print(json.dumps({"gemm": out["gemm"], "same": out[1] == out[2]}))
"""


def test_with_mkl_the_thread_count_never_changes_the_layers_results() -> None:
    # fastclip sets MKL's strict reproducibility mode (OpenBLAS's sgemm, by
    # contrast, rounds differently on one and two threads at these sizes)
    if not _mkl_usable():
        pytest.skip("the mkl wheel is not installed")
    value = "mkl"
    env = dict(os.environ, FASTCLIP_BLAS=value, FASTCLIP_IMPLEMENTATION="c")
    env.pop("MKL_CBWR", None)
    r = subprocess.run([sys.executable, "-c", THREADS_CHILD], env=env, capture_output=True,
                       text=True, timeout=180, check=False)
    got = _result(r)
    assert got["gemm"].startswith(value + " "), got["gemm"]
    assert got["same"], "one and two threads give different bits"


OTHER_MKL_CHILD = r"""
import ctypes, json, sys
from fastclip import _blas

ctypes.CDLL(_blas._mkl_candidates()[0])  # another library of the process loads MKL first
import fastclip
from fastclip import _nn

print(json.dumps({"gemm": _nn.gemm_library(), "reason": _blas.reason()}))
"""


def test_auto_leaves_an_mkl_that_another_library_loaded_alone() -> None:
    from fastclip import _common

    if _common.cpu_vendor() != "intel" or not _mkl_usable():
        pytest.skip("auto chooses MKL only on Intel CPUs with the mkl wheel")
    env = dict(os.environ, FASTCLIP_IMPLEMENTATION="c")
    env.pop("FASTCLIP_BLAS", None)
    got = _result(subprocess.run([sys.executable, "-c", OTHER_MKL_CHILD], env=env,
                                 capture_output=True, text=True, timeout=120, check=False))
    assert got["gemm"].startswith("scipy-openblas32 "), got["gemm"]
    assert "another library in this process already uses MKL" in got["reason"]
    env["FASTCLIP_BLAS"] = "mkl"  # asked for: fastclip shares it
    got = _result(subprocess.run([sys.executable, "-c", OTHER_MKL_CHILD], env=env,
                                 capture_output=True, text=True, timeout=120, check=False))
    assert got["gemm"].startswith("mkl "), got["gemm"]


def test_show_config_reports_a_bad_value_instead_of_failing() -> None:
    env = dict(os.environ, FASTCLIP_BLAS="bogus", FASTCLIP_IMPLEMENTATION="c")
    r = subprocess.run([sys.executable, "-c", "import fastclip; fastclip.show_config()"],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "GEMMs (nn):      unavailable: FASTCLIP_BLAS must be one of" in r.stdout


def test_threadpool_limits_reach_the_layers_blas_once_fastclip_nn_is_imported() -> None:
    """The demo's one-BLAS-thread context imports fastclip.nn before the limit starts:
    threadpoolctl only limits libraries already loaded."""
    pytest.importorskip("threadpoolctl")
    code = ("from threadpoolctl import threadpool_info\n"
            "from fastclip import demo\n"
            "with demo._one_blas_thread():\n"
            "    import fastclip.nn\n"  # the layers' BLAS is loaded by now at the latest
            "    print(sorted({i['num_threads'] for i in threadpool_info() "
            "if i['user_api'] == 'blas'}))\n")
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    env.pop("FASTCLIP_IMPLEMENTATION", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[1]", r.stdout
