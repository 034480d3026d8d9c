// Storage types and the scalar conversions between them. Arithmetic is always fp32; these
// types only say how numbers are stored (weights, KV cache).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <immintrin.h>

namespace kvscope {

// F8 (e4m3) sizes caches in `kvscope plan` only; the integer types store the quantized KV
// cache's values (their scales are counted by the codec, kv/kv_layout.h).
enum class DType : uint8_t { F32, F16, BF16, F8, I8, I4, I2 };

// Bytes per element (int4 and int2 pack two and four per byte).
inline double dtype_size(DType t) {
    switch (t) {
        case DType::F32: return 4;
        case DType::F16: return 2;
        case DType::BF16: return 2;
        case DType::F8: return 1;
        case DType::I8: return 1;
        case DType::I4: return 0.5;
        case DType::I2: return 0.25;
    }
    return 0;
}

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "fp32";
        case DType::F16: return "fp16";
        case DType::BF16: return "bf16";
        case DType::F8: return "fp8";
        case DType::I8: return "int8";
        case DType::I4: return "int4";
        case DType::I2: return "int2";
    }
    return "?";
}

// Accepts our spelling and the seeds' torch spelling (float32, float16, bfloat16).
bool parse_dtype(std::string_view s, DType* out);

inline float bf16_to_f32(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Round to nearest even, NaN kept quiet (same as PyTorch's c10::BFloat16).
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f32_to_f16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

}  // namespace kvscope
