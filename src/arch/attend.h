// The pieces every family's forward pass shares around the KV cache: causal attention of a
// ubatch's tokens over their sequences' cached keys, and the read floor's walk over the same
// bytes. With grouped-query attention the query heads of one KV head are processed together,
// so each KV head's stream is read from memory once per group, not once per query head.
#pragma once

#include <cstdint>

#include "arch/forward.h"
#include "ops/matmul.h"

namespace kvscope {

// How the query heads of one token are split into attention tasks (per thread, dynamic):
// each task covers kv_per_task KV heads and their query heads (at most ops::kMaxHeadGroup).
struct AttnPlan {
    int n_head = 0, n_kv_head = 0, head_dim = 0;
    int group = 1;        // query heads per KV head
    int kv_per_task = 1;  // KV heads per task: 2 for MHA (two streams side by side), else 1
    int q_per_call = 1;   // query heads per attend_heads call (a group larger than the kernel's maximum is split)
    int n_tasks() const { return (n_kv_head + kv_per_task - 1) / kv_per_task; }
    // Floats of score scratch per thread for max_slots keys.
    int64_t scores_per_thread(int max_slots) const;
};
AttnPlan attn_plan(int n_head, int n_kv_head, int head_dim);

// out[t, h*hd .. ] = softmax(q_h . K / sqrt(hd)) . V over slots [pad(seq), slot] of token t's
// sequence, for every query head h. q: token t's heads at q + t*q_stride + h*hd; K/V of KV
// head h / group from cache layer kl. scores: n_threads * scores_per_thread(max_slots) floats.
void attend_cached(const AttnPlan& plan, const Ubatch& ub, const KvCache& cache, const KvSeqs& seqs, int kl,
                   const float* q, int64_t q_stride, float* out, int64_t out_stride, float* scores, int max_slots);

// Read floor pieces (ops::read_words): a weight matrix split over the threads as matmul
// splits it, and the K and V rows [0, keys) of sequence `seq` in cache layer kl, KV heads
// split as attend_cached splits them.
uint32_t read_weight(const WeightView& w);
uint32_t read_kv(const AttnPlan& plan, const KvCache& cache, int kl, int seq, int keys);

}  // namespace kvscope
