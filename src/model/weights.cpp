#include "model/weights.h"

#include <cstring>

#include <fmt/ranges.h>

#include "core/error.h"
#include "ops/convert.h"
#include "ops/pack.h"

namespace kvscope {

namespace {

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

DType compute_dtype(StDType t) { return t == StDType::F32 ? DType::F32 : t == StDType::F16 ? DType::F16 : DType::BF16; }

// n values of t as fp32 into out.
void to_f32(const StTensor& t, int64_t n, float* out) {
    if (t.dtype == StDType::F32) std::memcpy(out, t.data, size_t(n) * 4);
    else if (t.dtype == StDType::F16) ops::f16_to_f32(reinterpret_cast<const uint16_t*>(t.data), out, n);
    else ops::bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data), out, n);
}

}  // namespace

Weights::Weights(Checkpoint ck, const ModelConfig& cfg, DType dtype) : ck_(std::move(ck)), cfg_(cfg), dtype_(dtype) {
    if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
        fail("--dtype {}: weights can be stored as fp32, fp16 or bf16", dtype_name(dtype));
}

const StTensor& Weights::need(const std::string& name, const std::vector<int64_t>& shape) {
    const StTensor* t = ck_.find(name);
    if (!t) fail("{}: missing tensor \"{}\" (expected shape {} for this config)", ck_.path(), name, shape_str(shape));
    bool ok = t->shape == shape;
    if (!ok && shape.size() == 1) ok = t->numel() == shape[0] && t->shape.size() <= 2;
    if (!ok)
        fail("{}: tensor \"{}\" has shape {} but the config implies {}", ck_.file_of(name), name, shape_str(t->shape),
             shape_str(shape));
    if (t->dtype != StDType::F32 && t->dtype != StDType::F16 && t->dtype != StDType::BF16)
        fail("{}: tensor \"{}\" has dtype {} (expected F32, F16 or BF16)", ck_.file_of(name), name, st_dtype_name(t->dtype));
    return *t;
}

const float* Weights::vec(const std::string& name, int64_t n) {
    const StTensor& t = need(name, {n});
    bytes_ += n * 4;
    if (t.dtype == StDType::F32 && reinterpret_cast<uintptr_t>(t.data) % 4 == 0)
        return reinterpret_cast<const float*>(t.data);
    auto buf = make_aligned<uint8_t>(size_t(n) * 4);
    float* out = reinterpret_cast<float*>(buf.get());
    to_f32(t, n, out);
    owned_.push_back(std::move(buf));
    return out;
}

const float* Weights::vecs(const std::vector<std::string>& names, const std::vector<int64_t>& sizes) {
    int64_t total = 0;
    for (int64_t n : sizes) total += n;
    auto buf = make_aligned<uint8_t>(size_t(total) * 4);
    float* out = reinterpret_cast<float*>(buf.get());
    int64_t at = 0;
    for (size_t i = 0; i < names.size(); i++) {
        to_f32(need(names[i], {sizes[i]}), sizes[i], out + at);
        at += sizes[i];
    }
    bytes_ += total * 4;
    owned_.push_back(std::move(buf));
    return out;
}

WeightView Weights::pack(const WeightView& src) {
    WeightView w{nullptr, dtype_, Layout::Packed, src.n_in, src.n_out};
    auto buf = make_aligned<uint8_t>(size_t(w.bytes()));
    w = ops::pack_weight(src, dtype_, buf.get());
    bytes_ += w.bytes();
    owned_.push_back(std::move(buf));
    return w;
}

WeightView Weights::mat(const std::string& name, int64_t rows, int64_t cols, Layout layout) {
    const StTensor& t = need(name, {rows, cols});
    // The checkpoint's matrix as it is in the file (KN for Conv1D, NK for Linear and embeddings)...
    WeightView src;
    src.data = t.data;
    src.dtype = compute_dtype(t.dtype);
    src.layout = layout;
    src.n_in = layout == Layout::KN ? rows : cols;
    src.n_out = layout == Layout::KN ? cols : rows;
    // ...repacked once into the decode kernels' layout, in the compute dtype.
    WeightView w = pack(src);
    ck_.release(t);  // the file's pages are not needed any more: one copy in memory, not two
    return w;
}

WeightView Weights::mats(const std::vector<std::string>& names, const std::vector<int64_t>& rows, int64_t n_in) {
    if (names.size() == 1) return mat(names[0], rows[0], n_in, Layout::NK);
    int64_t n_out = 0;
    for (int64_t r : rows) n_out += r;
    // Rows stacked in fp32 (exact for every source dtype), then packed like one matrix.
    std::vector<float> stacked(size_t(n_out * n_in));
    int64_t at = 0;
    for (size_t i = 0; i < names.size(); i++) {
        const StTensor& t = need(names[i], {rows[i], n_in});
        to_f32(t, rows[i] * n_in, stacked.data() + at * n_in);
        ck_.release(t);
        at += rows[i];
    }
    return pack(WeightView{stacked.data(), DType::F32, Layout::NK, n_in, n_out});
}

}  // namespace kvscope
