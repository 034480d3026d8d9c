// Quant: the KV cache's storage scheme. Per scheme: KV bytes per token with its scales, the
// cache at the longest context, decode ms/token at long context and batch (where the cache is
// a large share of a step's bytes) next to the step's bandwidth floor and to the weights' own
// time (the same batch over a 2-token prompt), so that each scheme's cache time is the step less
// the weights' time, compared with fp16's; and the accuracy against
// the fp32 cache on the same tokens (teacher forcing): per-step KL divergence, top-1
// agreement, the largest logit error and perplexity, pooled over token streams of two kinds:
// text sampled from the fp32 model at temperature 1 with fixed seeds, and the model's greedy
// continuations of English prompts.
#include <cmath>
#include <cstdio>

#include "analysis/cost_model.h"
#include "core/error.h"
#include "experiments/accuracy.h"
#include "experiments/experiments.h"
#include "kv/kv_codec.h"

namespace kvscope::exp {

namespace {

const char* const kEnglishPrompts[] = {"Once upon a time", "The little dog", "Tom and Lily went to the park",
                                       "One day, a girl named Sue"};

struct Stream {
    std::string kind;              // "sampled" or "greedy"
    std::vector<int32_t> prompt;   // teacher forcing starts after it
    std::vector<int32_t> forced;   // the tokens fed and predicted
};

std::vector<Stream> make_streams(Context& ctx, int len, int n_sampled) {
    Model& m = ctx.model(DType::F32);
    std::vector<Stream> out;
    auto continue_from = [&](const std::vector<int32_t>& prompt, float temperature, uint64_t seed) {
        SamplingParams sp;
        sp.temperature = temperature;
        sp.seed = seed;
        return continuation(m, prompt, len, sp, false);
    };
    const std::vector<int32_t> start = make_prompt(ctx, 1);
    for (int s = 0; s < n_sampled; s++) out.push_back({"sampled", start, continue_from(start, 1.0f, uint64_t(1000 + s))});
    if (m.tokenizer)
        for (const char* text : kEnglishPrompts) {
            std::vector<int32_t> p = m.tokenizer->encode_prompt(text);
            if (p.empty() || int(p.size()) + 8 > m.cfg.n_ctx) continue;
            out.push_back({"greedy", p, continue_from(p, 0.0f, 0)});
        }
    return out;
}

// Per-token codecs at each width, then KIVI (keys per channel in blocks of 32 tokens, values
// per token) at 4 and 2 bits, bare and with a 32-token fp16 window and 4 sinks, next to int2
// per token with the same window: what the window buys and what per-channel keys buy.
std::vector<KvFormat> default_schemes() {
    std::vector<KvFormat> out;
    for (const char* s : {"fp32", "fp16", "bf16", "int8", "int8-asym", "int4", "int4-sym", "int2", "int8/int4",
                          "int4-kivi", "int2-kivi", "int4-kivi+r32+s4", "int2-kivi+r32+s4", "int2+r32+s4"})
        out.push_back(parse_kv_format_spec(s, "--kv-dtypes"));
    return out;
}

}  // namespace

void run_quant(Context& ctx, const Grid& g) {
    Model& m = ctx.model(DType::F32);
    const ModelConfig& c = m.cfg;
    std::vector<KvFormat> schemes;
    for (const KvFormat& f : g.kv_dtypes.empty() ? default_schemes() : g.kv_dtypes) {
        try {
            KvFormat fit = f;
            fit.k = kv_codec_for(f.k, c.head_dim, "--kv-dtypes");
            fit.v = kv_codec_for(f.v, c.head_dim, "--kv-dtypes");
            schemes.push_back(fit);
        } catch (const std::runtime_error& e) {
            std::fprintf(stderr, "[exp quant] skipped: %s\n", e.what());
        }
    }
    if (schemes.empty()) fail("exp quant: no KV scheme fits head_dim {} of {}", c.head_dim, ctx.model_spec);

    // Speed: batch B at each context S (the prompt fills S - N positions, then N decode steps).
    const int B = g.batches.empty() ? (ctx.quick ? 2 : 4) : g.batches[0];
    const int N = g.new_tokens > 0 ? g.new_tokens : (ctx.quick ? 8 : 32);
    std::vector<int> contexts;
    for (int S : g.contexts.empty() ? (ctx.quick ? std::vector<int>{64, 128} : std::vector<int>{256, 512, 1024})
                                    : g.contexts)
        if (S <= c.n_ctx && S > N + 1) contexts.push_back(S);
    if (contexts.empty()) fail("exp quant: no context fits the model's {} positions with {} new tokens", c.n_ctx, N);
    std::vector<Spec> grid;
    std::vector<int> grid_ctx;
    std::vector<size_t> grid_scheme;
    // The weights' time: the same batch and steps over a 2-token prompt, so the steps read the
    // weights and almost no cache (measured with the rest, interleaved; its own row is not written).
    {
        Spec w;
        w.kv = DType::F32;
        w.prompts.assign(size_t(B), make_prompt(ctx, 2));
        w.new_tokens = N;
        grid.push_back(w);
    }
    for (int S : contexts) {
        const std::vector<int32_t> prompt = make_prompt(ctx, S - N);
        for (size_t i = 0; i < schemes.size(); i++) {
            Spec s;
            s.kv = schemes[i];
            s.prompts.assign(size_t(B), prompt);
            s.new_tokens = N;
            grid.push_back(s);
            grid_ctx.push_back(S);
            grid_scheme.push_back(i);
        }
    }
    std::vector<Result> res = measure(ctx, "quant", grid);
    const double weights_ms = res[0].step_ms.median;
    grid.erase(grid.begin());
    res.erase(res.begin());

    // Accuracy against the fp32 cache, teacher forcing on the same streams.
    const int L = g.prompt_len > 0 ? g.prompt_len : (ctx.quick ? 32 : std::min(256, c.n_ctx - 8));
    const int n_sampled = ctx.quick ? 1 : (m.synthetic ? 2 : 4);
    const std::vector<Stream> streams = make_streams(ctx, L, n_sampled);
    auto forced = [&](const KvFormat& f, const Stream& st) {
        EngineOptions eo;
        eo.max_prompt = int(st.prompt.size());
        eo.max_new_tokens = int(st.forced.size());
        eo.kv_dtype = f;
        Engine e(*m.weights, eo);
        return e.forced_logits(st.prompt, st.forced);
    };
    std::vector<std::vector<float>> ref;
    int64_t stream_tokens = 0;
    for (const Stream& st : streams) {
        ref.push_back(forced(DType::F32, st));
        stream_tokens += int64_t(st.forced.size());
    }
    Progress progress("quant accuracy", int(schemes.size()));

    std::vector<std::string> header = common_columns();
    header.insert(header.end(), {"k_codec", "v_codec", "context", "kv_bytes_per_token", "kv_bytes_mha_per_token",
                                 "cache_bytes_at_context", "floor_ms", "decode_over_floor", "streams", "stream_tokens",
                                 "kl_mean", "kl_max", "top1_agreement", "max_abs_logit_diff", "ppl_ref", "ppl",
                                 "ppl_delta_pct", "kl_mean_sampled", "kl_mean_greedy", "weights_ms", "kv_ms",
                                 "kv_ms_vs_fp16"});
    std::vector<Accuracy> acc(schemes.size()), acc_sampled(schemes.size()), acc_greedy(schemes.size());
    for (size_t i = 0; i < schemes.size(); i++) {
        const KvFormat& f = schemes[i];
        progress.update(int(i), kv_format_name(f));
        for (size_t k = 0; k < streams.size(); k++) {
            const Stream& st = streams[k];
            const Accuracy a = compare_logits(ref[k], f.is_float(DType::F32) ? ref[k] : forced(f, st), c.n_vocab, st.forced);
            acc[i].add(a);
            (st.kind == "greedy" ? acc_greedy : acc_sampled)[i].add(a);
        }
    }
    progress.finish();

    std::vector<std::vector<std::string>> rows;
    const double bw = ctx.hw.bw_gbs_all.median;
    // The cache's share of a step: the step less the weights' time; against fp16's at the same context.
    auto kv_ms = [&](size_t r) { return res[r].step_ms.median - weights_ms; };
    auto fp16_kv_ms = [&](int S) {
        for (size_t r = 0; r < grid.size(); r++)
            if (grid_ctx[r] == S && schemes[grid_scheme[r]].is_float(DType::F16)) return kv_ms(r);
        return 0.0;
    };
    for (size_t r = 0; r < grid.size(); r++) {
        const size_t i = grid_scheme[r];
        const int S = grid_ctx[r];
        const KvFormat& f = schemes[i];
        const Accuracy& all = acc[i];
        const Accuracy* by_kind[2] = {&acc_sampled[i], &acc_greedy[i]};
        const double per_token = kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, f);
        const double mha = kv_bytes_per_token(c.n_layer, c.n_head, c.head_dim, f);
        // What the engine allocates for B sequences of S positions (a window's fp16 rows included).
        EngineOptions eo;
        eo.n_seq = B;
        eo.max_prompt = S - N;
        eo.max_new_tokens = N;
        eo.kv_dtype = f;
        const int64_t cache_bytes = kv_cache_bytes(engine_kv_shape(c, eo));
        const Cost cost = decode_step_cost(c, DType::F32, f, B, S - N / 2);
        const double floor_ms = bw > 0 ? cost.bytes() / (bw * 1e9) * 1e3 : 0;
        auto row = common_row(ctx, "quant", grid[r], res[r]);
        row.insert(row.end(),
                   {kv_codec_name(f.k), kv_codec_name(f.v), std::to_string(S), fmt_num(per_token),
                    fmt_num(mha), std::to_string(cache_bytes), fmt_num(floor_ms),
                    fmt_num(floor_ms > 0 ? res[r].step_ms.median / floor_ms : 0), std::to_string(streams.size()),
                    std::to_string(stream_tokens), fmt_num(all.kl_mean()), fmt_num(all.kl_max), fmt_num(all.top1()),
                    fmt_num(all.max_abs), fmt_num(all.ppl_ref()), fmt_num(all.ppl()),
                    fmt_num(all.ppl_ref() > 0 ? 100 * (all.ppl() / all.ppl_ref() - 1) : 0),
                    by_kind[0]->rows ? fmt_num(by_kind[0]->kl_mean()) : "",
                    by_kind[1]->rows ? fmt_num(by_kind[1]->kl_mean()) : "", fmt_num(weights_ms), fmt_num(kv_ms(r)),
                    fmt_num(fp16_kv_ms(S) > 0 ? kv_ms(r) / fp16_kv_ms(S) : 0)});
        rows.push_back(row);
    }
    write_results(ctx, "quant", header, rows);
}

}  // namespace kvscope::exp
