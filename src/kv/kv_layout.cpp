#include "kv/kv_layout.h"

#include "kv/kv_codec.h"

namespace kvscope {

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

int64_t kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, const KvFormat& f) {
    return int64_t(n_layer) * n_kv_head * (kv_row_stride(f.k, head_dim) + kv_row_stride(f.v, head_dim));
}

int64_t kv_cache_bytes(const KvShape& s) {
    return kv_bytes_per_token(s.n_layer, s.n_kv_head, s.head_dim, s.format) * s.n_seq * s.n_slots;
}

}  // namespace kvscope
