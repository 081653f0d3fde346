"""Type stubs of the compiled layer kernels (fastclip._layers); see fastclip.reference.layers."""

import numpy as np

__all__ = [
    "act_backward",
    "act_forward",
    "bn_backward",
    "bn_forward",
    "dropout",
]

def bn_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    batch_stats: bool,
    eps: float,
    factor: float,
    invstd: np.ndarray,
    xhat: np.ndarray,
    out: np.ndarray,
) -> None: ...
def bn_backward(
    dy: np.ndarray,
    xhat: np.ndarray,
    weight: np.ndarray | None,
    invstd: np.ndarray,
    batch_stats: bool,
    dx: np.ndarray | None,
    dweight: np.ndarray | None,
    dbias: np.ndarray | None,
    sqnorms: np.ndarray | None,
) -> None: ...
def dropout(x: np.ndarray, mask: np.ndarray, scale: float, out: np.ndarray) -> None: ...
def act_forward(x: np.ndarray, act: int, slope: float, out: np.ndarray) -> None: ...
def act_backward(
    dy: np.ndarray,
    x: np.ndarray,
    out: np.ndarray,
    act: int,
    slope: float,
    dx: np.ndarray,
    dslope: np.ndarray | None,
    sqnorms: np.ndarray | None,
) -> None: ...
