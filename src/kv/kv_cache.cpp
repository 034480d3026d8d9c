#include "kv/kv_cache.h"

#include <cstring>

#include "core/error.h"
#include "kv/kv_codec.h"

namespace kvscope {

KvCache::KvCache(const KvShape& shape) : s_(shape) {
    for (const KvCodec* c : {&s_.format.k, &s_.format.v})
        if (c->dtype == DType::F8) fail("--kv-dtype fp8: the KV cache stores fp32, fp16, bf16, int8, int4 or int2");
    s_.format.k = kv_codec_for(s_.format.k, s_.head_dim, "--k-dtype");
    s_.format.v = kv_codec_for(s_.format.v, s_.head_dim, "--v-dtype");
    k_stride_ = kv_row_stride(s_.format.k, s_.head_dim);
    v_stride_ = kv_row_stride(s_.format.v, s_.head_dim);
    bytes_ = kv_cache_bytes(s_);
    mem_ = make_aligned<uint8_t>(size_t(bytes_));
    // Touch every page now so the first decode steps do not pay page faults (and RSS shows it).
    std::memset(mem_.get(), 0, size_t(bytes_));
    base_k_ = mem_.get();
    base_v_ = mem_.get() + row(s_.n_layer, 0, 0, 0) * k_stride_;
}

void KvCache::write(int il, int seq, int slot, const float* k, const float* v) {
    const int hd = s_.head_dim;
    for (int h = 0; h < s_.n_kv_head; h++) {
        const int64_t r = row(il, seq, h, slot);
        kv_encode_row(s_.format.k, hd, k + h * hd, base_k_ + r * k_stride_);
        kv_encode_row(s_.format.v, hd, v + h * hd, base_v_ + r * v_stride_);
    }
}

}  // namespace kvscope
