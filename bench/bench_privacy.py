"""DP-SGD step: fastclip (per-example clipping in the backward) vs Opacus 1.6 and torch.

One training step of the 784-512-512-10 ReLU MLP (float32, softmax cross-entropy,
SGD) in five variants, each in its own fresh process, in alternating rounds,
after a warm-up; the table gives the median over rounds of each process's median
step time and the ratios of those medians:

- ``fastclip``: the ordinary step (forward, loss, backward without the input
  gradient, SGD with the backward's sums of squares);
- ``fastclip-dp``: the DP-SGD step: ``backward(per_example_clip=1.0)``, Gaussian
  noise (sigma = 1) on the summed clipped gradients, average, SGD;
- ``torch``: the ordinary torch step;
- ``opacus-hooks``: Opacus' ``GradSampleModule`` + ``DPOptimizer`` (per-sample
  gradients materialised by hooks);
- ``opacus-ghost``: Opacus' ghost clipping (``GradSampleModuleFastGradientClipping``,
  ``DPOptimizerFastGradientClipping``, ``DPLossFastGradientClipping``).

Usage: ``python bench/bench_privacy.py [--batches 64 256] [--rounds 5] [--reps 30]
[--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

CANDIDATES = ("fastclip", "fastclip-dp", "torch", "opacus-hooks", "opacus-ghost")
LR, CLIP, SIGMA = 0.01, 1.0, 1.0


def _fastclip_step(batch: int, private: bool):
    import fastclip
    from fastclip import nn, privacy

    model = _common.fastclip_mlp()
    x, y = _common.mlp_batch(batch)
    sgd = fastclip.optim.SGD(model.parameters(), lr=LR)
    dp = privacy.DPOptimizer(sgd, noise_multiplier=SIGMA, max_grad_norm=CLIP,
                             expected_batch_size=batch, rng=0)

    def step():
        out = model.forward(x)
        _, d = nn.softmax_cross_entropy(out, y)
        if private:
            model.backward(d, per_example_clip=CLIP, input_grad=False)
            dp.step(model.gradients())
        else:
            model.backward(d, input_grad=False)
            sgd.step(model.gradients(), sqnorms=model.grad_sqnorms())

    return step


def _torch_model():
    import torch

    sizes = _common.SIZES
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _torch_step(batch: int, kind: str):
    import torch

    x, y = _common.mlp_batch(batch)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = _torch_model()
    if kind == "torch":
        opt = torch.optim.SGD(model.parameters(), lr=LR)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()

        return step
    if kind == "opacus-hooks":
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        gsm = GradSampleModule(model)
        opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=LR), noise_multiplier=SIGMA,
                          max_grad_norm=CLIP, expected_batch_size=batch)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(gsm(xt), yt).backward()
            opt.step()

        return step
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

    gsm = GradSampleModuleFastGradientClipping(model, max_grad_norm=CLIP,
                                               use_ghost_clipping=True)
    opt = DPOptimizerFastGradientClipping(torch.optim.SGD(gsm.parameters(), lr=LR),
                                          noise_multiplier=SIGMA, max_grad_norm=CLIP,
                                          expected_batch_size=batch)
    crit = DPLossFastGradientClipping(gsm, opt, torch.nn.CrossEntropyLoss())

    def step():
        opt.zero_grad(set_to_none=True)
        crit(gsm(xt), yt).backward()
        opt.step()

    return step


def _worker(name: str, batch: int, reps: int, threads: int) -> None:
    warnings.simplefilter("ignore")
    if name.startswith("fastclip"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
        step = _fastclip_step(batch, name == "fastclip-dp")
    else:
        import torch

        torch.set_num_threads(threads)
        step = _torch_step(batch, name)
    _common.warm(step)  # threads started, buffers allocated
    times = _common.time_calls(step, reps)
    print(json.dumps({"median": statistics.median(times)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker, a.batch, a.reps, a.threads)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    for batch in a.batches:
        med: dict[str, list[float]] = {c: [] for c in a.candidates}
        for _ in range(a.rounds):
            for c in a.candidates:
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", c, "--batch", str(batch),
                     "--reps", str(a.reps), "--threads", str(a.threads)],
                    capture_output=True, text=True, env=env, check=True)
                med[c].append(json.loads(out.stdout.strip().splitlines()[-1])["median"])
        m = {c: statistics.median(v) for c, v in med.items()}
        print(f"\nbatch {batch} ({a.rounds} rounds x {a.reps} steps, {a.threads} threads)")
        print(f"{'candidate':<14} {'median ms':>10} {'vs fastclip-dp':>15}")
        for c in a.candidates:
            ratio = m[c] / m["fastclip-dp"] if "fastclip-dp" in m else float("nan")
            print(f"{c:<14} {m[c] * 1e3:>10.3f} {ratio:>14.2f}x")
        if "fastclip" in m and "fastclip-dp" in m:
            print(f"DP step / non-private step: {m['fastclip-dp'] / m['fastclip']:.3f}")


if __name__ == "__main__":
    main()
