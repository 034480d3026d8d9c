// GPT-2 weights as the forward pass sees them: matrices as WeightViews (in the storage dtype
// chosen at load, repacked to Layout::Packed for the decode kernels), vectors (biases,
// LayerNorm, positions) always fp32, pointing into the mmapped checkpoint when it stores them
// as fp32. Matrices live in buffers owned here; their pages of the file are released.
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

class Gpt2Weights {
public:
    // Loads and checks every tensor of `file` against `cfg`; matrices are stored as `dtype`.
    Gpt2Weights(SafetensorsFile file, const ModelConfig& cfg, DType dtype);

    WeightView wte;        // [n_embd -> n_vocab]: token embedding (a column per token), also the tied LM head
    const float* wpe;      // [n_ctx, n_embd]
    std::vector<Gpt2Layer> layers;
    const float* lnf_w;
    const float* lnf_b;
    WeightView lm_head;    // [n_embd -> n_vocab]; == wte when tied

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
