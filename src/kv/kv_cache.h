// The KV cache bytes and their layout. Nothing else knows where a key lives: the forward pass
// calls write() for each new token and reads a head's keys/values through k()/v().
//
// Layout: [n_layer][n_seq][n_kv_head][n_slots][row] for K, the same for V, so one head's
// history is one contiguous stream (what attention reads at each decode step). A row is one
// token's head_dim values in the K or V codec (kv/kv_codec.h): fp32, fp16, bf16, or integer
// codes with their scales; rows are encoded once, when written, and decoded inside the
// attention kernel.
#pragma once

#include <cstdint>
#include <memory>

#include "core/aligned.h"
#include "kv/kv_layout.h"

namespace kvscope {

class KvCache {
public:
    explicit KvCache(const KvShape& shape);  // allocates once; never grows

    // k, v: [n_kv_head * head_dim] fp32, encoded (and rounded) in the K and V codecs.
    void write(int il, int seq, int slot, const float* k, const float* v);
    // Start of head h's [n_slots] rows.
    const void* k(int il, int seq, int h) const { return base_k_ + row(il, seq, h, 0) * k_stride_; }
    const void* v(int il, int seq, int h) const { return base_v_ + row(il, seq, h, 0) * v_stride_; }

    const KvShape& shape() const { return s_; }
    const KvFormat& format() const { return s_.format; }
    // Bytes from one K (V) row to the next.
    int64_t k_stride() const { return k_stride_; }
    int64_t v_stride() const { return v_stride_; }
    int64_t bytes_allocated() const { return bytes_; }

private:
    int64_t row(int il, int seq, int h, int slot) const {
        return ((int64_t(il) * s_.n_seq + seq) * s_.n_kv_head + h) * s_.n_slots + slot;
    }

    KvShape s_;
    int64_t k_stride_ = 0, v_stride_ = 0;
    int64_t bytes_ = 0;
    AlignedArray<uint8_t> mem_;
    uint8_t* base_k_ = nullptr;
    uint8_t* base_v_ = nullptr;
};

}  // namespace kvscope
