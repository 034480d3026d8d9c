// Finding and loading a model: a Hugging Face directory, a llama2.c .bin file, a name in the
// Hugging Face hub cache, or a preset whose synthetic weights are generated once into
// kvscope's data folder.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "model/config.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace kvscope {

struct ModelSource {
    std::filesystem::path path;  // the model's folder, or its .bin file
    std::string how;  // "directory", "llama2.c checkpoint", "hugging face cache", "synthetic (cached)", ...
    bool llama2c = false;
    std::filesystem::path folder() const { return llama2c ? path.parent_path() : path; }
};

// Resolves --model: an existing directory or llama2.c .bin file; else models--NAME/snapshots/*/
// in the Hugging Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub); else
// a preset name with synthetic weights, generated on first use with a note on stderr (unless
// `generate` is false: info and plan need only the config).
ModelSource resolve_model(const std::string& spec, bool generate = true);
std::filesystem::path synthetic_cache_dir();  // data_dir() / "models" (core/paths.h)

struct Model {
    std::string name;  // what the user asked for
    ModelSource source;
    ModelConfig cfg;
    bool synthetic = false;
    std::unique_ptr<Weights> weights;        // null when loaded with weights == false
    std::unique_ptr<Tokenizer> tokenizer;    // null when the model has none (use --prompt-ids)
    const char* weights_kind() const { return synthetic ? "synthetic" : "pretrained"; }
};

// tokenizer: a tokenizer file to use instead of the one found beside the model ("" = find).
// A preset that is too big to run here (llama-3-8b, ...) loads only with weights == false.
Model load_model(const std::string& spec, DType dtype, bool with_weights = true, const std::string& tokenizer = "");

}  // namespace kvscope
