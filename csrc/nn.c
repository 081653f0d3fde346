/* fastclip: fused MLP passes and losses (see nn.h). */

/* The activation selects (z <= 0 ? 0 : g) only vectorise when the compiler may
 * evaluate comparisons unconditionally. -fno-trapping-math changes no result
 * (only whether FP exception flags may be raised; fastclip never reads them),
 * unlike -ffast-math. Clang's default already behaves this way. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "nn.h"

#include <math.h>
#include <string.h>

/* The passes around the GEMMs are memory-bound and short next to the GEMMs
 * (a few % of a training step); waking the pool's helpers between two
 * multithreaded BLAS calls makes them compete with the BLAS's spinning threads
 * for the cores, which costs more than it saves on a 2-core machine. So they
 * only use helpers for very large blocks. */
#define FC_NN_PAR(work) ((work) >= 16 * FC_PARALLEL_MIN && fc_use_parallel(work))

#define FC_T float
#define FC_SUF f32
#define FC_EXP expf
#define FC_TANH tanhf
#include "nn_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_EXP
#undef FC_TANH

#define FC_T double
#define FC_SUF f64
#define FC_EXP exp
#define FC_TANH tanh
#include "nn_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_EXP
#undef FC_TANH
