"""The installed package holds one shared kernels library, linked by every module.

Every extension module links ``fastclip_kernels`` (one shared library installed in
the package, found through the modules' rpath), so a process has one thread pool,
one CPU-feature detection, one overlap cache and one fork flag. The modules must
not carry their own copies of these: their dynamic symbol tables define none of
the kernels' symbols, and only the kernel API is exported from the library.
"""

from __future__ import annotations

import glob
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastclip

_common = pytest.importorskip("fastclip._common", reason="the compiled extension is not built")

PKG = Path(fastclip.__file__).resolve().parent
# State that must exist once per process, and the API the bindings call.
STATE_SYMBOLS = {
    "fc_parallel_for", "fc_max_threads", "fc_set_serial_only", "fc_serial_only",
    "fc_simd_level", "fc_extents_overlap", "fc_openmp_enabled",
}
EXPORTED = {
    "fc_max_threads", "fc_set_serial_only", "fc_serial_only", "fc_simd_level",
    "fc_extents_overlap", "fc_openmp_enabled", "fc_clip_grad_norm_", "fc_optim_step",
    "fc_schedule_eval", "fc_agc_", "fc_nn_mse_f32",
}
INTERNAL = {"fc_parallel_for", "fc_iter_init", "fc_iter_advance", "fc_use_parallel"}


def _module_dirs() -> list[Path]:
    """Directories holding the compiled modules (an editable install may place them
    outside the source tree's package directory)."""
    dirs = []
    for name in ("_common", "_clip", "_nn", "_optim", "_schedules", "_adaptive"):
        mod = importlib.import_module(f"fastclip.{name}")
        dirs.append(Path(mod.__file__).resolve().parent)
    return sorted(set(dirs))


def _modules() -> list[Path]:
    mods = []
    for d in _module_dirs():
        mods += [Path(p) for p in glob.glob(str(d / "_*.so")) + glob.glob(str(d / "_*.pyd"))]
    return sorted(mods)


def _libraries() -> list[Path]:
    libs = []
    for d in _module_dirs():
        for pat in ("libfastclip_kernels*.so*", "libfastclip_kernels*.dylib",
                    "fastclip_kernels*.dll"):
            libs += [Path(p) for p in glob.glob(str(d / pat))]
    return sorted(set(libs))


def _nm_defined(path: Path) -> set[str]:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed: cannot read the dynamic symbol tables")
    args = [nm, "-gU", str(path)] if sys.platform == "darwin" else [
        nm, "-D", "--defined-only", str(path)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names.add(parts[-1].lstrip("_") if sys.platform == "darwin" else parts[-1])
    return names


def test_one_kernels_library_next_to_the_modules() -> None:
    libs = _libraries()
    assert len(libs) == 1, f"expected one fastclip_kernels library, found {libs}"
    mods = _modules()
    assert len(mods) >= 6, mods
    assert {m.parent for m in mods} == {libs[0].parent}


@pytest.mark.skipif(sys.platform == "win32", reason="nm reads ELF and Mach-O files only")
def test_modules_define_no_kernel_symbols() -> None:
    for mod in _modules():
        defined = _nm_defined(mod)
        own = sorted(s for s in defined if s.startswith("fc_"))
        assert not own, f"{mod.name} defines kernel symbols itself: {own}"
    lib = _nm_defined(_libraries()[0])
    assert STATE_SYMBOLS & EXPORTED <= lib
    assert EXPORTED <= lib, sorted(EXPORTED - lib)
    # helpers shared by the library's own files are not exported
    assert not (INTERNAL & lib), sorted(INTERNAL & lib)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps is Linux's")
def test_the_process_maps_one_kernels_library() -> None:
    for name in ("_common", "_clip", "_nn", "_optim", "_schedules", "_adaptive", "_distributed"):
        importlib.import_module(f"fastclip.{name}")
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "fastclip_kernels" in line}
    assert len(paths) == 1, paths
    (path,) = paths
    assert os.path.samefile(path, _libraries()[0])
