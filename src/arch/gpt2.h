// The GPT-2 forward pass over a set of tokens from one or more sequences.
#pragma once

#include <cstdint>

#include "arch/attend.h"
#include "arch/forward.h"
#include "core/aligned.h"
#include "model/gpt2_weights.h"

namespace kvscope {

class Gpt2Model : public Forward {
public:
    // Scratch for up to `max_tok` tokens per call and `max_out` logit rows, allocated here once.
    Gpt2Model(const Gpt2Weights& w, int max_tok, int max_out, int max_slots);

    void forward(const Ubatch& ub, KvCache& cache, const KvSeqs& seqs, float* logits) override;
    // Each layer's QKV weights, the heads' K and V rows [0, keys), the other three weight
    // matrices; then the LM head.
    uint32_t read_step(const KvCache& cache, int seq, int keys) const override;
    int64_t scratch_bytes() const override { return scratch_bytes_; }

private:
    const Gpt2Weights& w_;
    const ModelConfig& c_;
    AttnPlan plan_;
    int max_tok_, max_out_, max_slots_, n_threads_;
    int64_t scratch_bytes_ = 0;
    AlignedArray<float> mem_;
    float* x_;       // [max_tok, n_embd] residual stream
    float* xn_;      // [max_tok, n_embd] normalized input of a sublayer
    float* qkv_;     // [max_tok, 3 * n_embd]
    float* att_;     // [max_tok, n_embd] attention output, heads concatenated
    float* tmp_;     // [max_tok, n_embd] sublayer output before the residual add
    float* h_;       // [max_tok, n_ff] MLP hidden
    float* scores_;  // [n_threads, plan_.scores_per_thread(max_slots)] attention scores
    float* xo_;      // [max_out, n_embd] final-norm rows whose logits are wanted
};

}  // namespace kvscope
