"""Type stubs for fastclip._privacy, the per-example gradient kernels (csrc/privacy.c).

Same functions, signatures and results as fastclip.reference.privacy; the public
functions are in fastclip.privacy.
"""

from typing import Literal, overload

import numpy as np
import numpy.typing as npt

def row_sqnorms(arrays: list[np.ndarray]) -> npt.NDArray[np.float64]: ...
@overload
def row_weighted_sum(
    arrays: list[np.ndarray], weights: npt.ArrayLike, inplace: bool, sums: Literal[True] = ...
) -> list[np.ndarray]: ...
@overload
def row_weighted_sum(
    arrays: list[np.ndarray], weights: npt.ArrayLike, inplace: bool, sums: Literal[False]
) -> None: ...
def gaussian_(
    out: np.ndarray, add: np.ndarray | None, seed: int, counter: int, std: float, scale: float
) -> None: ...
def gaussian_arrays_(
    outs: list[np.ndarray],
    adds: list[np.ndarray | None] | None,
    seed: int,
    counter: int,
    std: float,
    scale: float,
    sqnorms: npt.NDArray[np.float64] | None = None,
) -> None: ...
