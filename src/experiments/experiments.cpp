#include "experiments/experiments.h"

#include "core/error.h"
#include "runtime/prompts.h"

namespace kvscope::exp {

const std::vector<std::string>& experiment_names() {
    static const std::vector<std::string> names = {"cache", "batch", "precision", "seqlen", "memory", "roofline", "serving"};
    return names;
}

const std::vector<std::string>& all_experiment_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> n = experiment_names();
        n.push_back("quant");
        n.push_back("evict");
        return n;
    }();
    return names;
}

void run_experiment(Context& ctx, const std::string& name, const Grid& g) {
    if (name == "cache") run_cache(ctx, g);
    else if (name == "batch") run_batch(ctx, g);
    else if (name == "precision") run_precision(ctx, g);
    else if (name == "seqlen") run_seqlen(ctx, g);
    else if (name == "memory") run_memory(ctx, g);
    else if (name == "roofline") run_roofline(ctx, g);
    else if (name == "quant") run_quant(ctx, g);
    else if (name == "serving") run_serving(ctx, g);
    else if (name == "evict") run_evict(ctx, g);
    else fail("exp {}: unknown experiment (expected cache, batch, precision, seqlen, memory, roofline, serving, quant, evict or all)", name);
}

std::vector<int32_t> make_prompt(Context& ctx, int len) {
    Model& m = ctx.model(DType::F32);
    return prompt_of_length(m.tokenizer.get(), m.cfg.n_vocab, len);
}

}  // namespace kvscope::exp
