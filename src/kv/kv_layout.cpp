#include "kv/kv_layout.h"

namespace kvscope {

double kv_row_bytes(const KvCodec& c, int head_dim) {
    const double values = head_dim * dtype_size(c.dtype);
    if (c.axis == KvAxis::None) return values;
    const int per = c.zero_point ? 2 * KvCodec::kScaleBytes : KvCodec::kScaleBytes;
    if (c.axis == KvAxis::Token) {
        const int g = c.group > 0 ? c.group : head_dim;
        return values + double((head_dim + g - 1) / g) * per;
    }
    return values + double(head_dim) * per / double(c.group > 0 ? c.group : 1);
}

int64_t kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, DType dtype) {
    // int4 packs two values per byte; head_dim is even for every model we load.
    return int64_t(2.0 * n_layer * n_kv_head * head_dim * dtype_size(dtype));
}

int64_t kv_cache_bytes(const KvShape& s) {
    return kv_bytes_per_token(s.n_layer, s.n_kv_head, s.head_dim, s.dtype) * s.n_seq * s.n_slots;
}

}  // namespace kvscope
