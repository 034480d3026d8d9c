// Causal attention of one query head over a contiguous run of cached keys/values.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kvscope::ops {

// out[head_dim] = softmax(scale * q . K[j]) . V[j] over slots j in [lo, hi).
// K, V: [n_slots, head_dim] in storage type `dt`; scores: scratch of at least hi floats.
void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* scores, float* out);

// Two heads over the same slots [lo, hi) (two heads of one token), as two attend_head calls
// but reading both heads' K and V streams side by side. scores: scratch of at least 2 * hi.
void attend_head_pair(const float* q0, const float* q1, const void* K0, const void* V0, const void* K1, const void* V1,
                      DType dt, int head_dim, int lo, int hi, float scale, float* scores, float* out0, float* out1);

namespace ref {
void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* out);
}  // namespace ref

}  // namespace kvscope::ops
