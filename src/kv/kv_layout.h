// The KV cache's shape and the single formula for its size. The memory experiment, `info`,
// the planner and the allocator all call kv_cache_bytes(), so theory and allocation agree
// by construction (and a test checks the allocator against the textbook formula).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kvscope {

// How one K or V row (one token of one KV head: head_dim values) is stored. Float types
// store values as they are; integer types store codes with scales (and zero points when
// asymmetric), one per `group` channels of a token (axis Token) or one per channel for a
// group of tokens (axis Channel, KIVI's keys). Scales and zero points are fp16.
enum class KvAxis : uint8_t { None, Token, Channel };
struct KvCodec {
    DType dtype = DType::F32;
    KvAxis axis = KvAxis::None;
    int group = 0;  // Token: channels per scale (0: the whole row); Channel: tokens per scale
    bool zero_point = false;
    static constexpr int kScaleBytes = 2;
};
// Bytes of one row per token, scales included (a Channel codec's scales are shared by its
// group of tokens, so they count 1/group per token).
double kv_row_bytes(const KvCodec& c, int head_dim);

struct KvShape {
    int n_layer = 0;    // layers with their own storage (1 for the no-cache scratch)
    int n_seq = 0;      // sequences in the batch
    int n_kv_head = 0;
    int n_slots = 0;    // positions per sequence the cache can hold
    int head_dim = 0;
    DType dtype = DType::F32;
};

// 2 (K and V) x n_layer x n_seq x n_slots x n_kv_head x head_dim x bytes per element.
int64_t kv_cache_bytes(const KvShape& s);
// Bytes of K and V for one token of one sequence across all layers.
int64_t kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, DType dtype);

}  // namespace kvscope
