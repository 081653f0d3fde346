"""Leaks: every kernel called 10**5 times, error paths included, on tiny arrays.

Release builds of CPython have no ``sys.gettotalrefcount``; these proxies catch
what a leaking binding would do:

* resident memory (psutil RSS) stays flat: a leaked ``malloc`` of even a few
  bytes per call grows it by megabytes over 10**5 calls;
* memory traced by tracemalloc stays flat (NumPy reports its array buffers
  to tracemalloc, so a leaked output array shows there);
* the reference counts of the inputs, and the number of objects the garbage
  collector tracks, do not grow.

``FASTCLIP_LEAK_CALLS`` changes the number of kernel calls (default 100000).
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc

import _harden as H
import numpy as np
import psutil
import pytest

import fastclip

CALLS = int(os.environ.get("FASTCLIP_LEAK_CALLS", "100000"))
# Under AddressSanitizer (scripts/sanitize.sh) freed memory sits in ASan's
# quarantine, so RSS measures ASan, not fastclip; ASan itself checks every access
# there, and the tracemalloc and reference-count checks still run.
SANITIZED = bool(fastclip.get_config()["build"].get("sanitize"))
ERROR_EVERY = 4  # one error-path call per this many normal calls
RSS_TOLERANCE = 1 << 20  # bytes over all the calls
TRACED_TOLERANCE = 32 << 10  # bytes over the traced calls
OBJECTS_TOLERANCE = 64


def _run(case: H.Case, mod, state, iterations: int, start: int = 0) -> None:
    errors = case.errors
    for i in range(start, start + iterations):
        case.call(mod, state)
        if errors and i % ERROR_EVERY == 0:
            exc_type, fn = errors[(i // ERROR_EVERY) % len(errors)]
            try:
                fn(mod, state)
            except exc_type:
                pass
            else:
                raise AssertionError(f"{case.id}: error call {errors.index((exc_type, fn))} "
                                     "did not raise")


def _probes(state) -> list[int]:
    objs = []

    def walk(o):
        if isinstance(o, np.ndarray):
            objs.append(o)
            if o.base is not None:
                objs.append(o.base)
        elif isinstance(o, (list, tuple)):
            objs.append(o)
            for x in o:
                walk(x)
        elif isinstance(o, dict):
            for x in o.values():
                walk(x)

    walk(state)
    # (not dtype objects: NumPy 2.4's np.ones/np.broadcast_to themselves add a
    # reference to the float64 dtype per call)
    return [sys.getrefcount(o) for o in objs]


@pytest.mark.parametrize("case", H.CASES, ids=H.CASE_IDS)
def test_no_leaks(case: H.Case) -> None:
    mod = H.compiled(case.family)
    state = H.make(case, 0, 24)
    per_iteration = case.kernel_calls + (1 / ERROR_EVERY if case.errors else 0)
    iterations = max(int(CALLS / per_iteration), 1000)
    proc = psutil.Process()

    _run(case, mod, state, 2000)  # warm caches, free lists and arenas
    gc.collect()
    refs0 = _probes(state)
    objects0 = len(gc.get_objects())
    rss0 = proc.memory_info().rss

    _run(case, mod, state, iterations)

    gc.collect()
    rss1 = proc.memory_info().rss
    objects1 = len(gc.get_objects())
    refs1 = _probes(state)
    assert refs1 == refs0, f"{case.id}: reference counts of the inputs changed"
    assert objects1 - objects0 <= OBJECTS_TOLERANCE, (
        f"{case.id}: {objects1 - objects0} more objects tracked by the GC"
    )
    assert SANITIZED or rss1 - rss0 <= RSS_TOLERANCE, (
        f"{case.id}: RSS grew by {(rss1 - rss0) / 2**20:.2f} MiB over "
        f"{iterations} iterations"
    )

    traced = max(iterations // 20, 500)
    tracemalloc.start()
    try:
        _run(case, mod, state, 200)
        gc.collect()
        t0 = tracemalloc.get_traced_memory()[0]
        _run(case, mod, state, traced, start=200)
        gc.collect()
        t1 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert t1 - t0 <= TRACED_TOLERANCE, (
        f"{case.id}: tracemalloc saw {t1 - t0} more bytes after {traced} iterations"
    )
