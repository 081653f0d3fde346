"""Type stubs of the compiled MLP kernels (fastclip._nn); see fastclip.reference.nn."""

from typing import Any

import numpy as np

ACTIVATIONS: dict[str, int]

def gemm_library() -> str:
    """The BLAS library the GEMMs call (for show_config)."""

def check_xent_args(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, bool]: ...
def check_loss_pred_target(
    pred: Any, target: Any, weighted: bool = ...
) -> tuple[np.ndarray, np.ndarray]: ...
def dense_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    slope: np.ndarray | None,
    act: int,
    negative_slope: float,
    pre: np.ndarray | None,
    out: np.ndarray,
) -> None: ...
def dense_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    slope: np.ndarray | None,
    act: int,
    negative_slope: float,
    pre: np.ndarray | None,
    out: np.ndarray,
    dz: np.ndarray | None,
    dx: np.ndarray | None,
    dweight: np.ndarray | None,
    dbias: np.ndarray,
    dslope: np.ndarray | None,
    sqnorms: np.ndarray,
) -> None: ...
def softmax_cross_entropy(
    logits: Any, labels: Any, sample_weight: Any = None
) -> tuple[float, np.ndarray]: ...
def mse(pred: Any, target: Any, sample_weight: Any = None) -> tuple[float, np.ndarray]: ...
