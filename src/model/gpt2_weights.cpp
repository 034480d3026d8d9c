#include "model/gpt2_weights.h"

#include <cstring>

#include <fmt/ranges.h>

#include "core/error.h"
#include "ops/convert.h"

namespace kvscope {

namespace {

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }


}  // namespace

Gpt2Weights::Gpt2Weights(SafetensorsFile file, const ModelConfig& cfg, DType dtype)
    : file_(std::move(file)), cfg_(cfg), dtype_(dtype) {
    if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
        fail("--dtype {}: weights can be stored as fp32, fp16 or bf16", dtype_name(dtype));
    // Checkpoints saved from GPT2LMHeadModel carry a "transformer." prefix; from GPT2Model not.
    prefix_ = file_.find("transformer.wte.weight") ? "transformer." : "";
    const int64_t d = cfg.n_embd, f = cfg.n_ff;
    wte = mat(prefix_ + "wte.weight", cfg.n_vocab, d, Layout::NK);
    wpe = vec(prefix_ + "wpe.weight", int64_t(cfg.n_ctx) * d);
    for (int il = 0; il < cfg.n_layer; il++) {
        std::string p = fmt::format("{}h.{}.", prefix_, il);
        Gpt2Layer L;
        L.ln1_w = vec(p + "ln_1.weight", d);
        L.ln1_b = vec(p + "ln_1.bias", d);
        L.attn_qkv = mat(p + "attn.c_attn.weight", d, 3 * d, Layout::KN);
        L.attn_qkv_b = vec(p + "attn.c_attn.bias", 3 * d);
        L.attn_proj = mat(p + "attn.c_proj.weight", d, d, Layout::KN);
        L.attn_proj_b = vec(p + "attn.c_proj.bias", d);
        L.ln2_w = vec(p + "ln_2.weight", d);
        L.ln2_b = vec(p + "ln_2.bias", d);
        L.fc = mat(p + "mlp.c_fc.weight", d, f, Layout::KN);
        L.fc_b = vec(p + "mlp.c_fc.bias", f);
        L.proj = mat(p + "mlp.c_proj.weight", f, d, Layout::KN);
        L.proj_b = vec(p + "mlp.c_proj.bias", d);
        layers.push_back(L);
    }
    lnf_w = vec(prefix_ + "ln_f.weight", d);
    lnf_b = vec(prefix_ + "ln_f.bias", d);
    if (file_.find("lm_head.weight")) {
        tied_ = false;
        lm_head = mat("lm_head.weight", cfg.n_vocab, d, Layout::NK);
    } else {
        lm_head = wte;
    }
}

const StTensor& Gpt2Weights::need(const std::string& name, std::vector<int64_t> shape) {
    const StTensor* t = file_.find(name);
    if (!t) fail("{}: missing tensor \"{}\" (expected shape {} for this config)", file_.path(), name, shape_str(shape));
    // A [n] vector may be stored as [1, n] by some exporters: compare element counts and rank-1 form.
    bool ok = t->shape == shape;
    if (!ok && shape.size() == 1) ok = t->numel() == shape[0] && t->shape.size() <= 2;
    if (!ok)
        fail("{}: tensor \"{}\" has shape {} but config.json implies {}", file_.path(), name, shape_str(t->shape),
             shape_str(shape));
    if (t->dtype != StDType::F32 && t->dtype != StDType::F16 && t->dtype != StDType::BF16)
        fail("{}: tensor \"{}\" has dtype {} (expected F32, F16 or BF16)", file_.path(), name, st_dtype_name(t->dtype));
    return *t;
}

const float* Gpt2Weights::vec(const std::string& name, int64_t n) {
    const StTensor& t = need(name, {n});
    bytes_ += n * 4;
    if (t.dtype == StDType::F32 && reinterpret_cast<uintptr_t>(t.data) % 4 == 0)
        return reinterpret_cast<const float*>(t.data);
    auto buf = make_aligned<uint8_t>(size_t(n) * 4);
    float* out = reinterpret_cast<float*>(buf.get());
    if (t.dtype == StDType::F32) std::memcpy(out, t.data, size_t(n) * 4);
    else if (t.dtype == StDType::F16) ops::f16_to_f32(reinterpret_cast<const uint16_t*>(t.data), out, n);
    else ops::bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data), out, n);
    owned_.push_back(std::move(buf));
    return out;
}

WeightView Gpt2Weights::mat(const std::string& name, int64_t rows, int64_t cols, Layout layout) {
    const StTensor& t = need(name, {rows, cols});
    WeightView w;
    w.dtype = dtype_;
    w.layout = layout;
    w.n_in = layout == Layout::KN ? rows : cols;
    w.n_out = layout == Layout::KN ? cols : rows;
    const int64_t n = rows * cols;
    bytes_ += w.bytes();
    StDType want = dtype_ == DType::F32 ? StDType::F32 : dtype_ == DType::F16 ? StDType::F16 : StDType::BF16;
    if (t.dtype == want && reinterpret_cast<uintptr_t>(t.data) % 4 == 0) {
        w.data = t.data;  // zero copy: the view points into the mmapped file
        return w;
    }
    // Convert through fp32 (chunked, so no full-size temporary).
    auto buf = make_aligned<uint8_t>(size_t(w.bytes()));
    constexpr int64_t kChunk = 1 << 16;
    std::vector<float> tmp(size_t(std::min(n, kChunk)));
    for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
        int64_t c = std::min(kChunk, n - i0);
        const uint8_t* src = t.data + i0 * st_dtype_size(t.dtype);
        if (t.dtype == StDType::F32) std::memcpy(tmp.data(), src, size_t(c) * 4);
        else if (t.dtype == StDType::F16) ops::f16_to_f32(reinterpret_cast<const uint16_t*>(src), tmp.data(), c);
        else ops::bf16_to_f32(reinterpret_cast<const uint16_t*>(src), tmp.data(), c);
        uint8_t* dst = buf.get() + i0 * int64_t(dtype_size(dtype_));
        if (dtype_ == DType::F32) std::memcpy(dst, tmp.data(), size_t(c) * 4);
        else if (dtype_ == DType::F16) ops::f32_to_f16(tmp.data(), reinterpret_cast<uint16_t*>(dst), c);
        else ops::f32_to_bf16(tmp.data(), reinterpret_cast<uint16_t*>(dst), c);
        file_.release(src, uint64_t(c) * uint64_t(st_dtype_size(t.dtype)));  // peak RSS: one copy, not two
    }
    w.data = buf.get();
    owned_.push_back(std::move(buf));
    file_.release(t);
    return w;
}

int64_t Gpt2Weights::bytes_read_per_token() const {
    int64_t b = lm_head.bytes();
    for (const auto& L : layers) b += L.attn_qkv.bytes() + L.attn_proj.bytes() + L.fc.bytes() + L.proj.bytes();
    const int64_t d = cfg_.n_embd;
    b += int64_t(cfg_.n_layer) * (4 * d + 3 * d + d + cfg_.n_ff + d) * 4;  // LayerNorms and biases
    b += 2 * d * 4;                                                       // ln_f
    return b;
}

}  // namespace kvscope
