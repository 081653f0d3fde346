"""Type stub of the compiled fused optimiser step (fastclip._optim)."""

from collections.abc import Sequence
from typing import Any

import numpy as np

KINDS: tuple[str, ...]

def state_names(
    kind: str, *, momentum: float = ..., amsgrad: bool = ..., centered: bool = ...
) -> tuple[str, ...]: ...
class StepPlan:
    def __init__(
        self,
        kind: str,
        params: Sequence[np.ndarray],
        states: list[tuple[np.ndarray, ...]],
        *,
        weight_decay: float = ...,
        momentum: float = ...,
        dampening: float = ...,
        nesterov: bool = ...,
        beta1: float = ...,
        beta2: float = ...,
        eps: float = ...,
        amsgrad: bool = ...,
        decoupled: bool = ...,
        alpha: float = ...,
        centered: bool = ...,
        clip_norm: float | None = ...,
        clip_value: float | None = ...,
    ) -> None: ...
    def step(
        self, grads: Sequence[np.ndarray], *, lr: float, step: int, sqnorms: Any = ...
    ) -> tuple[float, int]: ...

def fused_step(
    kind: str,
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    states: list[tuple[np.ndarray, ...]],
    *,
    lr: float,
    step: int,
    weight_decay: float = ...,
    momentum: float = ...,
    dampening: float = ...,
    nesterov: bool = ...,
    beta1: float = ...,
    beta2: float = ...,
    eps: float = ...,
    amsgrad: bool = ...,
    decoupled: bool = ...,
    alpha: float = ...,
    centered: bool = ...,
    clip_norm: float | None = ...,
    clip_value: float | None = ...,
    sqnorms: Any = ...,
) -> tuple[float, int]: ...
