"""fastclip without its compiled extension: the pure-Python path the README promises.

Child processes block every compiled ``fastclip._*`` module (tests/_no_extension.py),
as on a machine where the extension was not built, then use the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PRELUDE = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import _no_extension
_no_extension.install()
"""

USE = """
import json, sys
import numpy as np
import fastclip
from fastclip import nn, optim, schedules as S
from fastclip.train import fit

out = {"impl": fastclip.get_implementation()}
g = [np.full((3, 4), 3.0, np.float32), np.full(5, 4.0)]
total = fastclip.clip_grad_norm_(g, max_norm=1.0)
out["total"] = float(total)
out["clipped_norm"] = float(np.sqrt(sum(float(np.sum(a.astype(np.float64) ** 2)) for a in g)))
sched = S.warmup_cosine(peak_value=0.1, warmup_steps=10, decay_steps=100)
out["sched"] = [sched(0), sched(10), sched(100)]

rng = np.random.default_rng(0)
X = rng.standard_normal((256, 8)).astype(np.float32)
y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
model = nn.MLP([8, 16, 2], rng=0)
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, clip_norm=1.0)
hist = fit(model, X, y, optimizer=opt, epochs=5, batch_size=32, seed=0)
out["loss"] = [float(hist.epoch_loss[0]), float(hist.epoch_loss[-1])]
out["accuracy"] = float(np.mean(model.forward(X).argmax(axis=1) == y))
cfg = fastclip.get_config()
out["compiled"] = cfg["kernels"]["compiled"]
out["built"] = cfg["build"]["built"]
fastclip.show_config()
try:
    fastclip.set_implementation("c")
except ImportError as exc:
    out["set_c"] = str(exc)
out["loaded"] = sorted(m for m in sys.modules if m.startswith("fastclip._"))
print(json.dumps(out))
"""


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("FASTCLIP_IMPLEMENTATION", None)
    e.update(env)
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], env=e,
                          capture_output=True, text=True, timeout=300, check=False)


def test_package_works_without_the_extension() -> None:
    r = _run(USE)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["impl"] == "python"
    assert out["compiled"] is False and out["built"] is False
    # the global norm of the 12 threes and 5 fours, then clipped to 1
    assert abs(out["total"] - (12 * 9 + 5 * 16) ** 0.5) < 1e-9
    assert abs(out["clipped_norm"] - 1.0) < 1e-5
    assert out["sched"][0] == 0.0 and abs(out["sched"][1] - 0.1) < 1e-12
    assert abs(out["sched"][2]) < 1e-12
    assert out["loss"][1] < 0.7 * out["loss"][0], out["loss"]
    assert out["accuracy"] > 0.9
    assert "compiled kernels unavailable" in r.stdout
    assert "set FASTCLIP_IMPLEMENTATION=python" in out["set_c"], out["set_c"]
    compiled = {"fastclip._adaptive", "fastclip._clip", "fastclip._common", "fastclip._nn",
                "fastclip._optim", "fastclip._schedules", "fastclip._distributed"}
    assert not compiled & set(out["loaded"]), out["loaded"]


def test_asking_for_c_without_the_extension_is_a_clear_error() -> None:
    r = _run("import fastclip\nfastclip.clip_grad_norm_\n", FASTCLIP_IMPLEMENTATION="c")
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "fastclip._clip is not available" in r.stderr, r.stderr


def test_the_test_modules_collect_without_the_extension() -> None:
    # FASTCLIP_IMPLEMENTATION=c (as the sanitizer run sets it) asks for the compiled
    # kernels, which is an ImportError without them: the variable is dropped here.
    env = {k: v for k, v in os.environ.items() if k != "FASTCLIP_IMPLEMENTATION"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         str(TESTS)],
        env={**env, "FASTCLIP_TEST_NO_EXTENSION": "1"}, capture_output=True, text=True,
        timeout=600, check=False, cwd=TESTS.parent)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " error" not in r.stdout.splitlines()[-1], r.stdout[-4000:]
    assert "the compiled extension is not built" in r.stdout
