// The KV cache's shape and the single formula for its size. The memory experiment, `info`,
// the planner and the allocator all call kv_cache_bytes(), so theory and allocation agree
// by construction (and a test checks the allocator against the textbook formula).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kvscope {

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
