#include "ops/pack.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace kvscope::ops {
namespace {

// memcpy loads: a checkpoint's tensor may start at any byte offset of the file.
template <DType D>
float load(const void* data, int64_t i) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    if constexpr (D == DType::F32) {
        float f;
        std::memcpy(&f, bytes + i * 4, 4);
        return f;
    } else {
        uint16_t h;
        std::memcpy(&h, bytes + i * 2, 2);
        return D == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
}

float load(const void* data, DType dt, int64_t i) {
    return dt == DType::F32 ? load<DType::F32>(data, i) : dt == DType::F16 ? load<DType::F16>(data, i)
                                                                           : load<DType::BF16>(data, i);
}

template <DType D>
void store(void* data, int64_t i, float v) {
    if constexpr (D == DType::F32) static_cast<float*>(data)[i] = v;
    else if constexpr (D == DType::F16) static_cast<uint16_t*>(data)[i] = f32_to_f16(v);
    else static_cast<uint16_t*>(data)[i] = f32_to_bf16(v);
}

bool supported(DType dt) { return dt == DType::F32 || dt == DType::F16 || dt == DType::BF16; }

// Each panel is written in storage order; KN sources read 16 contiguous values per k, NK
// sources read 16 rows side by side (16 sequential streams). Typed on both dtypes so the
// start-up pass over every weight does no per-element dispatch.
template <DType S, DType D>
void pack_typed(const WeightView& src, void* dst) {
    const int64_t panels = packed_panels(src.n_out), n_in = src.n_in, n_out = src.n_out;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < panels; p++) {
        for (int64_t k = 0; k < n_in; k++) {
            const int64_t base = (p * n_in + k) * kPanel;
            for (int64_t j = 0; j < kPanel; j++) {
                const int64_t o = p * kPanel + j;
                store<D>(dst, base + j, o < n_out ? load<S>(src.data, src.index(k, o)) : 0.0f);
            }
        }
    }
}

template <DType S>
void pack_from(const WeightView& src, DType dtype, void* dst) {
    switch (dtype) {
        case DType::F32: pack_typed<S, DType::F32>(src, dst); break;
        case DType::F16: pack_typed<S, DType::F16>(src, dst); break;
        default: pack_typed<S, DType::BF16>(src, dst); break;
    }
}

}  // namespace

WeightView pack_weight(const WeightView& src, DType dtype, void* dst) {
    if (!supported(src.dtype) || !supported(dtype))
        fail("pack_weight: dtypes {} -> {} not supported (fp32, fp16, bf16)", dtype_name(src.dtype), dtype_name(dtype));
    if (src.layout == Layout::Packed) fail("pack_weight: the source is already packed");
    switch (src.dtype) {
        case DType::F32: pack_from<DType::F32>(src, dtype, dst); break;
        case DType::F16: pack_from<DType::F16>(src, dtype, dst); break;
        default: pack_from<DType::BF16>(src, dtype, dst); break;
    }
    return {dst, dtype, Layout::Packed, src.n_in, src.n_out};
}

void weight_column(const WeightView& w, int64_t o, float* out) {
    if (w.layout == Layout::NK && w.dtype == DType::F32) {
        std::memcpy(out, static_cast<const float*>(w.data) + o * w.n_in, size_t(w.n_in) * 4);
        return;
    }
    for (int64_t k = 0; k < w.n_in; k++) out[k] = load(w.data, w.dtype, w.index(k, o));
}

}  // namespace kvscope::ops
