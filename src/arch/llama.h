// The Llama-family forward pass (Llama, Mistral, Qwen2, llama2.c checkpoints) over a set of
// tokens from one or more sequences: RMSNorm, rotary positions, grouped-query attention,
// SwiGLU MLP.
#pragma once

#include <cstdint>
#include <vector>

#include "arch/attend.h"
#include "arch/forward.h"
#include "core/aligned.h"
#include "model/llama_weights.h"

namespace kvscope {

class LlamaModel : public Forward {
public:
    LlamaModel(const LlamaWeights& w, int max_tok, int max_out, int max_slots);

    void forward(const Ubatch& ub, KvCache& cache, const KvSeqs& seqs, float* logits) override;
    // Each layer's QKV weights, the KV heads' K and V rows [0, keys) (once per group), the
    // other three weight matrices; then the LM head.
    uint32_t read_step(const KvCache& cache, int seq, int keys) const override;
    int64_t scratch_bytes() const override { return scratch_bytes_; }

private:
    // Virtual sinks (KvShape::virtual_sinks): each sequence's sink keys of layer kl, rotated
    // from their first-written form by the distance its tokens' positions now run ahead of their
    // slots, so that the sinks sit just before the window (StreamingLLM's positions).
    void place_sinks(const Ubatch& ub, KvCache& cache, int kl);

    const LlamaWeights& w_;
    const ModelConfig& c_;
    AttnPlan plan_;
    std::vector<float> inv_freq_;  // [head_dim / 2]
    int max_tok_, max_out_, max_slots_, n_threads_;
    int64_t scratch_bytes_ = 0;
    AlignedArray<float> mem_;
    float* x_;       // [max_tok, n_embd] residual stream
    float* xn_;      // [max_tok, n_embd] normalized input of a sublayer
    float* qkv_;     // [max_tok, q_dim + 2 kv_dim]
    float* att_;     // [max_tok, q_dim] attention output, heads concatenated
    float* tmp_;     // [max_tok, n_embd] sublayer output before the residual add
    float* gu_;      // [max_tok, 2 n_ff] gate and up projections
    float* h_;       // [max_tok, n_ff] silu(gate) * up
    float* rope_;    // [max_tok, head_dim] cos (first half) and sin (second half) of each token's angles
    float* scores_;  // [n_threads, plan_.scores_per_thread(max_slots)]
    float* xo_;      // [max_out, n_embd] final-norm rows whose logits are wanted
    std::vector<float> sink_;  // [2 head_dim] place_sinks' angles and rotated key
};

}  // namespace kvscope
