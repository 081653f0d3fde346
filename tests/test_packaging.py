"""Packaging: the distribution name, the version in every place it appears, the licence
shipped with the installed distribution, and ``fastclip --version``."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastclip
from fastclip.__main__ import main

DIST = "numpy-fastclip"  # the name on the package index; the import name is fastclip
ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> str:
    # tests/ sits next to pyproject.toml in the source tree and in the wheel check's copy
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_pyproject_name_and_version():
    text = _pyproject()
    assert re.search(r'(?m)^name = "(.+)"$', text).group(1) == DIST
    assert re.search(r'(?m)^version = "(.+)"$', text).group(1) == fastclip.__version__
    # the console script keeps the import name
    assert re.search(r'(?m)^fastclip = "fastclip\.__main__:main"$', text)


def test_installed_distribution_metadata():
    dist = importlib.metadata.distribution(DIST)
    assert dist.version == fastclip.__version__
    assert dist.metadata["License"] == "BSD-3-Clause"
    urls = dict(u.split(", ", 1) for u in dist.metadata.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    assert not any("github.com/fastclip/" in u for u in urls.values()), \
        "github.com/fastclip is the organisation of the unrelated 'fastclip' distribution"


def test_installed_distribution_ships_the_licence():
    dist = importlib.metadata.distribution(DIST)
    licences = [f for f in dist.files if f.name == "LICENSE"]
    assert licences, f"no LICENSE among the files of the installed {DIST}"
    text = licences[0].read_text(encoding="utf-8")
    assert "BSD 3-Clause License" in text and "fastclip developers" in text
    assert text == (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_version_option_in_process(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"fastclip {fastclip.__version__}\n"


def test_version_option_command_line():
    proc = subprocess.run([sys.executable, "-m", "fastclip", "--version"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # an editable install that rebuilds the extension on import prints a line before it
    assert proc.stdout.splitlines()[-1] == f"fastclip {fastclip.__version__}"


def test_version_of_console_script():
    script = Path(sys.executable).with_name("fastclip")
    if not script.exists():
        pytest.skip(f"the fastclip console script is not installed next to {sys.executable}")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"fastclip {fastclip.__version__}"
