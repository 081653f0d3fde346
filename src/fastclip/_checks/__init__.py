"""Argument checks shared by the public modules, the compiled bindings and the reference.

One home for every rule about what an argument may be and how a bad one is named,
so that the C path and the NumPy reference raise the same exception with the same
message. Import the module named for what it checks.
"""
