// A model's weights as a forward pass reads them: matrices as WeightViews (in the storage
// dtype chosen at load, repacked to Layout::Packed for the decode kernels), vectors (biases,
// norms, positions) always fp32, pointing into the mapped checkpoint when it stores them as
// fp32. Each family's weights class (Gpt2Weights, LlamaWeights) names its tensors and makes
// its forward pass; load_weights() (arch/families.cpp) picks the class for a config.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/dtype.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "ops/matmul.h"

namespace kvscope {

class Forward;

class Weights {
public:
    virtual ~Weights() = default;
    Weights(const Weights&) = delete;
    Weights& operator=(const Weights&) = delete;

    const ModelConfig& config() const { return cfg_; }
    DType dtype() const { return dtype_; }
    // Bytes of every weight as stored for compute (a tied head counted once).
    int64_t bytes() const { return bytes_; }
    const std::string& path() const { return ck_.path(); }
    // Bytes read by one decode step: every matrix, the head, the vectors (embedding rows excluded).
    virtual int64_t bytes_read_per_token() const = 0;
    // The family's forward pass with scratch for up to max_tok tokens, max_out logit rows and
    // max_slots cache slots per sequence, allocated once there.
    virtual std::unique_ptr<Forward> make_forward(int max_tok, int max_out, int max_slots) const = 0;

protected:
    Weights(Checkpoint ck, const ModelConfig& cfg, DType dtype);

    // The tensor `name` with this shape (a [n] vector may be stored as [1, n]), else an error
    // naming the file, the tensor and the shape the config implies.
    const StTensor& need(const std::string& name, const std::vector<int64_t>& shape);
    const float* vec(const std::string& name, int64_t n);
    // Several vectors back to back, as one fp32 array (fused biases).
    const float* vecs(const std::vector<std::string>& names, const std::vector<int64_t>& sizes);
    // One matrix, stored KN or NK in the file, repacked.
    WeightView mat(const std::string& name, int64_t rows, int64_t cols, Layout layout);
    // NK matrices [rows_i, n_in] stacked along their outputs into one packed matrix, so that
    // one product computes all of them (Q, K and V; gate and up).
    WeightView mats(const std::vector<std::string>& names, const std::vector<int64_t>& rows, int64_t n_in);
    bool has(const std::string& name) const { return ck_.find(name) != nullptr; }

    Checkpoint ck_;
    ModelConfig cfg_;
    DType dtype_;

private:
    WeightView pack(const WeightView& src);

    int64_t bytes_ = 0;
    std::vector<AlignedArray<uint8_t>> owned_;
};

// The weights of `cfg`'s family from `ck`, matrices stored as `dtype` (fp32, fp16 or bf16).
std::unique_ptr<Weights> load_weights(Checkpoint ck, const ModelConfig& cfg, DType dtype);

}  // namespace kvscope
