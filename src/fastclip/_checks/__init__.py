"""Argument checks shared by the public modules, the compiled bindings and the reference."""
