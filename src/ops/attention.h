// Causal attention of one query head over a contiguous run of cached keys/values.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kvscope::ops {

// out[head_dim] = softmax(scale * q . K[j]) . V[j] over slots j in [lo, hi).
// K, V: [n_slots, head_dim] in storage type `dt`; scores: scratch of at least hi floats.
void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* scores, float* out);

// n heads (1 to kMaxHeadGroup) over the same slots [lo, hi) (heads of one token), as n
// attend_head calls but reading the heads' K and V streams side by side: head x has query
// q[x], cache rows K[x], V[x] and output out[x]. scores: scratch of at least n * hi floats.
constexpr int kMaxHeadGroup = 6;
void attend_heads(int n, const float* const* q, const void* const* K, const void* const* V, DType dt, int head_dim,
                  int lo, int hi, float scale, float* scores, float* const* out);

// As attend_heads over one part [lo, hi) of the keys (lo == hi allowed), unnormalized: out[x] =
// sum over j of exp(s_j - m[x]) V[j] with m[x] the part's maximum score and l[x] = sum of
// exp(s_j - m[x]) (m = -inf, l = 0 and out = 0 for no keys). merge_parts combines the parts, so
// that a head's keys can be split over threads.
void attend_heads_part(int n, const float* const* q, const void* const* K, const void* const* V, DType dt,
                       int head_dim, int lo, int hi, float scale, float* scores, float* const* out, float* m,
                       float* l);

// out[head_dim] = one head's attention from `parts` (1 to kMaxParts) parts of its keys: part p's
// unnormalized sums at outs + p * out_stride, its maximum and sum at m[p * ml_stride] and
// l[p * ml_stride].
constexpr int kMaxParts = 8;
void merge_parts(int parts, const float* outs, int64_t out_stride, const float* m, const float* l, int64_t ml_stride,
                 int head_dim, float* out);

namespace ref {
void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* out);
}  // namespace ref

}  // namespace kvscope::ops
