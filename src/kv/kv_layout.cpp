#include "kv/kv_layout.h"

namespace kvscope {

int64_t kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, DType dtype) {
    // int4 packs two values per byte; head_dim is even for every model we load.
    return int64_t(2.0 * n_layer * n_kv_head * head_dim * dtype_size(dtype));
}

int64_t kv_cache_bytes(const KvShape& s) {
    return kv_bytes_per_token(s.n_layer, s.n_kv_head, s.head_dim, s.dtype) * s.n_seq * s.n_slots;
}

}  // namespace kvscope
