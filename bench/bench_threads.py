"""The parallel primitive in the pattern of a training loop.

Each timed call comes right after ~1 ms of other work, a float32 GEMM of the
MLP's size through NumPy's BLAS (so fastclip's idle helper threads have gone to
sleep, and the BLAS threads are alive and spinning), as in a training step:

* ``clip``: ``fastclip.clip_grad_norm_`` of the 669,706-element gradient set of a
  784-512-512-10 MLP, clipped (norm pass and scaling pass);
* ``adam``: ``fastclip.optim.Adam(clip_norm=1.0).step(grads)`` on the same set;
* ``sgd``: SGD with momentum 0.9 and ``clip_norm=1.0``.

Only the fastclip call is timed. Each configuration runs in its own process;
configurations alternate round by round so that a change of machine load hits
all of them alike. Prints one line per configuration: median and quartiles in
microseconds.

    python bench/bench_threads.py [--rounds 5] [--calls 200] [--threads 1 2]

``--env NAME=VALUE`` (repeatable) adds an environment variable to every child,
e.g. to compare two builds' settings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, math, sys, time
import numpy as np
import fastclip
from fastclip import optim
kind, calls, gemm_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rng = np.random.default_rng(0)
sizes = [784, 512, 512, 10]
params, grads = [], []
for fi, fo in zip(sizes[:-1], sizes[1:]):
    for shape in ((fi, fo), (fo,)):
        params.append((rng.standard_normal(shape) * math.sqrt(2 / fi)).astype(np.float32))
        grads.append((rng.standard_normal(shape) * 0.01).astype(np.float32))
# the other work: a GEMM of the MLP's first layer, batch chosen for ~gemm_ms
w = rng.standard_normal((784, 512)).astype(np.float32)
batch = 64
while True:
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(5):
        x @ w
    if (time.perf_counter() - t0) / 5 * 1e3 >= gemm_ms or batch >= 8192:
        break
    batch *= 2
if kind == "clip":
    work = [g.copy() for g in grads]
    def call():
        for d, s in zip(work, grads):
            d[...] = s * 100.0  # outside the timing: restore a set that gets clipped
        t0 = time.perf_counter()
        fastclip.clip_grad_norm_(work, 1.0)
        return time.perf_counter() - t0
else:
    opt = (optim.Adam(params, lr=1e-3, clip_norm=1.0) if kind == "adam"
           else optim.SGD(params, lr=1e-3, momentum=0.9, clip_norm=1.0))
    def call():
        t0 = time.perf_counter()
        opt.step(grads)
        return time.perf_counter() - t0
for _ in range(20):
    x @ w
    call()
out = []
for _ in range(calls):
    x @ w
    out.append(call())
print("RESULT " + json.dumps({"times": out, "batch": batch}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--kinds", nargs="+", default=["clip", "adam", "sgd"])
    ap.add_argument("--gemm-ms", type=float, default=1.0)
    ap.add_argument("--env", action="append", default=[],
                    help="NAME=VALUE for every child; several --config sets compare settings")
    ap.add_argument("--config", action="append", default=[],
                    help="label:NAME=VALUE[,NAME=VALUE]: a configuration to compare (repeatable)")
    args = ap.parse_args()
    base = dict(os.environ)
    for kv in args.env:
        k, v = kv.split("=", 1)
        base[k] = v
    configs = [("current", {})]
    if args.config:
        configs = []
        for c in args.config:
            label, _, rest = c.partition(":")
            extra = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
            configs.append((label, extra))
    times: dict[tuple, list[float]] = {}
    batch = None
    for _ in range(args.rounds):
        for kind in args.kinds:
            for nt in args.threads:
                for label, extra in configs:
                    env = dict(base, OMP_NUM_THREADS=str(nt), OPENBLAS_NUM_THREADS=str(nt),
                               **extra)
                    proc = subprocess.run(
                        [sys.executable, "-c", CHILD, kind, str(args.calls), str(args.gemm_ms)],
                        env=env, capture_output=True, text=True, check=True)
                    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][0]
                    res = json.loads(line[7:])
                    batch = res["batch"]
                    times.setdefault((kind, nt, label), []).extend(res["times"])
    print(f"# GEMM batch {batch} x 784 @ 784 x 512 float32 before every call; "
          f"{args.rounds} rounds x {args.calls} calls; load average {os.getloadavg()[0]:.1f}")
    print(f"{'kind':6} {'threads':>7} {'config':>10} {'median us':>10} {'q25':>8} {'q75':>8}")
    for (kind, nt, label), ts in sorted(times.items()):
        ts = sorted(ts)
        q = lambda f: ts[int(f * (len(ts) - 1))] * 1e6  # noqa: E731
        print(f"{kind:6} {nt:>7} {label:>10} {q(0.5):>10.1f} {q(0.25):>8.1f} {q(0.75):>8.1f}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"# {time.time() - t0:.0f} s")
