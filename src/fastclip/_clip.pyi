"""Type stubs for fastclip._clip, the compiled clipping kernels (csrc/clip.c).

Same functions, signatures and exceptions as fastclip.reference.clip; the
docstrings are in fastclip.clip. The ``*_checked`` functions take arguments
validated by fastclip._checks (the entry points of fastclip.distributed).
"""

from collections.abc import Iterable
from typing import SupportsFloat, Union

import numpy as np
import numpy.typing as npt

_Arrays = Union[np.ndarray, Iterable[np.ndarray]]
_Real = Union[SupportsFloat, np.ndarray]
_NormType = Union[float, int, str, np.floating, np.integer]

def array_norms(grads: _Arrays, norm_type: _NormType = 2.0) -> npt.NDArray[np.float64]: ...
def get_total_norm(
    grads: _Arrays, norm_type: _NormType = 2.0, error_if_nonfinite: bool = False
) -> float: ...
def clip_grad_norm_(
    grads: _Arrays,
    max_norm: _Real,
    norm_type: _NormType = 2.0,
    error_if_nonfinite: bool = False,
) -> float: ...
def clip_grads_with_norm_(grads: _Arrays, max_norm: _Real, total_norm: _Real) -> None: ...
def clip_grad_value_(grads: _Arrays, clip_value: _Real) -> None: ...
def clip_by_value(x: _Arrays, lo: _Real, hi: _Real) -> np.ndarray | list[np.ndarray]: ...
def clip_by_norm(x: _Arrays, clip_norm: _Real) -> np.ndarray | list[np.ndarray]: ...
def clip_by_global_norm(
    xs: _Arrays, clip_norm: _Real, use_norm: _Real | None = None
) -> tuple[list[np.ndarray], float]: ...
def zero_nans_(grads: _Arrays) -> int: ...
def array_norms_checked(arrays: list[np.ndarray], p: float) -> npt.NDArray[np.float64]: ...
def clip_grads_with_norm_checked_(
    arrays: list[np.ndarray], max_norm: float, total_norm: float
) -> None: ...
def clip_by_global_norm_checked(
    arrays: list[np.ndarray], clip_norm: float, global_norm: float
) -> list[np.ndarray]: ...
