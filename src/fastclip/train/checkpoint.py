"""The last good training state, for rollbacks: :class:`Checkpoint`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclip._checks.train import value_arrays

__all__ = ["Checkpoint"]


class Checkpoint:
    """Parameters, buffers, optimiser state and clipper state, saved and restored in place.

    The parameter values are copied into preallocated arrays (the parameter
    arrays stay the same objects, so the optimiser holding them keeps
    working); the optimiser and the clipper are saved through their
    ``state_dict``/``load_state_dict`` when they have them.

    Parameters
    ----------
    params : sequence of ndarray
        The parameter arrays, restored in place.
    optimizer : object
    clipper : object, optional
    buffers : sequence of ndarray, optional
        Arrays that are state without being parameters (batch normalisation's
        running statistics), restored in place with the parameters.
    """

    def __init__(self, params: Sequence[Any], optimizer: Any, clipper: Any = None,
                 buffers: Sequence[np.ndarray] = ()) -> None:
        self.params = value_arrays(params) + list(buffers)
        self.optimizer = optimizer
        self.clipper = clipper if callable(getattr(clipper, "state_dict", None)) else None
        self.saved = [np.array(p, copy=True) for p in self.params]
        self.opt_state: Any = None
        self.clip_state: Any = None

    def save(self) -> None:
        """Copy the current state into the checkpoint."""
        for dst, src in zip(self.saved, self.params):
            np.copyto(dst, src)
        opt = self.optimizer
        self.opt_state = opt.state_dict() if callable(getattr(opt, "state_dict", None)) else None
        self.clip_state = None if self.clipper is None else self.clipper.state_dict()

    def restore(self) -> None:
        """Put the saved state back (parameters in place)."""
        for dst, src in zip(self.params, self.saved):
            np.copyto(dst, src)
        if self.opt_state is not None:
            self.optimizer.load_state_dict(self.opt_state)
        if self.clip_state is not None and self.clipper is not None:
            self.clipper.load_state_dict(self.clip_state)
