#include "model/llama_weights.h"

#include <fmt/format.h>

#include "core/error.h"

namespace kvscope {

LlamaWeights::LlamaWeights(Checkpoint ck, const ModelConfig& cfg, DType dtype) : Weights(std::move(ck), cfg, dtype) {
    std::string why;
    if (!runnable(cfg, &why)) fail("{}: {}", path(), why);
    const int64_t d = cfg.n_embd, q = cfg.q_dim(), kv = cfg.kv_dim(), f = cfg.n_ff;
    tok_embd = mat("model.embed_tokens.weight", cfg.n_vocab, d, Layout::NK);
    for (int il = 0; il < cfg.n_layer; il++) {
        const std::string p = fmt::format("model.layers.{}.", il);
        LlamaLayer L;
        L.attn_norm = vec(p + "input_layernorm.weight", d);
        L.wqkv = mats({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"},
                      {q, kv, kv}, d);
        L.bqkv = cfg.attn_bias ? vecs({p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"},
                                      {q, kv, kv})
                               : nullptr;
        L.wo = mat(p + "self_attn.o_proj.weight", d, q, Layout::NK);
        L.ffn_norm = vec(p + "post_attention_layernorm.weight", d);
        L.w_gate_up = mats({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}, {f, f}, d);
        L.b_gate_up = cfg.mlp_bias ? vecs({p + "mlp.gate_proj.bias", p + "mlp.up_proj.bias"}, {f, f}) : nullptr;
        L.w_down = mat(p + "mlp.down_proj.weight", d, f, Layout::NK);
        L.b_down = cfg.mlp_bias ? vec(p + "mlp.down_proj.bias", d) : nullptr;
        layers.push_back(L);
    }
    out_norm = vec("model.norm.weight", d);
    // A checkpoint that ships lm_head.weight uses it even when the config says tied (some
    // exporters write the copy); one without it must be tied.
    if (has("lm_head.weight")) {
        lm_head = mat("lm_head.weight", cfg.n_vocab, d, Layout::NK);
        cfg_.tied_embeddings = false;
    } else if (!cfg.tied_embeddings) {
        fail("{}: missing tensor \"lm_head.weight\" (the config says the output head is not tied to the embedding)",
             path());
    } else {
        lm_head = tok_embd;
    }
}

int64_t LlamaWeights::bytes_read_per_token() const {
    int64_t b = lm_head.bytes();
    const ModelConfig& c = cfg_;
    for (const auto& L : layers) b += L.wqkv.bytes() + L.wo.bytes() + L.w_gate_up.bytes() + L.w_down.bytes();
    const int64_t vecs_per_layer = 2 * int64_t(c.n_embd) + (c.attn_bias ? c.q_dim() + 2 * c.kv_dim() : 0) +
                                   (c.mlp_bias ? 2 * int64_t(c.n_ff) + c.n_embd : 0);
    return b + (int64_t(c.n_layer) * vecs_per_layer + c.n_embd) * 4;
}

}  // namespace kvscope
