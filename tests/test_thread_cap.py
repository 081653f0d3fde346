"""An absurd OMP_NUM_THREADS runs on a sane number of threads, with the same results.

The kernels use at most min(OMP_NUM_THREADS / threadpoolctl's limit, the
processors available, fastclip._common.MAX_THREADS) threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_common = pytest.importorskip("fastclip._common", reason="the compiled extension is not built")

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import hashlib, json
    import numpy as np
    import fastclip
    from fastclip import _common, optim
    fastclip.set_implementation("c")
    rng = np.random.default_rng(3)
    n = 3 * _common.PARALLEL_MIN + 77  # large enough for every kernel to use threads
    params = [rng.standard_normal(n).astype(np.float32), rng.standard_normal((999, 7))]
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    out = {"threads": _common.max_threads()}
    for name, kw in [("Adam", {}), ("SGD", {"lr": 0.1, "momentum": 0.9}), ("RMSprop", {})]:
        ps = [p.copy() for p in params]
        opt = getattr(optim, name)(ps, clip_norm=1.0, **kw)
        for _ in range(3):
            opt.step(grads)
        out[name] = [hashlib.sha256(p.tobytes()).hexdigest() for p in ps]
    g = [x.copy() for x in grads]
    out["clip"] = float(fastclip.clip_grad_norm_(g, 0.5))
    out["clip_bytes"] = hashlib.sha256(b"".join(x.tobytes() for x in g)).hexdigest()
    print("RESULT " + json.dumps(out))
    """
)


def _run(omp: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=omp, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
        timeout=600, cwd=str(HERE),
    )
    assert proc.returncode == 0, f"OMP_NUM_THREADS={omp}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-4000:]
    return json.loads(lines[0][len("RESULT "):])


def test_huge_omp_num_threads_is_capped_with_the_same_results() -> None:
    huge = _run("100000")
    one = _run("1")
    cap = min(_common.num_procs(), _common.MAX_THREADS)
    if _common.openmp_enabled():
        assert huge["threads"] == cap
    else:
        assert huge["threads"] == 1
    assert 1 <= huge["threads"] <= _common.MAX_THREADS
    assert one.pop("threads") == 1
    huge.pop("threads")
    assert huge == one


def test_max_threads_never_exceeds_the_cap() -> None:
    assert 1 <= _common.max_threads() <= min(_common.num_procs(), _common.MAX_THREADS)
