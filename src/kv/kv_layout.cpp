#include "kv/kv_layout.h"

#include <algorithm>

#include "kv/kv_codec.h"

namespace kvscope {

namespace {

bool is_int(const KvCodec& c) { return c.axis != KvAxis::None; }

// Bytes a windowed integer side adds per (layer, sequence, KV head) beyond its n_slots rows.
int64_t side_extra(const KvShape& s, const KvCodec& c) {
    if (!s.format.windowed() || !is_int(c)) return 0;
    int64_t b = (int64_t(s.format.sinks) + kv_ring_rows(s)) * s.head_dim * 2;  // fp16 rows
    if (c.axis == KvAxis::Channel) b += kv_channel_blocks(c, s.n_slots) * kv_channel_meta_bytes(c, s.head_dim);
    return b;
}

}  // namespace

double kv_row_bytes(const KvCodec& c, int head_dim) {
    if (c.axis != KvAxis::Channel) return double(kv_row_stride(c, head_dim));  // what the cache allocates
    const int per = c.zero_point ? 2 * KvCodec::kScaleBytes : KvCodec::kScaleBytes;
    return head_dim * dtype_size(c.dtype) + double(head_dim) * per / double(c.group > 0 ? c.group : 1);
}

KvFormat::KvFormat(DType d) {
    k.dtype = d;
    if (d == DType::I8 || d == DType::I4 || d == DType::I2) {
        k.axis = KvAxis::Token;
        k.group = d == DType::I8 ? 0 : 32;
        k.zero_point = d != DType::I8;
    }
    v = k;
}

int kv_ring_rows(const KvShape& s) {
    const KvFormat& f = s.format;
    if (!f.windowed()) return 0;
    const int chunk = s.max_chunk > 0 ? s.max_chunk : s.n_slots;
    int g = 0;
    for (const KvCodec* c : {&f.k, &f.v})
        if (c->axis == KvAxis::Channel) g = std::max(g, c->group);
    return std::min(s.n_slots, f.residual + g + chunk);
}

double kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, const KvFormat& f) {
    return double(n_layer) * n_kv_head * (kv_row_bytes(f.k, head_dim) + kv_row_bytes(f.v, head_dim));
}

int64_t kv_cache_bytes(const KvShape& s) {
    const int64_t per_row = kv_row_stride(s.format.k, s.head_dim) + kv_row_stride(s.format.v, s.head_dim);
    if (s.paged()) return int64_t(s.n_layer) * s.n_blocks * s.block_tokens * s.n_kv_head * per_row;
    const int64_t rows = int64_t(s.n_layer) * s.n_seq * s.n_kv_head;
    return rows * (per_row * s.n_slots + side_extra(s, s.format.k) + side_extra(s, s.format.v) +
                   int64_t(s.virtual_sinks) * s.head_dim * 4);
}

}  // namespace kvscope
