/*
 * fastclip: what every kernel family includes. The shared machinery lives in
 * one room each:
 *   fc_array.h    the array descriptor, dtypes and error codes
 *   fc_threads.h  the thread count and the one parallel primitive
 *   fc_iter.h     strided iteration (a view as runs of equally strided elements)
 *   fc_blocks.h   fixed blocks of FC_BLOCK elements across a list of arrays
 *   fc_overlap.h  whether the memory extents of arrays overlap
 *   fc_cpu.h      CPU-feature detection and the SIMD clones
 */
#ifndef FASTCLIP_COMMON_H
#define FASTCLIP_COMMON_H

#include "fc_array.h"
#include "fc_blocks.h"
#include "fc_cpu.h"
#include "fc_iter.h"
#include "fc_overlap.h"
#include "fc_threads.h"

#endif /* FASTCLIP_COMMON_H */
