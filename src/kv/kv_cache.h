// The KV cache bytes and their layout. Nothing else knows where a key lives: the forward pass
// calls write() for each new token and reads a head's keys/values through k()/v().
//
// Layout: [n_layer][n_seq][n_kv_head][n_slots][head_dim] for K, the same for V, so one
// head's history is one contiguous stream (what attention reads at each decode step).
// Storage type fp32, fp16 or bf16; reads convert to fp32 in the attention kernel.
#pragma once

#include <cstdint>
#include <memory>

#include "core/aligned.h"
#include "kv/kv_layout.h"

namespace kvscope {

class KvCache {
public:
    explicit KvCache(const KvShape& shape);  // allocates once; never grows

    // k, v: [n_kv_head * head_dim] fp32, stored (and rounded) in the cache's dtype.
    void write(int il, int seq, int slot, const float* k, const float* v);
    // Start of head h's [n_slots, head_dim] block, in the cache's storage type.
    const void* k(int il, int seq, int h) const { return base_k_ + offset(il, seq, h, 0); }
    const void* v(int il, int seq, int h) const { return base_v_ + offset(il, seq, h, 0); }

    const KvShape& shape() const { return s_; }
    DType dtype() const { return s_.dtype; }
    int64_t bytes_allocated() const { return bytes_; }

private:
    int64_t offset(int il, int seq, int h, int slot) const {
        int64_t idx = ((int64_t(il) * s_.n_seq + seq) * s_.n_kv_head + h) * s_.n_slots + slot;
        return idx * s_.head_dim * elem_;
    }

    KvShape s_;
    int64_t elem_ = 4;
    int64_t bytes_ = 0;
    AlignedArray<uint8_t> mem_;
    uint8_t* base_k_ = nullptr;
    uint8_t* base_v_ = nullptr;
};

}  // namespace kvscope
