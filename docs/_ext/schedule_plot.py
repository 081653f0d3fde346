"""Sphinx directive ``schedule-plot``: a schedule's curve, drawn at build time.

::

    .. schedule-plot:: S.warmup_cosine(peak_value=0.1, warmup_steps=500, decay_steps=10_000)
       :steps: 12000

The argument is a Python expression evaluated with ``S`` bound to
:mod:`fastclip.schedules` (and ``np`` to NumPy, ``fastclip`` to fastclip); it must give a
schedule or a callable ``step -> float``. Instead of the argument, the directive's
content may be Python code that defines ``sched``::

    .. schedule-plot::
       :steps: 60
       :xlabel: epoch

       plateau = S.reduce_on_plateau(0.1, patience=5)
       sched = lambda epoch: plateau.step(max(1.0 - epoch / 20, 0.5))

The directive shows the code, draws the curve over
``steps`` steps with :func:`fastclip.plot_schedule` into a PNG in the build directory
(never in the source tree) and shows the figure. A bad expression or a failing plot is
an error of the build.
"""

from __future__ import annotations

import hashlib
import os
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective


def _render(code: str, is_expr: bool, steps: int, xlabel: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a build process of its own: no display
    import matplotlib.pyplot as plt
    import numpy as np

    import fastclip
    from fastclip import schedules as S

    names = {"S": S, "np": np, "fastclip": fastclip}
    if is_expr:
        sched = eval(code, names)  # the documentation's own source
    else:
        exec(code, names)  # noqa: S102 (the documentation's own source)
        if "sched" not in names:
            raise NameError("the code must define sched")
        sched = names["sched"]
    fig, ax = plt.subplots(figsize=(6.0, 2.6), dpi=100)
    fastclip.plot_schedule(sched, steps, ax=ax, color="C0")
    ax.set_title("")
    ax.set_xlabel(xlabel)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class SchedulePlot(SphinxDirective):
    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec: ClassVar[dict] = {"steps": directives.positive_int, "xlabel": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        if bool(self.arguments) == bool(self.content):
            raise self.error("schedule-plot takes an expression or code defining sched, "
                             "not both and not neither")
        is_expr = bool(self.arguments)
        expr = self.arguments[0] if is_expr else "\n".join(self.content)
        steps = self.options.get("steps", 1000)
        key = hashlib.sha1(f"{expr}|{steps}|{self.options}".encode()).hexdigest()[:12]
        outdir = os.path.join(self.env.app.outdir, "_schedule_plots")
        os.makedirs(outdir, exist_ok=True)
        png = os.path.join(outdir, f"{key}.png")
        try:
            _render(expr, is_expr, steps, self.options.get("xlabel", "step"), png)
        except Exception as exc:  # the build must stop on a schedule that does not plot
            raise ExtensionError(f"schedule-plot {expr!r}: {type(exc).__name__}: {exc}") from exc
        # an image path relative to the page's source file; Sphinx copies it into _images/
        source_dir = os.path.dirname(self.env.doc2path(self.env.docname))
        uri = os.path.relpath(png, source_dir)
        code = nodes.literal_block(expr, expr, language="python")
        alt = f"the learning rate over {steps} steps"
        image = nodes.image(uri=uri, alt=alt)
        return [code, image]


def setup(app):
    app.add_directive("schedule-plot", SchedulePlot)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
