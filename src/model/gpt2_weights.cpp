#include "model/gpt2_weights.h"

#include <cstring>

#include <fmt/ranges.h>

#include "core/error.h"
#include "ops/convert.h"
#include "ops/pack.h"

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
    // The checkpoint's matrix as it is in the file (KN for Conv1D, NK for embeddings)...
    WeightView src;
    src.data = t.data;
    src.dtype = t.dtype == StDType::F32 ? DType::F32 : t.dtype == StDType::F16 ? DType::F16 : DType::BF16;
    src.layout = layout;
    src.n_in = layout == Layout::KN ? rows : cols;
    src.n_out = layout == Layout::KN ? cols : rows;
    // ...repacked once into the decode kernels' layout, in the compute dtype.
    WeightView w{nullptr, dtype_, Layout::Packed, src.n_in, src.n_out};
    auto buf = make_aligned<uint8_t>(size_t(w.bytes()));
    w = ops::pack_weight(src, dtype_, buf.get());
    bytes_ += w.bytes();
    owned_.push_back(std::move(buf));
    file_.release(t);  // the file's pages are not needed any more: one copy in memory, not two
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
