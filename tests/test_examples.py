"""Every example runs in its --short mode in a fresh interpreter, prints its ablation
table(s), and the statements its docstring makes hold on the printed numbers."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--short"], check=False,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def tables(out):
    """{title: {run: {column: cell}}} of every ``== ablation: ... ==`` table printed."""
    found = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"== ablation: (.+) ==", line)
        if not m:
            continue
        cols = [c.strip() for c in lines[i + 1].split(" | ")]
        assert cols[0] == "run", lines[i + 1]
        assert set(lines[i + 2]) <= {"-", "+"}, lines[i + 2]
        rows = {}
        for row in lines[i + 3:]:
            if not row.strip():
                break
            cells = [c.strip() for c in row.split(" | ")]
            assert len(cells) == len(cols), row
            rows[cells[0]] = dict(zip(cols[1:], cells[1:]))
        assert rows, f"table {m.group(1)!r} has no rows"
        found[m.group(1)] = rows
    assert found, "no ablation table printed:\n" + out
    return found


def num(cell):
    return float(cell)  # "nan", "inf" and "1.2e+05" included


def one(found, prefix):
    (title,) = [t for t in found if t.startswith(prefix)]
    return found[title]


def baseline(rows):
    (name,) = [r for r in rows if r.startswith("baseline")]
    return rows[name]


# --- the claims of each example's docstring --------------------------------------------

def check_linear_regression(found):
    p1 = one(found, "Part 1")
    assert {r["outcome"] for r in p1.values()} == {"converged"}  # the seed does not explode
    # the least-squares slope, to the 4 printed digits
    assert all(abs(num(r["final w"]) - 95 / 55) < 1e-3 for r in p1.values())
    for part in ("Part 2", "Part 3"):
        rows = one(found, part)
        assert baseline(rows)["outcome"] == "diverged"
        assert rows["clip_grad_value_ 0.5"]["outcome"] == "oscillates"  # bounded, no more
        assert num(rows["clip_grad_value_ 0.5"]["last-20 spread"]) > 1e-3
        assert rows["exponential lr decay"]["outcome"] == "converged"
        assert rows["clip + decay"]["outcome"] == "converged"
    p3 = one(found, "Part 3")
    assert abs(num(p3["clip + decay"]["final w"]) - 2) < 1e-4
    assert abs(num(p3["clip + decay"]["final b"]) + 1) < 1e-4


def check_relu_backprop(found):
    (seed,) = one(found, "Part 1").values()
    assert seed["overflow"] == "yes"  # the seed's own setup explodes
    rows = one(found, "Part 2")
    for name in ("baseline: ReLU, N(0, 3^2), lr 0.05", "Leaky ReLU alone", "lr decay alone"):
        assert rows[name]["overflow"] == "yes", name
    he, clip, both = rows["He init alone"], rows["clip_grad_norm_ 1.0 alone"], rows["all four together"]
    for r in (he, clip, both):
        assert r["overflow"] == "no" and math.isfinite(num(r["final loss"]))
    # He alone is the best single remedy and beats all four together
    assert num(he["final loss"]) < num(both["final loss"]) < num(clip["final loss"])


def check_classifier(found):
    rows = one(found, "peak learning rate")
    assert rows["baseline: constant 0.1"]["outcome"] == "trained"
    assert rows["baseline: constant 0.5"]["outcome"] in ("exploded", "failed")
    for name in ("polynomial decay (power 2)", "inverse sqrt decay", "inverse time decay"):
        assert rows[name]["outcome"] in ("exploded", "failed"), name
    base_acc = num(rows["baseline: constant 0.5"]["test accuracy"])
    singles = ("value clip 0.01", "norm clip 1.0")
    for name in singles:
        assert rows[name]["outcome"] == "trained" and num(rows[name]["test accuracy"]) > base_acc
    best = rows["norm clip 1.0 + polynomial"]
    assert best["outcome"] == "trained"
    assert num(best["test accuracy"]) >= max(num(rows[n]["test accuracy"]) for n in singles)


def check_adaptive(found):
    rows = one(found, "adaptive clipping")
    assert baseline(rows)["outcome"] == "exploded"
    for name in ("AGC (0.01)", "AutoClip (10th percentile)"):
        assert rows[name]["outcome"] == "trained", name
    assert rows["ZClip (defaults)"]["outcome"] == "exploded"
    assert int(rows["ZClip (defaults)"]["exploded at step"]) < 25  # during its warm-up
    assert rows["ZClip (warmup_steps=5)"]["outcome"] != "trained"
    # max_grad_norm=1 caps every step: the same numbers as fixed clipping
    same = ("final loss", "test accuracy", "max grad norm")
    assert [rows["ZClip (max_grad_norm=1)"][c] for c in same] == \
        [rows["fixed global norm 1"][c] for c in same]
    assert rows["warm-up/cosine lr alone"]["outcome"] != "exploded"
    singles = ("AGC (0.01)", "AutoClip (10th percentile)", "ZClip (max_grad_norm=1)",
               "fixed global norm 1", "warm-up/cosine lr alone")
    for combo in ("AGC + warm-up/cosine", "AutoClip + warm-up/cosine"):
        assert rows[combo]["outcome"] == "trained"
        assert num(rows[combo]["test accuracy"]) >= max(num(rows[s]["test accuracy"]) for s in singles)


def check_adam_rmsprop(found):
    p1 = one(found, "Part 1")
    assert baseline(p1)["outcome"] == "diverged"
    for name in ("Adam", "RMSprop", "Adam + clip value 0.5"):
        assert p1[name]["outcome"] == "converged" and num(p1[name]["|w - w*|"]) < 1e-6, name
    assert p1["descent + clip value 0.5"]["outcome"] == "oscillates"
    p2 = one(found, "Part 2")
    assert baseline(p2)["outcome"] == "exploded"
    for name in ("Adam", "RMSprop", "SGD + clip norm 1", "Adam + clip norm 1",
                 "RMSprop + clip norm 1"):
        assert p2[name]["outcome"] == "trained", name
    assert num(p2["Adam"]["test accuracy"]) > num(p2["SGD + clip norm 1"]["test accuracy"])


def check_init(found):
    rows = one(found, "initialisation")
    normal, xavier, he = (rows["baseline: N(0, 1) (randn)"], rows["Xavier normal"],
                          rows["He normal"])
    assert normal["outcome"] == "exploded"
    clipped = rows["N(0, 1) + clip norm 1"]
    assert clipped["outcome"] != "exploded" and num(clipped["final loss"]) > 1e3
    for r in (xavier, he):  # within the short run's budget
        assert r["outcome"] != "exploded"
    # the signal at the last hidden layer: N(0, 1) huge, Xavier > 10x weaker than He
    rms = {k: num(r["last hidden RMS at init"]) for k, r in (("n", normal), ("x", xavier),
                                                               ("h", he))}
    assert rms["n"] > 1e3 * rms["h"] and rms["h"] > 10 * rms["x"]
    assert num(he["test accuracy"]) > num(xavier["test accuracy"])
    assert num(rows["He + clip norm 1"]["test accuracy"]) > \
        num(rows["Xavier + clip norm 1"]["test accuracy"])
    best = max(rows.values(), key=lambda r: num(r["test accuracy"]))
    assert best is rows["He + clip norm 1"]


def check_activations(found):
    rows = one(found, "activation functions")
    assert rows["baseline: ReLU"]["outcome"] == "exploded"
    # Leaky ReLU does not train: it ends at chance accuracy or explodes as well, which
    # of the two depends on the GEMMs' rounding (OpenBLAS or MKL)
    assert rows["Leaky ReLU (0.01)"]["outcome"] in ("failed", "exploded")
    prelu = rows["PReLU (learned, from 0.01)"]
    assert prelu["outcome"] == "exploded"
    assert int(prelu["exploded at step"]) < int(rows["baseline: ReLU"]["exploded at step"])
    for name in ("ReLU + clip norm 1", "Leaky ReLU + clip norm 1", "PReLU + clip norm 1"):
        assert rows[name]["outcome"] == "trained", name
    assert num(rows["PReLU + clip norm 1"]["dead units"]) < \
        num(rows["ReLU + clip norm 1"]["dead units"])


def check_sgd_noisy(found):
    rows = one(found, "SGD on noisy")
    const = rows["baseline: constant 0.1"]
    for name in ("inverse time", "cosine"):
        assert num(rows[name]["last-200 spread"]) < num(const["last-200 spread"]) / 5, name
        assert num(rows[name]["final distance"]) < num(const["final distance"]), name


def check_private(found):
    rows = one(found, "private training on the digits")
    plain = rows["not private"]
    budgets = [("epsilon <= 1", 1.0), ("epsilon <= 3", 3.0), ("epsilon <= 8", 8.0)]
    for name, eps in budgets:
        r = rows[name]
        assert 0 < num(r["epsilon spent"]) <= eps, name           # the budget holds
        assert num(r["test accuracy"]) > 0.3, name                # it learns (chance: 0.1)
        assert num(r["test accuracy"]) <= num(plain["test accuracy"]), name
    accs = [num(rows[name]["test accuracy"]) for name, _ in budgets]
    assert accs[0] == min(accs), "the smallest budget is the least accurate"
    sigmas = [num(rows[name]["noise multiplier"]) for name, _ in budgets]
    assert sigmas == sorted(sigmas, reverse=True), "a larger budget needs less noise"


def check_batchnorm(found):
    a = one(found, "A, the demo")
    b = one(found, "B, 9-layer")
    for rows in (a, b):
        base, bn = rows["baseline"], rows["batch norm alone"]
        assert base["outcome"] == "exploded" and bn["outcome"] == "exploded"
        assert int(bn["exploded at step"]) > int(base["exploded at step"])  # delayed only
        for name in ("clip norm 1 alone", "batch norm + clip norm 1"):
            assert rows[name]["exploded at step"] == "-", name
    assert a["clip norm 1 alone"]["outcome"] == "trained"
    accs = {k: num(v["test accuracy"]) for k, v in a.items()}
    assert accs["batch norm + clip norm 1"] == max(accs.values())
    assert max(num(v["test accuracy"]) for v in b.values()) < 0.7


def check_mpi(out):
    assert "1 rank(s)" in out and "replicas identical on all 1 rank(s): True" in out


CLAIMS = {
    "private_digits.py": check_private,
    "batchnorm.py": check_batchnorm,
    "linear_regression_clipping.py": check_linear_regression,
    "relu_backprop_gradients.py": check_relu_backprop,
    "classifier_schedules_clipping.py": check_classifier,
    "adaptive_clipping.py": check_adaptive,
    "adam_rmsprop.py": check_adam_rmsprop,
    "xavier_vs_he_init.py": check_init,
    "leaky_prelu_activations.py": check_activations,
    "sgd_noisy_regression.py": check_sgd_noisy,
}
# mpi: one process here (2 and 3 ranks under mpiexec in tests/test_mpi.py); it shows
# data-parallel training, not a remedy, so it has no ablation table
OTHER = {"mpi_data_parallel.py": check_mpi}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")) == \
        sorted([*CLAIMS, *OTHER])


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_example_table_and_claims(name):
    CLAIMS[name](tables(_run(name)))
    # each example explains itself
    doc = (EXAMPLES / name).read_text().split('"""')[1]
    assert len(doc.splitlines()) > 8


@pytest.mark.parametrize("name", sorted(OTHER))
def test_other_example_runs(name):
    OTHER[name](_run(name))


def test_table_parser_rejects_a_broken_table():
    good = "== ablation: t ==\nrun | a\n----+--\nx   | 1\n\n"
    assert tables(good) == {"t": {"x": {"a": "1"}}}
    with pytest.raises(AssertionError):
        tables("no table here\n")
    with pytest.raises(AssertionError):
        tables("== ablation: t ==\nrun | a\n----+--\nx | 1 | 2\n")
