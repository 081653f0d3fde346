"""Argument checks shared by the public modules, the compiled bindings and the reference.

Each module here checks one kind of thing; import the one you need, e.g.
``from fastclip._checks import memory``.
"""
