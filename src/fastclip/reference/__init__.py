"""Pure-NumPy reference implementations of every fastclip kernel.

``fastclip.reference.<family>`` has the same functions, with the same names,
signatures, validation and exceptions, as the compiled ``fastclip._<family>``.
It is the ground truth the C path is tested against, and what fastclip runs
when ``FASTCLIP_IMPLEMENTATION=python`` or when the extension is not built.
"""
