"""Argument checks and error messages, shared by every implementation.

The public modules, the compiled bindings (``fastclip._<family>``) and the
NumPy reference (``fastclip.reference.<family>``) validate their arguments
with these functions, so both implementations raise the same exception type
with the same message for the same bad input, and each rule lives in one
place. One module per thing checked: ``arrays`` (gradient/parameter arrays
and lists of them), ``scalars`` (numbers, flags, choices), ``optim``,
``nn``, ``adaptive`` and ``schedules`` (the arguments of each kernel family).
This package imports nothing from fastclip besides itself.
"""
