"""Memory checks for in-place calls: arrays that share memory, views that overlap
themselves.

An in-place kernel must write every element once. Two arrays of one list that
share an element would be modified twice (and a norm over the list would count
the element twice), and so would a view whose elements alias one another (a
0-stride or broadcast view made writeable). Both are rejected before anything
is written.

The pairwise check runs in O(n log n) plus the candidate pairs it has to decide
exactly: arrays are grouped by overlapping memory extents; within a group every
array is a set of equally long "inner" byte runs placed at multiples of one
common period P (the gcd of the strides of the group's outer dimensions), so
two arrays can share a byte only if their inner runs overlap modulo P. Only
such pairs reach ``numpy.shares_memory``. Column views of one matrix, for
example, occupy distinct positions modulo the row stride, and none is compared.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence

import numpy as np

# The exact test of one pair; a module attribute so that tests can count the calls.
_exact: Callable[[np.ndarray, np.ndarray], bool] = np.shares_memory

# Groups up to this size are compared pair by pair (cheaper than the projection).
_SMALL_GROUP = 8


def self_overlap_msg(lab: str) -> str:
    return (
        f"{lab} overlaps itself (several of its elements share memory, as in a 0-stride "
        "or broadcast view); an in-place call would modify the same memory more than "
        "once; pass a copy (numpy.ascontiguousarray) instead"
    )


def extent(a: np.ndarray) -> tuple[int, int]:
    """The byte range ``[lo, hi)`` from the lowest to past the highest element."""
    lo = hi = a.__array_interface__["data"][0]
    if a.size == 0:
        return lo, lo
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + a.itemsize


def _inner_and_outer(a: np.ndarray) -> tuple[int, list[int]]:
    """``(L, outer)``: every element of ``a`` lies in a run of L bytes starting at
    ``lo + sum(k_i * outer_i)`` (lo from :func:`extent`, k_i >= 0 integers)."""
    dims = sorted((abs(s), n) for n, s in zip(a.shape, a.strides) if n > 1)
    inner = a.itemsize
    outer = []
    for s, n in dims:
        if not outer and s <= inner:
            inner += (n - 1) * s  # still one run: the dimension stays within it
        else:
            outer.append(s)
    return inner, outer


def has_internal_overlap(a: np.ndarray) -> bool:
    """Whether two distinct elements of ``a`` share a byte (exact)."""
    if a.size <= 1 or a.flags.c_contiguous or a.flags.f_contiguous:
        return False
    # Sufficient for no overlap (every slice, transpose or reshape of an array
    # passes): with strides sorted, each one steps over everything spanned by
    # the smaller dimensions.
    dims = sorted((abs(s), n) for n, s in zip(a.shape, a.strides) if n > 1)
    span = a.itemsize
    for s, n in dims:
        if s < span:
            break
        span += (n - 1) * s
    else:
        return False
    # Exact: two distinct index tuples first differ in some dimension k; the
    # elements with index 0 there and those with index >= 1 there (the
    # dimensions before k fixed at 0, by translation) are then compared.
    b = a
    while b.ndim > 0:
        if b.shape[0] > 1 and np.shares_memory(b[:1], b[1:]):
            return True
        if b.shape[0] == 0:
            return False
        b = b[0]
    return False


def _pair_order(
    arrays: Sequence[np.ndarray], keys: Sequence[tuple]
) -> tuple[list[int], list[tuple[int, int]]]:
    """Non-empty arrays sorted by ``keys`` (extent first) and their extents."""
    ext = [extent(a) for a in arrays]
    order = sorted((i for i in range(len(arrays)) if ext[i][1] > ext[i][0]), key=lambda i: keys[i])
    return order, ext


def _groups(order: list[int], ext: list[tuple[int, int]]) -> list[list[int]]:
    """Maximal runs of ``order`` whose extents overlap in a chain."""
    groups: list[list[int]] = []
    cur: list[int] = []
    top = 0
    for i in order:
        lo, hi = ext[i]
        if cur and lo < top:
            cur.append(i)
            top = max(top, hi)
        else:
            if len(cur) > 1:
                groups.append(cur)
            cur = [i]
            top = hi
    if len(cur) > 1:
        groups.append(cur)
    return groups


def _candidates(arrays: Sequence[np.ndarray], group: list[int]):
    """Pairs (positions in ``group``) of arrays that may share a byte, judged by
    their inner runs modulo the group's common period."""
    m = len(group)
    if m <= _SMALL_GROUP:
        for x in range(m):
            for y in range(x + 1, m):
                yield x, y
        return
    shapes = [_inner_and_outer(arrays[i]) for i in group]
    period = 0
    for _, outer in shapes:
        for s in outer:
            period = math.gcd(period, s)
    if period == 0:
        # every array is one dense run: overlapping extents share bytes
        for x in range(m - 1):
            yield x, x + 1
        return
    pieces = []  # (start, end, position) modulo the period
    for x, (i, (inner, _)) in enumerate(zip(group, shapes)):
        if inner >= period:
            pieces.append((0, period, x))
            continue
        start = extent(arrays[i])[0] % period
        end = start + inner
        if end <= period:
            pieces.append((start, end, x))
        else:
            pieces.append((start, period, x))
            pieces.append((0, end - period, x))
    pieces.sort()
    active: list[tuple[int, int]] = []  # heap of (end, position)
    seen = set()
    for start, end, x in pieces:
        while active and active[0][0] <= start:
            heapq.heappop(active)
        for _, y in active:
            pair = (x, y) if x < y else (y, x)
            if x != y and pair not in seen:
                seen.add(pair)
                yield pair
        heapq.heappush(active, (end, x))


def first_shared_pair(
    arrays: Sequence[np.ndarray], sides: Sequence[int] | None = None
) -> tuple[int, int] | None:
    """The first pair ``(i, j)`` (indices into ``arrays``) of arrays that share an
    element, or None. With ``sides``, only pairs from different sides count.

    "First" is in the order of memory extents: the pair whose array with the lower
    extent comes first, then the other array of the pair earliest in that order
    (ties: lower end, then the side, then the index).
    """
    keys = [
        (*extent(a), 0 if sides is None else sides[i], i) for i, a in enumerate(arrays)
    ]
    order, ext = _pair_order(arrays, keys)
    for group in _groups(order, ext):
        best: tuple[int, int] | None = None
        for x, y in _candidates(arrays, group):
            if best is not None and (x, y) >= best:
                continue
            i, j = group[x], group[y]
            if sides is not None and sides[i] == sides[j]:
                continue
            if ext[j][0] >= ext[i][1]:
                continue  # disjoint extents
            if _exact(arrays[i], arrays[j]):
                best = (x, y)
                if y == x + 1 and x == 0:
                    break
        if best is not None:
            return group[best[0]], group[best[1]]
    return None
