"""`fastclip demo` / `python -m fastclip demo`: output, options and the plot."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fastclip import demo
from fastclip.__main__ import main


def _run(args, cwd):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "fastclip", "demo", *args], check=False, capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_demo_no_plot(tmp_path):
    proc = _run(["--epochs", "2", "--no-plot", "--seed", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "handwritten digits" in out
    # the plain run is stopped and the step and layer are reported
    assert re.search(r"fastclip stopped the run: step \d+ \(epoch \d+\): .*layer '\d\.(weight|bias)'",
                     out), out
    table = out[out.index("run  "):]
    for label in ("plain SGD", "value clipping", "global norm 1 + warm-up/cosine"):
        assert label in table
    assert re.search(r"plain SGD \(lr=1\).*1: step \d+, layer \d\.\w+", table)
    assert "plot saved" not in out and not list(tmp_path.iterdir())
    # no progress bar when stderr is not a terminal
    assert "step/s" not in proc.stderr and "it/s" not in proc.stderr


def test_demo_plot_to_tmp_dir(tmp_path, capsys):
    # the console-script entry point, in process
    target = tmp_path / "figs" / "demo.png"
    assert main(["demo", "--epochs", "1", "--no-progress", "--out", str(target)]) == 0
    assert f"plot saved to {target}" in capsys.readouterr().out
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["demo", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--epochs", "--seed", "--out", "--no-plot", "--help"):
        assert opt in out
    assert demo.main(["--epochs", "0", "--no-plot"]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_demo_in_process_results(capsys):
    res = demo.run(epochs=20, seed=0, out=None, progress=False)  # the default number of epochs
    assert [r.name for r in res] == ["plain", "value", "norm"]
    plain, value, norm = res
    assert plain.stopped is not None and plain.events and plain.events[-1].action == "raise"
    assert value.stopped is None and norm.stopped is None
    assert norm.test_accuracy >= 0.95 and np.isfinite(norm.final_loss)  # the stable run
    assert not norm.events and not value.events
    assert norm.history.lr[0] == 0.0 and norm.history.lr.max() == pytest.approx(1.0, rel=0.05)
    out = capsys.readouterr().out
    assert "test accuracy" in out


def test_demo_falls_back_to_generated_data(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    Xtr, ytr, Xte, _, source = demo.load_data(0)
    assert "generated" in source and "scikit-learn is not installed" in source
    assert Xtr.shape[1] == 64 and len(Xtr) + len(Xte) == 1797 and set(np.unique(ytr)) == set(range(10))
