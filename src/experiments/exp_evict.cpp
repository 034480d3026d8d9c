// Evict: keeping less of the cache (kv/kv_evict.h). Each policy at budgets from 10% to 100% of a
// token stream, against the full cache on the same tokens by teacher forcing (KL, top-1
// agreement, perplexity), with its cache bytes and decode time per token, and a recall probe (a
// fact early in a prompt that is cut to the budget, asked about after it: "Tom had a big dog
// named Bob. ..." then "The dog's name was" -> " Bob"); two policies also
// with a quantized codec. Which positions each policy kept at the end of one stream, per layer
// (evict_kept.csv). For a rotary-position model, a stream four times the context window:
// perplexity of each bounded policy against the model's own sliding-window recompute, and
// decode time per token early and late in the stream (evict_long.csv).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "analysis/stats.h"
#include "core/error.h"
#include "experiments/accuracy.h"
#include "experiments/experiments.h"
#include "kv/kv_codec.h"
#include "kv/kv_evict.h"
#include "report/csv.h"

namespace kvscope::exp {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

KvPolicyConfig make_policy(KvPolicy k, int budget) {
    KvPolicyConfig p;
    p.kind = k;
    p.budget = budget;
    if (k == KvPolicy::SnapKV) p.window = std::max(1, std::min(32, budget / 4));
    return p;
}

struct Forced {
    std::vector<float> logits;
    double ms_per_token = 0;
    int64_t kv_bytes = 0;
    std::vector<std::vector<int>> kept;  // [layer] positions held by each KV head, concatenated
};

// Teacher forcing of `forced` after `prompt` with this policy and KV format.
Forced force(const Model& m, const KvFormat& f, const KvPolicyConfig& p, const std::vector<int32_t>& prompt,
             const std::vector<int32_t>& forced, bool want_kept = false) {
    EngineOptions eo;
    eo.max_prompt = int(prompt.size());
    eo.max_new_tokens = int(forced.size());
    eo.kv_dtype = f;
    eo.policy = p;
    Engine e(*m.weights, eo);
    Forced r;
    const auto t0 = std::chrono::steady_clock::now();
    r.logits = e.forced_logits(prompt, forced);
    r.ms_per_token = ms_since(t0) / double(std::max<size_t>(1, forced.size()));
    r.kv_bytes = e.kv_bytes();
    if (want_kept && e.evictor()) {
        const int n = e.held(0);
        for (int il = 0; il < m.cfg.n_layer; il++) {
            std::vector<int> v;
            for (int h = 0; h < m.cfg.n_kv_head; h++) {
                const int* pos = e.evictor()->positions(il, 0, h);
                v.insert(v.end(), pos, pos + n);
            }
            r.kept.push_back(v);
        }
    }
    return r;
}

// One document longer than the window: stories sampled from BOS at temperature 1, each cut at
// the model's end of text, joined after a single BOS (as one long book is, StreamingLLM's
// PG19), until `len` tokens.
std::vector<int32_t> long_stream(const Model& m, int len, uint64_t seed) {
    const ModelConfig& c = m.cfg;
    const int32_t bos = c.bos_id >= 0 && c.bos_id < c.n_vocab ? c.bos_id : 0;
    std::vector<int32_t> out;
    for (uint64_t s = seed; int(out.size()) < len; s++) {
        SamplingParams sp;
        sp.temperature = 1.0f;
        sp.seed = s;
        std::vector<int32_t> story = continuation(m, {bos}, std::min(c.n_ctx - 1, 400), sp, true);
        auto end = std::find_if(story.begin(), story.end(), [&](int32_t t) { return t == bos || t == c.eos_id; });
        story.erase(end, story.end());
        if (story.empty()) continue;
        if (out.empty()) out.push_back(bos);
        out.insert(out.end(), story.begin(), story.end());
    }
    out.resize(size_t(len));
    return out;
}

// Perplexity over rows [from, to) of teacher-forced logits (row i predicts next[i]).
double ppl_of(const std::vector<float>& logits, int V, const std::vector<int32_t>& next, size_t from, size_t to) {
    double nll = 0;
    for (size_t i = from; i < to; i++) {
        const float* row = &logits[i * size_t(V)];
        const float mx = *std::max_element(row, row + V);
        double z = 0;
        for (int v = 0; v < V; v++) z += std::exp(double(row[v]) - mx);
        nll += std::log(z) + mx - row[next[i]];
    }
    return to > from ? std::exp(nll / double(to - from)) : 0;
}

}  // namespace

void run_evict(Context& ctx, const Grid& g) {
    Model& m = ctx.model(DType::F32);
    const ModelConfig& c = m.cfg;
    const int V = c.n_vocab;
    const bool rotary = c.arch == Arch::LLAMA;
    const int32_t bos = c.bos_id >= 0 && c.bos_id < V ? c.bos_id : 0;

    std::vector<KvPolicy> policies;
    for (const std::string& s : g.evict_policies) policies.push_back(parse_kv_policy(s, "--kv-policies"));
    if (policies.empty()) policies = {KvPolicy::Window, KvPolicy::Sinks, KvPolicy::H2O, KvPolicy::SnapKV, KvPolicy::TOVA};
    std::vector<double> fracs = g.budgets;
    if (fracs.empty()) fracs = ctx.quick ? std::vector<double>{0.25, 1.0} : std::vector<double>{0.1, 0.25, 0.5, 0.75, 1.0};
    // Codecs combined with policies: the first --kv-dtypes entry (default int8) with sinks and h2o.
    KvFormat combo = g.kv_dtypes.empty() ? KvFormat(DType::I8) : g.kv_dtypes[0];
    combo.k = kv_codec_for(combo.k, c.head_dim, "--kv-dtypes");
    combo.v = kv_codec_for(combo.v, c.head_dim, "--kv-dtypes");

    // Streams: the model's own text sampled from BOS at temperature 1 (fixed seeds), within the window.
    const int T = g.prompt_len > 0 ? std::min(g.prompt_len, c.n_ctx) : std::min(ctx.quick ? 64 : 512, c.n_ctx);
    const int n_streams = ctx.quick ? 1 : (m.synthetic ? 2 : 4);
    std::vector<std::vector<int32_t>> streams;
    for (int s = 0; s < n_streams; s++) {
        SamplingParams sp;
        sp.temperature = 1.0f;
        sp.seed = uint64_t(2000 + s);
        std::vector<int32_t> st = {bos};
        const std::vector<int32_t> more = continuation(m, st, T - 1, sp, false);
        st.insert(st.end(), more.begin(), more.end());
        streams.push_back(st);
    }
    auto prompt_of = [&](const std::vector<int32_t>& s) { return std::vector<int32_t>(s.begin(), s.begin() + 1); };
    auto forced_of = [&](const std::vector<int32_t>& s) { return std::vector<int32_t>(s.begin() + 1, s.end()); };

    // The recall probe: a fact, a few sentences, then the question; the text before the question
    // is the prompt (cut after its prefill to the same fraction of its length as each row's
    // budget is of the stream), the question is fed after it. The answer is the first token the
    // question gains when the answer follows it. Short, so that a small model recalls it with the
    // whole cache.
    std::vector<int32_t> probe_prompt, probe_question;
    int32_t probe_answer = -1;
    if (m.tokenizer) {
        const std::vector<int32_t> ctx_ids = m.tokenizer->encode_prompt(
            "Tom had a big dog named Bob. Tom and his dog liked to play in the park. One day, they saw a cat.");
        const std::vector<int32_t> q = m.tokenizer->encode("The dog's name was");
        const std::vector<int32_t> qa = m.tokenizer->encode("The dog's name was Bob");
        if (qa.size() > q.size() && std::equal(q.begin(), q.end(), qa.begin()) &&
            int(ctx_ids.size() + q.size()) + 1 <= c.n_ctx) {
            probe_prompt = ctx_ids;
            probe_question = q;
            probe_answer = qa[q.size()];
        }
    }
    auto recall = [&](const KvFormat& f, KvPolicyConfig p, double frac, double* prob, int* rank) {
        *prob = 0;
        *rank = 0;
        if (probe_answer < 0) return;
        if (p.bounded()) {
            p = make_policy(p.kind, std::max(2, int(std::lround(frac * double(probe_prompt.size() + probe_question.size())))));
            try {
                p.validate();
            } catch (const Error&) {
                p = KvPolicyConfig{};
            }
        }
        std::vector<int32_t> forced = probe_question;
        forced.push_back(probe_answer);
        const Forced r = force(m, f, p, probe_prompt, forced);
        const float* row = &r.logits[(forced.size() - 1) * size_t(V)];
        const float mx = *std::max_element(row, row + V);
        double z = 0;
        for (int v = 0; v < V; v++) z += std::exp(double(row[v]) - mx);
        *prob = std::exp(double(row[probe_answer]) - mx) / z;
        for (int v = 0; v < V; v++) *rank += row[v] > row[probe_answer] ? 1 : 0;
    };

    struct Row {
        KvPolicyConfig p;
        KvFormat f;
        double frac;
    };
    std::vector<Row> grid;
    grid.push_back({KvPolicyConfig{}, KvFormat(DType::F32), 1.0});
    for (double fr : fracs)
        for (KvPolicy k : policies) {
            const int budget = std::max(2, int(std::lround(fr * (T - 1))));
            KvPolicyConfig p = make_policy(k, budget);
            try {
                p.validate();
            } catch (const Error& e) {
                std::fprintf(stderr, "[exp evict] skipped %s at %d tokens: %s\n", kv_policy_name(k), budget, e.what());
                continue;
            }
            grid.push_back({p, KvFormat(DType::F32), fr});
            if (k == KvPolicy::Sinks || k == KvPolicy::H2O) grid.push_back({p, combo, fr});
        }

    Progress progress("evict", int(grid.size()));
    std::vector<std::vector<float>> ref;
    for (const auto& s : streams) ref.push_back(force(m, KvFormat(DType::F32), {}, prompt_of(s), forced_of(s)).logits);
    std::vector<std::string> header = common_columns();
    header.insert(header.end(), {"policy", "kv_budget", "budget_frac", "policy_label", "stream_len", "streams",
                                 "stream_tokens", "kl_mean", "kl_max", "top1_agreement", "max_abs_logit_diff", "ppl_ref",
                                 "ppl", "ppl_delta_pct", "decode_ms_per_token", "recall_prob", "recall_rank"});
    std::vector<std::vector<std::string>> rows, kept_rows;
    const double kept_frac = fracs.size() > 1 ? fracs[std::min<size_t>(1, fracs.size() - 1)] : fracs[0];
    for (size_t i = 0; i < grid.size(); i++) {
        const Row& gr = grid[i];
        progress.update(int(i), kv_policy_label(gr.p) + " " + kv_format_name(gr.f));
        Accuracy acc;
        std::vector<double> ms;
        int64_t kv_bytes = 0;
        for (size_t k = 0; k < streams.size(); k++) {
            const bool want_kept = k == 0 && gr.p.bounded() && gr.frac == kept_frac && gr.f.is_float(DType::F32);
            const Forced r = force(m, gr.f, gr.p, prompt_of(streams[k]), forced_of(streams[k]), want_kept);
            acc.add(compare_logits(ref[k], r.logits, V, forced_of(streams[k])));
            ms.push_back(r.ms_per_token);
            kv_bytes = r.kv_bytes;
            for (size_t il = 0; il < r.kept.size(); il++) {
                std::vector<int> count(size_t(T), 0);
                for (int pos : r.kept[il])
                    if (pos >= 0 && pos < T) count[size_t(pos)]++;
                for (int pos = 0; pos < T; pos++)
                    kept_rows.push_back({kv_policy_name(gr.p.kind), std::to_string(gr.p.budget), std::to_string(il),
                                         std::to_string(pos), fmt_num(double(count[size_t(pos)]) / c.n_kv_head)});
            }
        }
        double rp = 0;
        int rr = 0;
        recall(gr.f, gr.p, gr.frac, &rp, &rr);
        Spec spec;
        spec.kv = gr.f;
        spec.prompts = {prompt_of(streams[0])};
        spec.new_tokens = T - 1;
        Result res;
        res.reps.resize(1);
        res.step_ms = summarize(ms);
        res.kv_bytes = res.kv_theory = kv_bytes;
        res.weight_bytes = m.weights->bytes();
        res.tokens_generated = int64_t(T - 1);
        std::vector<std::string> row = common_row(ctx, "evict", spec, res);
        row.insert(row.end(), {kv_policy_name(gr.p.kind), std::to_string(gr.p.bounded() ? gr.p.budget : T - 1), fmt_num(gr.frac),
                               kv_policy_label(gr.p), std::to_string(T), std::to_string(streams.size()),
                               std::to_string(acc.rows), fmt_num(acc.kl_mean()), fmt_num(acc.kl_max), fmt_num(acc.top1()),
                               fmt_num(acc.max_abs), fmt_num(acc.ppl_ref()), fmt_num(acc.ppl()),
                               fmt_num(acc.ppl_ref() > 0 ? 100 * (acc.ppl() / acc.ppl_ref() - 1) : 0),
                               fmt_num(summarize(ms).median), fmt_num(rp), std::to_string(rr)});
        rows.push_back(row);
    }
    progress.finish();
    write_results(ctx, "evict", header, rows);
    write_csv(ctx.out_dir / "evict_kept.csv", {"policy", "kv_budget", "layer", "position", "kept_frac"}, kept_rows);

    // Past the window: rotary models only (learned positions end at the window).
    const int L = g.long_stream >= 0 ? g.long_stream : (ctx.quick ? 2 * c.n_ctx : 4 * c.n_ctx);
    if (!rotary || L <= c.n_ctx) {
        std::fprintf(stderr, "[exp evict] no stream past the context window: %s\n",
                     rotary ? "--long-stream is within it" : "the model's learned positions end at the window");
        return;
    }
    const int B = std::min(c.n_ctx / 2, 256);
    const std::vector<int32_t> ls = long_stream(m, L, 3000);
    const std::vector<int32_t> lp(ls.begin(), ls.begin() + 1), lf(ls.begin() + 1, ls.end());
    std::vector<std::vector<std::string>> long_rows;
    auto add_long = [&](const std::string& method, const std::string& label, int budget, const std::vector<float>& logits,
                        double total_ms, const std::vector<double>& step_ms) {
        const size_t n = lf.size(), past = size_t(c.n_ctx);
        const size_t w = std::min<size_t>(size_t(budget), n / 4);
        auto med = [&](size_t a, size_t b) {
            std::vector<double> v(step_ms.begin() + long(a), step_ms.begin() + long(b));
            return v.empty() ? 0.0 : summarize(v).median;
        };
        long_rows.push_back({method, label, std::to_string(budget), std::to_string(L), fmt_num(ppl_of(logits, V, lf, 0, n)),
                             fmt_num(ppl_of(logits, V, lf, std::min(past, n), n)), fmt_num(total_ms / double(n)),
                             step_ms.empty() ? "0" : fmt_num(med(size_t(budget), size_t(budget) + w)),
                             step_ms.empty() ? "0" : fmt_num(med(n - w, n))});
    };
    Progress lprog("evict past the window", int(policies.size()) + 1);
    int done = 0;
    for (KvPolicy k : policies) {
        const KvPolicyConfig p = make_policy(k, B);
        lprog.update(done++, kv_policy_label(p));
        EngineOptions eo;
        eo.max_prompt = 1;
        eo.max_new_tokens = int(lf.size());
        eo.policy = p;
        Engine e(*m.weights, eo);
        std::vector<double> step_ms;
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<float> logits = e.forced_logits(lp, lf, &step_ms);
        add_long(kv_policy_name(k), kv_policy_label(p), B, logits, ms_since(t0), step_ms);
    }
    // The costly baseline: each token's logits from a fresh forward over the B tokens up to it.
    lprog.update(done++, "sliding-window recompute");
    {
        EngineOptions eo;
        eo.max_prompt = B;
        Engine e(*m.weights, eo);
        std::vector<float> logits(lf.size() * size_t(V));
        std::vector<double> step_ms;
        const auto t0 = std::chrono::steady_clock::now();
        for (size_t i = 0; i < lf.size(); i++) {
            const size_t end = i + 1, begin = end > size_t(B) ? end - size_t(B) : 0;  // tokens ls[begin, end)
            const auto s0 = std::chrono::steady_clock::now();
            const std::vector<float> row = e.prefill_logits(std::vector<int32_t>(ls.begin() + long(begin), ls.begin() + long(end)));
            std::copy(row.begin(), row.end(), logits.begin() + long(i * size_t(V)));
            step_ms.push_back(ms_since(s0));
        }
        add_long("recompute", fmt::format("sliding-window recompute {}", B), B, logits, ms_since(t0), step_ms);
    }
    lprog.finish();
    write_csv(ctx.out_dir / "evict_long.csv",
              {"method", "label", "budget", "stream_len", "ppl", "ppl_past_window", "ms_per_token", "ms_per_token_early",
               "ms_per_token_late"},
              long_rows);
}

}  // namespace kvscope::exp
