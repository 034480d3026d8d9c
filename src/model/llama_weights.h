// The Llama family's tensors (Hugging Face LlamaForCausalLM / MistralForCausalLM /
// Qwen2ForCausalLM names; llama2.c checkpoints are read under the same names), checked
// against the config at load. Q, K and V are stacked into one packed matrix, gate and up
// into another, so a layer runs four products as GPT-2's does.
#pragma once

#include <vector>

#include "model/weights.h"

namespace kvscope {

struct LlamaLayer {
    const float* attn_norm;  // [n_embd]
    WeightView wqkv;         // [n_embd -> q_dim + 2 kv_dim]: Q, then K, then V
    const float* bqkv;       // [q_dim + 2 kv_dim] or nullptr (Qwen2 has q/k/v biases)
    WeightView wo;           // [q_dim -> n_embd]
    const float* ffn_norm;   // [n_embd]
    WeightView w_gate_up;    // [n_embd -> 2 n_ff]: gate, then up
    const float* b_gate_up;  // [2 n_ff] or nullptr
    WeightView w_down;       // [n_ff -> n_embd]
    const float* b_down;     // [n_embd] or nullptr
};

class LlamaWeights : public Weights {
public:
    LlamaWeights(Checkpoint ck, const ModelConfig& cfg, DType dtype);

    WeightView tok_embd;  // [n_embd -> n_vocab] (a column per token); the LM head when tied
    std::vector<LlamaLayer> layers;
    const float* out_norm;  // [n_embd]
    WeightView lm_head;     // [n_embd -> n_vocab]

    int64_t bytes_read_per_token() const override;
    std::unique_ptr<Forward> make_forward(int max_tok, int max_out, int max_slots) const override;  // arch/llama.cpp
};

}  // namespace kvscope
