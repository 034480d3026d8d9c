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

// The storage of keys and of values, chosen separately (an implicit DType is both).
struct KvFormat {
    KvCodec k, v;
    KvFormat() = default;
    // K and V both in d: float types as they are, integer types in their default codec
    // (kv_codec.h: int8 symmetric per row, int4/int2 asymmetric in groups of 32).
    KvFormat(DType d);  // NOLINT(google-explicit-constructor)
    explicit KvFormat(const KvCodec& c) : k(c), v(c) {}
    KvFormat(const KvCodec& kc, const KvCodec& vc) : k(kc), v(vc) {}
    bool is_float(DType d) const { return k.axis == KvAxis::None && v.axis == KvAxis::None && k.dtype == d && v.dtype == d; }
};

struct KvShape {
    int n_layer = 0;    // layers with their own storage (1 for the no-cache scratch)
    int n_seq = 0;      // sequences in the batch
    int n_kv_head = 0;
    int n_slots = 0;    // positions per sequence the cache can hold
    int head_dim = 0;
    KvFormat format = DType::F32;
};

// n_layer x n_seq x n_slots x n_kv_head x (bytes of a K row + bytes of a V row), a row being
// head_dim values with their scales (kv_row_stride): for float storage 2 x n_layer x n_seq x
// n_slots x n_kv_head x head_dim x bytes per element.
int64_t kv_cache_bytes(const KvShape& s);
// Bytes of K and V for one token of one sequence across all layers.
int64_t kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, const KvFormat& f);

}  // namespace kvscope
