"""Type stubs of the compiled adaptive-clipping kernels (fastclip._adaptive)."""

from collections.abc import Iterable

import numpy as np

def unitwise_norms(
    x: np.ndarray | Iterable[np.ndarray],
) -> np.ndarray | list[np.ndarray]: ...
def adaptive_grad_clip_(
    grads: np.ndarray | Iterable[np.ndarray],
    params: np.ndarray | Iterable[np.ndarray],
    clipping: float = ...,
    eps: float = ...,
) -> tuple[np.ndarray, np.ndarray, int]: ...
