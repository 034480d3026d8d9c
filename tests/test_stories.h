// stories260K (real weights) loaded once per test binary, and greedy generation on it.
#pragma once

#include <algorithm>
#include <filesystem>
#include <vector>

#include "model/loader.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace kvscope::test {

inline const Model& stories260k() {
    static const Model m =
        load_model((std::filesystem::path(shared_dir()) / "models/stories260K/stories260K.bin").string(), DType::F32);
    return m;
}

// n greedy tokens after each prompt (EOS ignored), the KV cache in format f, on or off.
inline std::vector<std::vector<int32_t>> stories_greedy(const KvFormat& f, bool cache,
                                                        const std::vector<std::vector<int32_t>>& prompts, int n,
                                                        bool left_pad = false) {
    EngineOptions eo;
    eo.n_seq = int(prompts.size());
    eo.max_prompt = 0;
    for (const auto& p : prompts) eo.max_prompt = std::max(eo.max_prompt, int(p.size()));
    eo.max_new_tokens = n;
    eo.use_cache = cache;
    eo.left_pad = left_pad;
    eo.kv_dtype = f;
    Engine e(*stories260k().weights, eo);
    GenerateOptions go;
    go.max_new_tokens = n;
    go.stop_at_eos = false;
    return e.generate(prompts, go).tokens;
}

}  // namespace kvscope::test
