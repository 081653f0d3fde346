/* fastclip: fused MLP passes and losses (see nn.h). */
#include "nn.h"

#include <math.h>
#include <string.h>

#define FC_T float
#define FC_SUF f32
#include "nn_impl.h"
#undef FC_T
#undef FC_SUF

#define FC_T double
#define FC_SUF f64
#include "nn_impl.h"
#undef FC_T
#undef FC_SUF
