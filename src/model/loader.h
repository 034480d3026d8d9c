// Finding and loading a model: a directory, a name in the Hugging Face hub cache, or a preset
// whose synthetic weights are generated once into kvscope's cache.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "model/config.h"
#include "model/gpt2_weights.h"
#include "tokenizer/gpt2_bpe.h"

namespace kvscope {

struct ModelSource {
    std::filesystem::path dir;
    std::string how;  // "directory", "hugging face cache", "synthetic (cached)", "synthetic (generated now)"
};

// Resolves --model: an existing directory; else models--NAME/snapshots/*/ in the Hugging Face
// hub cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub); else a preset name
// (distilgpt2, gpt2, ...) with synthetic weights, generated on first use with a note on stderr.
ModelSource resolve_model(const std::string& spec);
std::filesystem::path synthetic_cache_dir();  // data_dir() / "models" (core/paths.h)

struct Model {
    std::string name;  // what the user asked for
    ModelSource source;
    ModelConfig cfg;
    bool synthetic = false;
    std::unique_ptr<Gpt2Weights> weights;        // null when loaded with weights == false
    std::unique_ptr<Gpt2Tokenizer> tokenizer;    // null when the directory has no vocabulary
    const char* weights_kind() const { return synthetic ? "synthetic" : "pretrained"; }
};

Model load_model(const std::string& spec, DType dtype, bool with_weights = true);

}  // namespace kvscope
