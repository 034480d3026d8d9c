// Bulk conversions between fp32 and the 16-bit storage types (bf16, fp16), AVX2 + F16C.
// Each gives bit-identical results to the scalar functions in core/dtype.h for every input
// (NaN, Inf, denormals, any n including tails), so weights converted at load time and KV
// cache rows encoded here decode exactly like their scalar definition.
//
// Single-threaded on purpose: callers (weight loader, KV codec) may already be inside an
// OpenMP region, and one row is too small to split. src and dst must not overlap.
#pragma once

#include <cstdint>

namespace kvscope::ops {

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n);  // round to nearest even
void bf16_to_f32(const uint16_t* src, float* dst, int64_t n);  // exact
void f32_to_f16(const float* src, uint16_t* dst, int64_t n);   // round to nearest even
void f16_to_f32(const uint16_t* src, float* dst, int64_t n);   // exact

}  // namespace kvscope::ops
