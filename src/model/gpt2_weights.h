// GPT-2 weights as the forward pass sees them: matrices as WeightViews (in the storage dtype
// chosen at load), vectors (biases, LayerNorm, positions) always fp32. Views point into the
// mmapped checkpoint when no conversion is needed, otherwise into buffers owned here.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/aligned.h"

#include "core/dtype.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "ops/matmul.h"

namespace kvscope {

struct Gpt2Layer {
    const float* ln1_w;    // [n_embd]
    const float* ln1_b;    // [n_embd]
    WeightView attn_qkv;   // KN [n_embd, 3*n_embd]
    const float* attn_qkv_b;  // [3*n_embd]
    WeightView attn_proj;  // KN [n_embd, n_embd]
    const float* attn_proj_b;
    const float* ln2_w;
    const float* ln2_b;
    WeightView fc;         // KN [n_embd, n_ff]
    const float* fc_b;     // [n_ff]
    WeightView proj;       // KN [n_ff, n_embd]
    const float* proj_b;   // [n_embd]
};

class Gpt2Weights {
public:
    // Loads and checks every tensor of `file` against `cfg`; matrices are stored as `dtype`.
    Gpt2Weights(SafetensorsFile file, const ModelConfig& cfg, DType dtype);

    WeightView wte;        // NK [n_vocab, n_embd]: token embedding, also the tied LM head
    const float* wpe;      // [n_ctx, n_embd]
    std::vector<Gpt2Layer> layers;
    const float* lnf_w;
    const float* lnf_b;
    WeightView lm_head;    // NK [n_vocab, n_embd]; == wte when tied

    DType dtype() const { return dtype_; }
    bool tied() const { return tied_; }
    // Bytes of every weight as stored for compute (the tied head counted once).
    int64_t bytes() const { return bytes_; }
    // Bytes read by one decode step: every matrix, the head, the vectors (embedding rows excluded).
    int64_t bytes_read_per_token() const;
    const std::string& path() const { return file_.path(); }
    const ModelConfig& config() const { return cfg_; }

private:
    const StTensor& need(const std::string& name, std::vector<int64_t> shape);
    const float* vec(const std::string& name, int64_t n);
    WeightView mat(const std::string& name, int64_t rows, int64_t cols, Layout layout);

    SafetensorsFile file_;
    ModelConfig cfg_;
    DType dtype_;
    std::string prefix_;
    bool tied_ = true;
    int64_t bytes_ = 0;
    std::vector<AlignedArray<uint8_t>> owned_;
};

}  // namespace kvscope
