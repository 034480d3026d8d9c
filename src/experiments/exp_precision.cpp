// Precision: weight dtype x KV dtype. Speed and memory from the harness; accuracy against the
// fp32/fp32 run on the same tokens (teacher forcing): max |logit difference|, KL divergence of
// the next-token distributions, top-1 agreement; and how long free-running greedy decoding
// stays identical to the reference.
#include <cmath>

#include "core/error.h"
#include "experiments/accuracy.h"
#include "experiments/experiments.h"

namespace kvscope::exp {

void run_precision(Context& ctx, const Grid& g) {
    const int P = g.prompt_len > 0 ? g.prompt_len : (ctx.quick ? 8 : 32);
    const int N = g.new_tokens > 0 ? g.new_tokens : (ctx.quick ? 8 : 64);
    std::vector<DType> wts = g.weight_dtypes;
    std::vector<KvFormat> kvs = g.kv_dtypes;
    if (wts.empty()) wts = {DType::F32, DType::BF16, DType::F16};
    if (kvs.empty()) kvs = {DType::F32, DType::BF16, DType::F16};
    std::vector<Spec> grid;
    auto prompt = make_prompt(ctx, P);
    // The reference configuration first, whether or not it was asked for.
    Spec ref_spec;
    ref_spec.prompts = {prompt};
    ref_spec.new_tokens = N;
    grid.push_back(ref_spec);
    for (DType w : wts)
        for (const KvFormat& k : kvs) {
            if (w == DType::F32 && k.is_float(DType::F32)) continue;
            Spec s = ref_spec;
            s.weights = w;
            s.kv = k;
            grid.push_back(s);
        }
    std::vector<Result> res = measure(ctx, "precision", grid);

    // Teacher-forced logits of every configuration on the reference's own greedy tokens.
    const std::vector<int32_t>& ref_tokens = res[0].reps.front().tokens[0];
    auto forced = [&](const Spec& s) {
        EngineOptions eo;
        eo.max_prompt = P;
        eo.max_new_tokens = N;
        eo.kv_dtype = s.kv;
        Engine e(*ctx.model(s.weights).weights, eo);
        return e.forced_logits(prompt, ref_tokens);
    };
    std::vector<float> ref_logits = forced(grid[0]);
    const int V = ctx.model(DType::F32).cfg.n_vocab;

    std::vector<std::string> header = common_columns();
    header.insert(header.end(), {"max_abs_logit_diff", "kl_mean", "kl_max", "top1_agreement", "greedy_match"});
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < grid.size(); i++) {
        const Accuracy a = i == 0 ? Accuracy{} : compare_logits(ref_logits, forced(grid[i]), V);
        const auto& toks = res[i].reps.front().tokens[0];
        size_t same = 0;
        while (same < toks.size() && same < ref_tokens.size() && toks[same] == ref_tokens[same]) same++;
        auto row = common_row(ctx, "precision", grid[i], res[i]);
        row.push_back(fmt_num(a.max_abs));
        row.push_back(fmt_num(a.kl_mean()));
        row.push_back(fmt_num(a.kl_max));
        row.push_back(fmt_num(a.top1()));
        row.push_back(fmt_num(double(same) / double(N)));
        rows.push_back(row);
    }
    write_results(ctx, "precision", header, rows);
}

}  // namespace kvscope::exp
