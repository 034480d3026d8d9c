// The registry of model families: a config's family names the weights class that reads its
// checkpoint (and that class makes the family's forward pass). A new family adds its weights
// class and forward pass, and one line here.
#include "model/gpt2_weights.h"
#include "model/llama_weights.h"

namespace kvscope {

std::unique_ptr<Weights> load_weights(Checkpoint ck, const ModelConfig& cfg, DType dtype) {
    switch (cfg.arch) {
        case Arch::GPT2: return std::make_unique<Gpt2Weights>(std::move(ck), cfg, dtype);
        case Arch::LLAMA: return std::make_unique<LlamaWeights>(std::move(ck), cfg, dtype);
    }
    return nullptr;
}

}  // namespace kvscope
