// Causal attention of one query head over a contiguous run of cached keys/values.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kv/kv_layout.h"

namespace kvscope::ops {

// out[head_dim] = softmax(scale * q . K[j]) . V[j] over slots j in [lo, hi).
// K, V: [n_slots, head_dim] in storage type `dt`; scores: scratch of at least hi floats.
void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* scores, float* out);

// n heads (1 to kMaxHeadGroup) over the same slots [lo, hi) (heads of one token), as n
// attend_head calls but reading the heads' K and V streams side by side: head x has query
// q[x], cache rows K[x], V[x] and output out[x]. Heads of one KV group pass the same K and V:
// the second head's reads of each burst then hit L1. scores: scratch of at least n * hi floats.
constexpr int kMaxHeadGroup = 8;
void attend_heads(int n, const float* const* q, const void* const* K, const void* const* V, DType dt, int head_dim,
                  int lo, int hi, float scale, float* scores, float* const* out);

// The same over rows in any KV codec (kv/kv_codec.h), K and V codecs chosen separately:
// integer rows are decoded inside the kernel (attention_codec.cpp). Rows are
// kv_row_stride(codec, head_dim) bytes apart.
void attend_heads_codec(int n, const float* const* q, const void* const* K, const void* const* V, const KvCodec& kc,
                        const KvCodec& vc, int head_dim, int lo, int hi, float scale, float* scores,
                        float* const* out);

// The same over each head's slots given as runs (KvCache::runs): sinks, codes, the fp16 window,
// per-channel key blocks, one softmax over all of them. kruns[x] / vruns[x] cover [lo, hi).
void attend_heads_runs(int n, const float* const* q, const KvRuns* const* kruns, const KvRuns* const* vruns,
                       int head_dim, int lo, int hi, float scale, float* scores, float* const* out);

// attend_heads over a paged cache's blocks, K and V in the float type dt: head x's slot j is
// row j % block_tokens of the block at kblocks[x][j / block_tokens] (vblocks for V), rows
// head_dim values apart; the tables cover slots [0, hi).
void attend_heads_blocks(int n, const float* const* q, const uint8_t* const* const* kblocks,
                         const uint8_t* const* const* vblocks, int block_tokens, DType dt, int head_dim, int lo, int hi,
                         float scale, float* scores, float* const* out);

// s[lo, hi) <- exp(s - max s); returns 1 / their sum.
float softmax_inplace(float* s, int lo, int hi);

namespace ref {
// Decodes every row with kv_decode_row, then attends in double precision.
void attend_head_codec(const float* q, const void* K, const void* V, const KvCodec& kc, const KvCodec& vc,
                       int head_dim, int lo, int hi, float scale, float* out);
void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* out);
// Decodes every run's rows (kv_decode_row, kv_decode_block_row), then attends in double.
void attend_head_runs(const float* q, const KvRuns& K, const KvRuns& V, int head_dim, int lo, int hi, float scale,
                      float* out);
}  // namespace ref

}  // namespace kvscope::ops
