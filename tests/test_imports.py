"""``import fastclip`` is cheap (submodules load on first use) and every public name works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import ModuleType

import pytest

import fastclip


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("FASTCLIP_IMPLEMENTATION", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_import_loads_neither_scipy_nor_the_training_modules() -> None:
    r = _run("import json, sys, fastclip; print(json.dumps(sorted(sys.modules)))")
    assert r.returncode == 0, r.stderr
    loaded = set(json.loads(r.stdout.splitlines()[-1]))
    assert "fastclip" in loaded
    heavy = {"scipy", "fastclip.train", "fastclip.nn", "fastclip.distributed",
             "fastclip.adaptive", "fastclip.optim", "fastclip.privacy", "threadpoolctl"}
    assert not heavy & loaded, sorted(heavy & loaded)


def test_attribute_access_imports_the_submodule() -> None:
    r = _run(
        "import json, sys, fastclip\n"
        "h = fastclip.train.History\n"
        "from fastclip import fit\n"
        "m = fastclip.nn.MLP\n"
        "print(json.dumps([fit is fastclip.train.fit, 'fastclip.train' in sys.modules,\n"
        "                  'fastclip.nn' in sys.modules, h.__name__, m.__name__]))"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == [True, True, True, "History", "MLP"]


@pytest.mark.parametrize("name", fastclip.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(fastclip, name)
    if name == "__version__":
        assert isinstance(value, str)
    else:  # defined by fastclip itself, not re-exported from elsewhere
        origin = value.__name__ if isinstance(value, ModuleType) else value.__module__
        assert origin.startswith("fastclip."), (name, origin)
    assert name in dir(fastclip)


def test_lazy_names_are_the_defining_modules_objects() -> None:
    import importlib

    for name, module in fastclip._LAZY.items():
        assert name in fastclip.__all__, name
        assert getattr(fastclip, name) is getattr(importlib.import_module(module), name), name
    for name in fastclip._SUBMODULES:
        assert getattr(fastclip, name) is importlib.import_module(f"fastclip.{name}")


def test_star_import_binds_all_names() -> None:
    ns: dict[str, object] = {}
    exec("from fastclip import *", ns)
    assert set(fastclip.__all__) <= set(ns)


def test_unknown_attribute_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="no attribute 'clip_everything'"):
        fastclip.clip_everything  # noqa: B018
    with pytest.raises(ImportError, match="cannot import name 'nope'"):
        exec("from fastclip import nope", {})
