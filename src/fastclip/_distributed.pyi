import numpy as np
import numpy.typing as npt

def total_norm(norms: npt.ArrayLike, p: float) -> float: ...
