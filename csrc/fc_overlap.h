/*
 * fastclip: overlap detection. The memory extent of a view is the byte range
 * from its lowest to one past its highest element; views whose extents are
 * disjoint share no element. The Python layer decides exactly (which pairs
 * share an element) only when this says the extents overlap.
 */
#ifndef FASTCLIP_OVERLAP_H
#define FASTCLIP_OVERLAP_H

#include "fc_array.h"

#ifdef __cplusplus
extern "C" {
#endif

FC_API_BEGIN
/* 1 when the memory extents of two of the arrays overlap (necessary for
 * them to share an element), 0 when none do, -1 when out of memory.
 * O(n) when the arrays come in address order, O(n log n) otherwise; the
 * extents of the last list found disjoint are remembered per thread, so a
 * training loop that passes the same arrays every step pays one comparison. */
int fc_extents_overlap(const fc_array *arrs, int64_t n);
FC_API_END

#ifdef __cplusplus
}
#endif
#endif /* FASTCLIP_OVERLAP_H */
