"""Keep fastclip's kernels usable in a child created by ``fork()``.

The kernels' helper threads (one pool, csrc/fc_threads.c) exist only in the
process that started them. After a fork (``os.fork``, ``multiprocessing`` with
the ``"fork"`` start method, ...) the child therefore runs every fastclip
kernel on its calling thread; results are unchanged (reductions never depend on
the thread count), only the speed-up of threads is lost in the child.
``"spawn"`` and ``"forkserver"`` children start fresh and keep their threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_set_serial_only: Callable[[bool], None] | None
try:
    from fastclip._common import set_serial_only as _set_serial_only
except ImportError:  # extension not built: the reference runs, nothing to do
    _set_serial_only = None


def _after_fork_in_child() -> None:
    if _set_serial_only is not None:
        _set_serial_only(True)


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)
