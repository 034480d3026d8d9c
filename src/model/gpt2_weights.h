// GPT-2's tensors (Hugging Face names, Conv1D matrices stored KN), checked against the config
// at load. Matrices are repacked in the compute dtype; the file's pages are released.
#pragma once

#include <vector>

#include "model/weights.h"

namespace kvscope {

struct Gpt2Layer {
    const float* ln1_w;    // [n_embd]
    const float* ln1_b;    // [n_embd]
    WeightView attn_qkv;   // [n_embd -> 3*n_embd] (all matrices Packed, see ops/matmul.h)
    const float* attn_qkv_b;  // [3*n_embd]
    WeightView attn_proj;  // [n_embd -> n_embd]
    const float* attn_proj_b;
    const float* ln2_w;
    const float* ln2_b;
    WeightView fc;         // [n_embd -> n_ff]
    const float* fc_b;     // [n_ff]
    WeightView proj;       // [n_ff -> n_embd]
    const float* proj_b;   // [n_embd]
};

class Gpt2Weights : public Weights {
public:
    // Loads and checks every tensor of `ck` against `cfg`; matrices are stored as `dtype`.
    Gpt2Weights(Checkpoint ck, const ModelConfig& cfg, DType dtype);

    WeightView wte;        // [n_embd -> n_vocab]: token embedding (a column per token), also the tied LM head
    const float* wpe;      // [n_ctx, n_embd]
    std::vector<Gpt2Layer> layers;
    const float* lnf_w;
    const float* lnf_b;
    WeightView lm_head;    // [n_embd -> n_vocab]; == wte when tied

    bool tied() const { return tied_; }
    int64_t bytes_read_per_token() const override;
    std::unique_ptr<Forward> make_forward(int max_tok, int max_out, int max_slots) const override;  // arch/gpt2.cpp

private:
    bool tied_ = true;
};

}  // namespace kvscope
