"""Every example runs in its --short mode in a fresh interpreter and prints what it promises."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = {
    "linear_regression_clipping.py": ["(diverging)", "clipped"],
    "relu_backprop_gradients.py": ["the gradients exploded", "Part 2"],
    "classifier_schedules_clipping.py": ["polynomial", "inverse sqrt", "inverse time",
                                         "value clip 0.01", "norm clip 1.0"],
    "sgd_noisy_regression.py": ["constant 0.1", "inverse time", "least squares"],
}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs(name):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--short"], check=False, capture_output=True,
                          text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in CASES[name]:
        assert text in proc.stdout, proc.stdout
    # each example explains itself
    doc = (EXAMPLES / name).read_text().split('"""')[1]
    assert len(doc.splitlines()) > 8
