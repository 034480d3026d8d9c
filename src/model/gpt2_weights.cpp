#include "model/gpt2_weights.h"

#include <fmt/format.h>

namespace kvscope {

Gpt2Weights::Gpt2Weights(Checkpoint ck, const ModelConfig& cfg, DType dtype) : Weights(std::move(ck), cfg, dtype) {
    // Checkpoints saved from GPT2LMHeadModel carry a "transformer." prefix; from GPT2Model not.
    const std::string prefix = has("transformer.wte.weight") ? "transformer." : "";
    const int64_t d = cfg.n_embd, f = cfg.n_ff;
    wte = mat(prefix + "wte.weight", cfg.n_vocab, d, Layout::NK);
    wpe = vec(prefix + "wpe.weight", int64_t(cfg.n_ctx) * d);
    for (int il = 0; il < cfg.n_layer; il++) {
        std::string p = fmt::format("{}h.{}.", prefix, il);
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
    lnf_w = vec(prefix + "ln_f.weight", d);
    lnf_b = vec(prefix + "ln_f.bias", d);
    if (has("lm_head.weight")) {
        tied_ = false;
        lm_head = mat("lm_head.weight", cfg.n_vocab, d, Layout::NK);
    } else {
        lm_head = wte;
    }
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
