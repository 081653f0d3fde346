/* fastclip: batch norm, dropout and elementwise activations (see layers.h). */

/* As in nn.c: the activation selects vectorise only when comparisons may be
 * evaluated unconditionally; -fno-trapping-math changes no result. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "layers.h"

#include <math.h>
#include <stdlib.h>

enum { FC_L_IDENTITY = 0, FC_L_RELU = 1, FC_L_LEAKY = 2, FC_L_PRELU = 3, FC_L_SIGMOID = 4,
       FC_L_TANH = 5 };

#define FC_T float
#define FC_SUF f32
#define FC_EXP expf
#define FC_TANH tanhf
#include "layers_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_EXP
#undef FC_TANH

#define FC_T double
#define FC_SUF f64
#define FC_EXP exp
#define FC_TANH tanh
#include "layers_impl.h"
#undef FC_T
#undef FC_SUF
#undef FC_EXP
#undef FC_TANH
