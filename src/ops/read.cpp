#include "ops/read.h"

#include <immintrin.h>

#include <cstring>

namespace kvscope::ops {

uint32_t read_words(const void* p, int64_t bytes) {
    const auto* b = static_cast<const uint8_t*>(p);
    const int64_t half = bytes / 128 * 64;  // bytes of each stream, in whole 64-byte blocks
    const uint8_t* s0 = b;
    const uint8_t* s1 = b + half;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < half; i += 64) {
        a0 = _mm256_add_epi32(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s0 + i)));
        a1 = _mm256_add_epi32(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s0 + i + 32)));
        a2 = _mm256_add_epi32(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s1 + i)));
        a3 = _mm256_add_epi32(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s1 + i + 32)));
    }
    int64_t i = 2 * half;
    for (; i + 32 <= bytes; i += 32)
        a0 = _mm256_add_epi32(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
    alignas(32) uint32_t lanes[8];
    const __m256i all = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), all);
    uint32_t sum = 0;
    for (uint32_t l : lanes) sum += l;
    for (; i + 4 <= bytes; i += 4) {
        uint32_t w;
        std::memcpy(&w, b + i, 4);
        sum += w;
    }
    for (; i < bytes; i++) sum += b[i];
    return sum;
}

uint32_t read_share(const void* p, int64_t bytes, int t, int nt) {
    const int64_t blocks = bytes / 64;
    const int64_t lo = blocks * t / nt * 64, hi = t == nt - 1 ? bytes : blocks * (t + 1) / nt * 64;
    return read_words(static_cast<const uint8_t*>(p) + lo, hi - lo);
}

}  // namespace kvscope::ops
