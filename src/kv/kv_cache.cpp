#include "kv/kv_cache.h"

#include <cstring>

#include "core/error.h"

namespace kvscope {

KvCache::KvCache(const KvShape& shape) : s_(shape) {
    if (s_.dtype != DType::F32 && s_.dtype != DType::F16 && s_.dtype != DType::BF16)
        fail("--kv-dtype {}: the KV cache stores fp32, fp16 or bf16", dtype_name(s_.dtype));
    elem_ = int64_t(dtype_size(s_.dtype));
    bytes_ = kv_cache_bytes(s_);
    mem_ = make_aligned<uint8_t>(size_t(bytes_));
    // Touch every page now so the first decode steps do not pay page faults (and RSS shows it).
    std::memset(mem_.get(), 0, size_t(bytes_));
    base_k_ = mem_.get();
    base_v_ = mem_.get() + bytes_ / 2;
}

void KvCache::write(int il, int seq, int slot, const float* k, const float* v) {
    const int hd = s_.head_dim;
    for (int h = 0; h < s_.n_kv_head; h++) {
        uint8_t* dk = base_k_ + offset(il, seq, h, slot);
        uint8_t* dv = base_v_ + offset(il, seq, h, slot);
        const float* sk = k + h * hd;
        const float* sv = v + h * hd;
        switch (s_.dtype) {
            case DType::F32:
                std::memcpy(dk, sk, size_t(hd) * 4);
                std::memcpy(dv, sv, size_t(hd) * 4);
                break;
            case DType::F16:
                for (int i = 0; i < hd; i++) {
                    reinterpret_cast<uint16_t*>(dk)[i] = f32_to_f16(sk[i]);
                    reinterpret_cast<uint16_t*>(dv)[i] = f32_to_f16(sv[i]);
                }
                break;
            case DType::BF16:
                for (int i = 0; i < hd; i++) {
                    reinterpret_cast<uint16_t*>(dk)[i] = f32_to_bf16(sk[i]);
                    reinterpret_cast<uint16_t*>(dv)[i] = f32_to_bf16(sv[i]);
                }
                break;
            default: break;
        }
    }
}

}  // namespace kvscope
