#include "experiments/harness.h"

#include "kv/kv_codec.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "analysis/process.h"
#include "core/error.h"
#include "core/fs.h"
#include "kv/kv_layout.h"
#include "report/csv.h"

namespace kvscope::exp {

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string iso_now() {
    auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

}  // namespace

Model& Context::model(DType w) {
    auto it = models_.find(w);
    if (it == models_.end()) it = models_.emplace(w, std::make_unique<Model>(load_model(model_spec, w, true, tokenizer))).first;
    return *it->second;
}

const nlohmann::json& Context::sample() {
    if (sample_) return *sample_;
    sample_ = std::make_unique<nlohmann::json>();
    Model& m = model(DType::F32);
    if (!m.tokenizer) return *sample_;
    const std::string prompt = "Once upon a time";
    const std::vector<int32_t> ids = m.tokenizer->encode_prompt(prompt);
    if (ids.empty() || int(ids.size()) >= m.cfg.n_ctx) return *sample_;
    const std::vector<int32_t> out = continuation(m, ids, 64, SamplingParams{}, true);
    std::vector<int32_t> all = ids;
    all.insert(all.end(), out.begin(), out.end());
    *sample_ = {{"prompt", prompt}, {"text", m.tokenizer->decode(all)}, {"tokens", out.size()}, {"greedy", true}};
    return *sample_;
}

std::vector<int32_t> continuation(const Model& m, const std::vector<int32_t>& prompt, int n, const SamplingParams& sp,
                                  bool stop_at_eos) {
    n = std::min(n, m.cfg.n_ctx - int(prompt.size()));
    if (n < 1) return {};
    EngineOptions eo;
    eo.max_prompt = int(prompt.size());
    eo.max_new_tokens = n;
    Engine e(*m.weights, eo);
    GenerateOptions go;
    go.max_new_tokens = n;
    go.stop_at_eos = stop_at_eos;
    go.sampling = sp;
    return e.generate({prompt}, go).tokens[0];
}

int Spec::max_prompt() const {
    int m = 0;
    for (const auto& p : prompts) m = std::max(m, int(p.size()));
    return m;
}

void reset_peak_rss() {
    if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
        std::fputs("5", f);
        std::fclose(f);
    }
}

std::string fmt_num(double v) {
    if (std::isnan(v)) return "nan";
    if (v == std::floor(v) && std::abs(v) < 1e15) return fmt::format("{}", int64_t(v));
    return fmt::format("{:.6g}", v);
}

Progress::Progress(std::string name, int total) : name_(std::move(name)), total_(total), t0_(now_s()) {
    tty_ = ::isatty(2);
}

void Progress::update(int done, const std::string& what) {
    double el = now_s() - t0_;
    std::string eta = done > 0 ? fmt::format(", ~{:.0f} s left", el / done * (total_ - done)) : "";
    std::string line = fmt::format("[exp {}] run {}/{}: {} ({:.0f} s elapsed{})", name_, done + 1, total_, what, el, eta);
    if (tty_) std::fprintf(stderr, "\r\033[K%s", line.c_str());
    else std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
}

void Progress::finish() {
    std::string line = fmt::format("[exp {}] {} runs done in {:.1f} s", name_, total_, now_s() - t0_);
    if (tty_) std::fprintf(stderr, "\r\033[K%s\n", line.c_str());
    else std::fprintf(stderr, "%s\n", line.c_str());
}

static GenerateResult run_one(Context& ctx, const Spec& s, Result* r, bool record_memory, int max_new) {
    Model& m = ctx.model(s.weights);
    EngineOptions eo;
    eo.n_seq = s.batch();
    eo.max_prompt = s.max_prompt();
    eo.max_new_tokens = s.new_tokens;
    eo.use_cache = s.use_cache;
    eo.left_pad = s.left_pad;
    eo.kv_dtype = s.kv;
    reset_peak_rss();
    const int64_t rss0 = current_rss_bytes();
    Engine e(*m.weights, eo);
    const int64_t rss1 = current_rss_bytes();
    GenerateOptions go;
    go.max_new_tokens = max_new;
    go.stop_at_eos = false;  // fixed lengths: every configuration does the work it names
    GenerateResult g = e.generate(s.prompts, go);
    if (record_memory) {
        r->kv_bytes = e.kv_bytes();
        r->kv_theory = kv_cache_bytes(engine_kv_shape(m.cfg, eo));
        r->scratch_bytes = e.scratch_bytes();
        r->weight_bytes = m.weights->bytes();
        r->rss_after_setup = rss1;
        r->kv_rss_delta = rss1 - rss0;
        r->peak_rss = std::max(r->peak_rss, peak_rss_bytes());
    }
    return g;
}

std::vector<Result> measure(Context& ctx, const std::string& name, const std::vector<Spec>& grid,
                            const std::function<void()>& before_round) {
    std::vector<Result> res(grid.size());
    // Load every weight dtype first, so loading never lands inside a measurement.
    for (const Spec& s : grid) ctx.model(s.weights);
    const int n = int(grid.size());
    Progress prog(name, n * (ctx.warmup + ctx.reps));
    int done = 0;
    auto label = [&](const Spec& s) {
        return fmt::format("{}/{} b{} p{} +{} cache {}", dtype_name(s.weights), kv_format_name(s.kv), s.batch(),
                           s.max_prompt(), s.new_tokens, s.use_cache ? "on" : "off");
    };
    // Warm-up: the same configuration, its first 16 tokens (the long ones warm up nothing more).
    for (int w = 0; w < ctx.warmup; w++)
        for (int i = 0; i < n; i++) {
            prog.update(done++, "warm-up " + label(grid[size_t(i)]));
            run_one(ctx, grid[size_t(i)], &res[size_t(i)], false, std::min(grid[size_t(i)].new_tokens, 16));
            res[size_t(i)].warmup++;
        }
    std::vector<int> reps(size_t(n), ctx.reps);
    for (int rep = 0; rep < ctx.reps; rep++) {
        if (before_round) before_round();
        for (int i = 0; i < n; i++) {
            if (rep >= reps[size_t(i)]) continue;
            prog.update(done++, fmt::format("rep {}/{} {}", rep + 1, reps[size_t(i)], label(grid[size_t(i)])));
            const Spec& s = grid[size_t(i)];
            GenerateResult g = run_one(ctx, s, &res[size_t(i)], true, s.gen_tokens > 0 ? s.gen_tokens : s.new_tokens);
            // After the first rep, cap the repetitions of configurations too slow for the budget.
            if (rep == 0) {
                int fit = int(ctx.max_config_seconds / std::max(1e-3, g.total_ms / 1e3));
                reps[size_t(i)] = std::clamp(fit, 1, ctx.reps);
            }
            res[size_t(i)].reps.push_back(std::move(g));
        }
    }
    prog.finish();
    for (Result& r : res) {
        std::vector<double> prefill, total, steps, tok_s, dec_tok_s;
        for (const GenerateResult& g : r.reps) {
            prefill.push_back(g.prefill_ms);
            total.push_back(g.total_ms);
            steps.insert(steps.end(), g.step_ms.begin(), g.step_ms.end());
            tok_s.push_back(double(g.tokens_generated) / (g.total_ms / 1e3));
            double ms = 0, toks = 0;
            for (size_t k = 0; k < g.step_ms.size(); k++) {
                ms += g.step_ms[k];
                toks += g.step_tokens[k];
            }
            if (ms > 0) dec_tok_s.push_back(toks / (ms / 1e3));
            r.decode_ms_by_rep.push_back(summarize(g.step_ms).median);
            r.tokens_generated = g.tokens_generated;
        }
        r.prefill_ms = summarize(prefill);
        r.total_ms = summarize(total);
        r.step_ms = summarize(steps);
        r.tokens_per_s = summarize(tok_s).median;
        r.decode_tok_s = dec_tok_s.empty() ? 0.0 : summarize(dec_tok_s).median;
    }
    return res;
}

std::vector<std::string> common_columns() {
    return {"experiment",       "commit",          "cpu",           "threads",        "model",
            "weights",          "n_params",        "dtype",         "kv_dtype",       "batch_size",
            "prompt_len",       "max_new_tokens",  "use_cache",     "reps",           "warmup",
            "prefill_ms_median", "prefill_ms_p95", "prefill_ms_std", "decode_ms_median", "decode_ms_p50",
            "decode_ms_p95",    "decode_ms_std",   "decode_tok_s",  "total_ms_median", "total_ms_p95",
            "tokens_per_s",     "tokens_generated", "kv_bytes",     "kv_bytes_theory", "weight_bytes",
            "scratch_bytes",    "peak_rss_bytes"};
}

std::vector<std::string> common_row(Context& ctx, const std::string& experiment, const Spec& s, const Result& r) {
    Model& m = ctx.model(s.weights);
    return {experiment,
            build_commit(),
            ctx.hw.cpu_model,
            std::to_string(ctx.threads),
            ctx.model_spec,
            m.weights_kind(),
            std::to_string(m.cfg.n_params()),
            dtype_name(s.weights),
            kv_format_name(s.kv),
            std::to_string(s.batch()),
            std::to_string(s.max_prompt()),
            std::to_string(s.new_tokens),
            s.use_cache ? "1" : "0",
            std::to_string(r.reps.size()),
            std::to_string(r.warmup),
            fmt_num(r.prefill_ms.median),
            fmt_num(r.prefill_ms.p95),
            fmt_num(r.prefill_ms.stddev),
            fmt_num(r.step_ms.median),
            fmt_num(r.step_ms.median),
            fmt_num(r.step_ms.p95),
            fmt_num(r.step_ms.stddev),
            fmt_num(r.decode_tok_s),
            fmt_num(r.total_ms.median),
            fmt_num(r.total_ms.p95),
            fmt_num(r.tokens_per_s),
            std::to_string(r.tokens_generated),
            std::to_string(r.kv_bytes),
            std::to_string(r.kv_theory),
            std::to_string(r.weight_bytes),
            std::to_string(r.scratch_bytes),
            std::to_string(r.peak_rss)};
}

void write_results(Context& ctx, const std::string& name, const std::vector<std::string>& header,
                   const std::vector<std::vector<std::string>>& rows) {
    for (const auto& r : rows)
        if (r.size() != header.size())
            fail("internal: {} row has {} fields for {} columns", name, r.size(), header.size());
    std::filesystem::create_directories(ctx.out_dir);
    write_csv(ctx.out_dir / (name + ".csv"), header, rows);
    Model& m = ctx.model(DType::F32);
    const ModelConfig& c = m.cfg;
    nlohmann::json j;
    j["experiment"] = name;
    j["command"] = ctx.command;
    j["created"] = iso_now();
    j["commit"] = build_commit();
    j["model"] = {{"name", ctx.model_spec}, {"dir", m.source.path.string()}, {"weights", m.weights_kind()},
                  {"arch", arch_name(c.arch)}, {"model_type", c.model_type},
                  {"tokenizer", m.tokenizer ? m.tokenizer->kind() : std::string("none")},
                  {"n_layer", c.n_layer}, {"n_embd", c.n_embd}, {"n_head", c.n_head}, {"n_kv_head", c.n_kv_head},
                  {"head_dim", c.head_dim}, {"n_ff", c.n_ff}, {"n_vocab", c.n_vocab}, {"n_ctx", c.n_ctx},
                  {"n_params", c.n_params()}};
    if (!ctx.sample().is_null()) j["sample"] = ctx.sample();
    j["hw"] = analysis::to_json(ctx.hw);
    j["threads"] = ctx.threads;
    j["reps"] = ctx.reps;
    j["warmup"] = ctx.warmup;
    write_file_atomic(ctx.out_dir / (name + ".json"), j.dump(2) + "\n");
}

}  // namespace kvscope::exp
