"""`fastclip demo` / `python -m fastclip demo`: output, options and the plot."""

import importlib.util
import io
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


PNG = b"\x89PNG\r\n\x1a\n"
needs_mpl = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                               reason="drawing the figure needs matplotlib (the [demo] extra)")



@needs_mpl
def test_demo_plot_to_tmp_dir(tmp_path, capsys):
    # the console-script entry point, in process
    (tmp_path / "figs").mkdir()
    target = tmp_path / "figs" / "demo.png"
    assert main(["demo", "--epochs", "1", "--no-progress", "--out", str(target)]) == 0
    assert f"plot saved to {target}" in capsys.readouterr().out
    data = target.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["demo.png", "figs"]


@needs_mpl
def test_demo_out_directory_with_separator(tmp_path, capsys):
    # "DIR/" writes DIR/fastclip_demo.png inside it, not a sibling "DIR.png"
    assert main(["demo", "--epochs", "1", "--no-progress", "--out", str(tmp_path) + os.sep]) == 0
    target = tmp_path / "fastclip_demo.png"
    assert f"plot saved to {target}" in capsys.readouterr().out
    assert target.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["fastclip_demo.png"]
    assert not (tmp_path.parent / (tmp_path.name + ".png")).exists()


def test_resolve_out(tmp_path):
    d = tmp_path / "existing"
    d.mkdir()
    # an existing directory, with or without the separator
    assert demo.resolve_out(str(d)) == str(d / "fastclip_demo.png")
    assert demo.resolve_out(d) == str(d / "fastclip_demo.png")
    assert demo.resolve_out(str(d) + os.sep) == str(d / "fastclip_demo.png")
    # a path ending in a separator is a directory even before it exists
    assert demo.resolve_out(str(tmp_path / "new") + os.sep) == str(tmp_path / "new" / "fastclip_demo.png")
    for ext in (".png", ".svg", ".pdf", ".PDF"):
        assert demo.resolve_out(str(tmp_path / f"f{ext}")) == str(tmp_path / f"f{ext}")
    assert demo.resolve_out(str(tmp_path / "noext")) == str(tmp_path / "noext.png")
    with pytest.raises(ValueError, match=r"out has an unknown extension '\.jpg'.*\.png, \.svg or \.pdf"):
        demo.resolve_out(str(tmp_path / "f.jpg"))
    with pytest.raises(ValueError, match="out must not be empty"):
        demo.resolve_out("")
    with pytest.raises(TypeError, match="out must be a path"):
        demo.resolve_out(3)
    assert list(tmp_path.iterdir()) == [d] and not list(d.iterdir())


def _cli_error(capsys, args):
    """Run the CLI in process; return its stderr, checking it failed cleanly before training."""
    assert main(["demo", "--no-progress", *args]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""  # nothing trained: the run prints its header first
    err = cap.err
    assert err.startswith("fastclip demo: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_cli_negative_seed(capsys):
    err = _cli_error(capsys, ["--seed", "-3"])
    assert "--seed must be >= 0, got -3" in err
    # the console entry point too: exit status 2, the message last (an editable development
    # install may print its rebuild log first), no traceback, no training
    proc = _run(["--seed", "-3", "--no-plot"], None)
    assert proc.returncode == 2 and "fastclip demo:" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "fastclip demo: --seed must be >= 0, got -3"
    assert "Traceback" not in proc.stderr


def test_cli_unknown_extension(tmp_path, capsys):
    err = _cli_error(capsys, ["--out", str(tmp_path / "fig.jpg")])
    assert "--out has an unknown extension '.jpg'" in err and ".png, .svg or .pdf" in err
    assert not list(tmp_path.iterdir())


def test_cli_missing_parent_directory(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "fig.png"
    err = _cli_error(capsys, ["--out", str(target)])
    assert f"--out: cannot write {target}" in err and "does not exist" in err
    err = _cli_error(capsys, ["--out", str(tmp_path / "newdir") + os.sep])
    assert "does not exist" in err
    assert not list(tmp_path.iterdir())


def test_cli_parent_is_a_file(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("keep")
    err = _cli_error(capsys, ["--out", str(tmp_path / "file.txt" / "fig.png")])
    assert "is not a directory" in err
    assert (tmp_path / "file.txt").read_text() == "keep"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write into a read-only directory")
def test_cli_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        err = _cli_error(capsys, ["--out", str(ro / "fig.png")])
    finally:
        ro.chmod(0o755)
    assert "Permission denied" in err and not list(ro.iterdir())


def test_cli_write_error_reported_before_training(tmp_path, capsys, monkeypatch):
    # a read-only file system, also when the tests run as root
    import errno

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(demo, "open", read_only, raising=False)
    target = tmp_path / "fig.svg"
    err = _cli_error(capsys, ["--out", str(target)])
    assert err == f"fastclip demo: --out: cannot write {target}: {os.strerror(errno.EROFS)}\n"
    with pytest.raises(OSError):
        demo.run(epochs=1, out=str(target), progress=False)
    assert capsys.readouterr().out == ""


def test_check_writable_leaves_no_trace(tmp_path):
    existing = tmp_path / "old.png"
    existing.write_bytes(b"old contents")
    demo._check_writable(str(existing))
    assert existing.read_bytes() == b"old contents"
    demo._check_writable(str(tmp_path / "new.png"))
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]


def test_run_checks_arguments_before_training(tmp_path, capsys):
    with pytest.raises(ValueError, match="seed must be >= 0, got -3"):
        demo.run(epochs=1, seed=-3, out=None)
    with pytest.raises(TypeError, match="seed must be an int"):
        demo.run(epochs=1, seed=1.5, out=None)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        demo.run(epochs=0, out=None)
    with pytest.raises(ValueError, match="out has an unknown extension"):
        demo.run(epochs=1, out=str(tmp_path / "x.gif"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        demo.run(epochs=1, out=str(tmp_path / "missing" / "x.png"))
    assert capsys.readouterr().out == "" and not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def short_results():
    return demo.run(epochs=2, seed=0, out=None, progress=False, stream=open(os.devnull, "w"))


@needs_mpl
@pytest.mark.parametrize("ext, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"), (".PNG", PNG)])
def test_plot_format_from_extension(tmp_path, short_results, ext, magic):
    path = demo.plot(short_results, str(tmp_path / f"fig{ext}"))
    assert path == str(tmp_path / f"fig{ext}")
    assert (tmp_path / f"fig{ext}").read_bytes()[: len(magic)] == magic


@needs_mpl
def test_figure_tells_the_story(short_results):
    fig = demo._figure(short_results)
    axes = {ax.get_title(loc="left").split(" (")[0]: ax for ax in fig.axes}
    for title in ("training loss per step", "global gradient norm before clipping",
                  "learning rate", "test accuracy after each epoch"):
        assert title in axes, sorted(axes)
    plain = short_results[0]
    ev = plain.stopped.event
    # the explosion step is marked and annotated with the blamed layer
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(f"explosion at step {ev.step}" in t and f"layer {ev.layer}" in t for t in texts), texts
    norm_ax = axes["global gradient norm before clipping"]
    assert norm_ax.get_yscale() == "log"
    # the clip threshold is drawn
    assert any(np.allclose(line.get_ydata(), demo.CLIP_NORM) for line in norm_ax.get_lines())
    # robust limits: no single per-batch outlier stretches the axis over many decades
    lo, hi = norm_ax.get_ylim()
    assert hi / lo < 1e7
    loss_ax = axes["training loss per step"]
    lo, hi = loss_ax.get_ylim()
    assert hi / lo < 1e7 and lo > 1e-6
    # accuracy per epoch of the runs that finished, in percent
    acc_ax = axes["test accuracy after each epoch"]
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in acc_ax.get_lines()]
    assert any(y.size == 2 and y.max() > 50 for y in ys)
    # the legend is a figure legend, outside the axes
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)


@needs_mpl
def test_plot_keeps_the_callers_backend(tmp_path):
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from fastclip import demo\n"
        "res = demo.run(epochs=1, out=None, progress=False)\n"
        f"demo.plot(res, {str(tmp_path / 'f.png')!r})\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "print('backend kept')\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=env, check=False)
    assert proc.returncode == 0 and "backend kept" in proc.stdout, proc.stderr[-3000:]
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["demo", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--epochs", "--seed", "--out", "--no-plot", "--help"):
        assert opt in out
    assert demo.main(["--epochs", "0", "--no-plot"]) == 2
    assert capsys.readouterr().err == "fastclip demo: --epochs must be >= 1, got 0\n"


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


def test_private_run_reports_epsilon_in_the_table():
    pytest.importorskip("dp_accounting")
    import io

    buf = io.StringIO()
    results = demo.run(epochs=1, seed=0, out=None, progress=False, stream=buf, private=True)
    assert [r.name for r in results] == ["plain", "value", "norm", "private"]
    priv = results[-1]
    assert 0 < priv.epsilon <= demo.PRIVATE_EPSILON
    assert priv.test_accuracy > 0.3  # it learns (chance: 0.1)
    assert all(np.isnan(r.epsilon) for r in results[:3])
    text = buf.getvalue()
    assert "epsilon" in text.splitlines()[-len(results) - 2]  # the table's header
    assert f"{priv.epsilon:.2f}" in text


def test_timed_runs_come_after_an_untimed_warm_up(monkeypatch):
    """The table's times compare the runs: the one-time start-up costs are paid by an
    untimed step before the first of them, not by the first run alone."""
    calls = []
    warm, train = demo._warm_up, demo._train_one
    monkeypatch.setattr(demo, "_warm_up", lambda *a: (calls.append("warm-up"), warm(*a)))
    monkeypatch.setattr(demo, "_train_one",
                        lambda name, *a: (calls.append(name), train(name, *a))[1])
    demo.run(epochs=1, out=None, progress=False, stream=io.StringIO())
    assert calls[0] == "warm-up" and len(calls) == 4 and "warm-up" not in calls[1:]
