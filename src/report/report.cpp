#include "report/report.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>

#include <fmt/format.h>

#include "analysis/process.h"
#include "core/error.h"
#include "core/fs.h"
#include "report/document.h"
#include "report/findings.h"
#include "report/plots.h"
#include "report/results.h"

namespace kvscope::report {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr double MiB = 1024.0 * 1024.0;

Block section(const std::string& text, const std::string& anchor) {
    Block b{Block::Kind::Section, text};
    b.anchor = anchor;
    return b;
}
Block para(const std::string& text) { return {Block::Kind::Para, text}; }

std::string bytes_text(double b) {
    if (b <= 0) return "unknown";
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    return (b == std::floor(b) ? fmt::format("{:.0f}", b) : fmt::format("{:.1f}", b)) + " " + units[u];
}

std::string utc_now() {
    std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
    return buf;
}

// ---- what each experiment is, and which columns its table shows ----------------------------------

struct Col {
    std::string label, column;
    enum class How { Text, Num, MiB } how = How::Num;
};

struct Experiment {
    std::string title;
    std::string what;                // what was measured and why, for the section's first paragraph
    std::vector<Col> cols;           // the table: a readable subset of the CSV's columns
    std::vector<std::string> order;  // sort keys (numeric when the cells are numbers)
};

const std::map<std::string, Experiment>& experiments() {
    using H = Col::How;
    static const std::map<std::string, Experiment> m = {
        {"cache",
         {"KV cache on vs off",
          "Whole generations with `use_cache=1` (prefill once, then one token per step reading the cache) and "
          "`use_cache=0` (every step recomputes the full sequence), at several generation lengths.",
          {{"max_new_tokens", "max_new_tokens"}, {"use_cache", "use_cache", H::Text}, {"prefill ms", "prefill_ms_median"},
           {"decode ms/step p50", "decode_ms_median"}, {"decode ms/step p95", "decode_ms_p95"}, {"last step ms", "decode_ms_last"},
           {"total ms", "total_ms_median"}, {"tokens/s", "tokens_per_s"}, {"KV MiB", "kv_bytes", H::MiB},
           {"peak RSS MiB", "peak_rss_bytes", H::MiB}, {"speedup", "speedup"}},
          {"max_new_tokens", "-use_cache"}}},
        {"cache_tokens",
         {"Per-token generation time over one run",
          "The latency of every generated token in one long run per mode (the two plots of the seed that built GPT-2 "
          "from scratch). The table shows a sample of the steps.",
          {},
          {}}},
        {"batch",
         {"Batching",
          "Several sequences decoded together: the weights are read once per step for the whole batch, so aggregate "
          "throughput rises while each sequence waits a little longer per token.",
          {{"batch_size", "batch_size"}, {"padding", "padding", H::Text}, {"prompt_lens", "prompt_lens", H::Text},
           {"decode tokens/s", "decode_tok_s"}, {"seq latency p50 ms", "seq_latency_ms_p50"},
           {"seq latency p95 ms", "seq_latency_ms_p95"}, {"tokens/s (total)", "tokens_per_s"}, {"KV MiB", "kv_bytes", H::MiB},
           {"peak RSS MiB", "peak_rss_bytes", H::MiB}},
          {"padding", "batch_size"}}},
        {"precision",
         {"Weight and KV cache precision",
          "Each weight storage type x KV cache storage type, against the fp32/fp32 reference: speed, bytes, and the cost "
          "in accuracy (KL divergence of next-token distributions, top-1 agreement, greedy match).",
          {{"weights", "dtype", H::Text}, {"KV", "kv_dtype", H::Text}, {"decode tokens/s", "decode_tok_s"},
           {"weights MiB", "weight_bytes", H::MiB}, {"KV MiB", "kv_bytes", H::MiB}, {"KL mean", "kl_mean"}, {"KL max", "kl_max"},
           {"max |logit diff|", "max_abs_logit_diff"}, {"top1 agreement", "top1_agreement"}, {"greedy match", "greedy_match"}},
          {"dtype", "kv_dtype"}}},
        {"seqlen",
         {"Sequence length",
          "Decode cost at increasing context depth S with and without the cache, and the cache's memory at each S.",
          {{"context", "context"}, {"use_cache", "use_cache", H::Text}, {"decode ms p50", "decode_ms_median"},
           {"decode ms p95", "decode_ms_p95"}, {"KV MiB", "kv_bytes", H::MiB}, {"theory MiB", "kv_bytes_theory", H::MiB},
           {"RSS growth MiB", "kv_rss_delta_bytes", H::MiB}},
          {"context", "-use_cache"}}},
        {"memory",
         {"KV memory: theory vs measured",
          "The bytes the formula predicts, the bytes the cache allocated, and how much resident memory grew when the "
          "cache was allocated and touched.",
          {{"context", "context"}, {"kv_dtype", "kv_dtype", H::Text}, {"batch_size", "batch_size"},
           {"KV MiB", "kv_bytes", H::MiB}, {"theory MiB", "kv_bytes_theory", H::MiB}, {"RSS growth MiB", "kv_rss_delta_bytes", H::MiB},
           {"RSS MiB", "rss_bytes", H::MiB}, {"formula matches", "kv_formula_matches", H::Text}},
          {"kv_dtype", "batch_size", "context"}}},
        {"quant",
         {"Quantized KV cache",
          "Each storage scheme of the KV cache (float types, and integer codes with fp16 scales per row or per group "
          "of channels, or keys per channel over blocks of tokens as KIVI does (`-cN`), symmetric or with a minimum; "
          "`+rN` keeps the newest N tokens in fp16, `+sN` the first N): bytes per token with the scales, decode time "
          "per step at long "
          "context and batch next to the step's bandwidth floor (its bytes / the measured read bandwidth), and the "
          "accuracy against the fp32 cache on the same tokens by teacher forcing: KL divergence of the next-token "
          "distributions (KL mean, per step), top-1 agreement, the largest logit error, and perplexity over the "
          "streams (text sampled from the model at temperature 1 with fixed seeds, and its greedy continuations of "
          "English prompts).",
          {{"KV", "kv_dtype", H::Text}, {"context", "context"}, {"KV bytes/token", "kv_bytes_per_token"},
           {"cache MiB", "kv_bytes", H::MiB}, {"decode ms p50", "decode_ms_median"}, {"floor ms", "floor_ms"},
           {"decode/floor", "decode_over_floor"}, {"KV ms", "kv_ms"}, {"KV ms / fp16's", "kv_ms_vs_fp16"}, {"KL mean", "kl_mean"}, {"top1 agreement", "top1_agreement"},
           {"max |logit diff|", "max_abs_logit_diff"}, {"ppl", "ppl"}, {"ppl change %", "ppl_delta_pct"}},
          {"context", "-kv_bytes_per_token"}}},
        {"serving",
         {"Serving a request trace: static reservation, paged KV, prefix sharing",
          "One trace of requests of different lengths (Poisson arrivals at each rate) served by continuous batching "
          "on the same engine and the same KV budget (kv_tokens slots) under three memory policies: `static` reserves "
          "max_len slots per request when it is admitted (a plain batch, or Hugging Face's static cache), `paged` "
          "allocates blocks of kv_block slots as a request grows and preempts the newest request (to be recomputed) "
          "when they run out, `prefix` is paged and reuses the cached blocks of a prompt prefix it has seen. TTFT is "
          "the time from a request's arrival to its first token, TPOT the time per later token, e2e arrival to last "
          "token; waste is the share of reserved KV slots that held no token, time-weighted over the run. The clock is "
          "the engine's: each step advances it by its measured duration.",
          {{"policy", "policy", H::Text}, {"rate req/s", "rate_req_s"}, {"served req/s", "throughput_req_s"},
           {"output tok/s", "output_tok_s"}, {"TTFT p50 ms", "ttft_ms_p50"}, {"TTFT p99 ms", "ttft_ms_p99"},
           {"TPOT p50 ms", "tpot_ms_p50"}, {"e2e p50 ms", "e2e_ms_p50"}, {"e2e p99 ms", "e2e_ms_p99"},
           {"max running", "max_running"}, {"waste %", "waste_pct"}, {"preempted", "preemptions"},
           {"prefix tokens reused", "prefix_tokens_reused"}},
          {"rate_req_s", "policy"}}},
        {"evict",
         {"Keeping less of the cache: eviction policies",
          "Each policy keeps at most kv_budget tokens per layer and KV head after every step (budget_frac of the "
          "stream): `window` the newest, `sinks` the first 4 and the newest (StreamingLLM, with positions counted "
          "within the cache), `h2o` the newest half and the most attended over all queries so far, `snapkv` an "
          "observation window and what its queries attended to most, max-pooled over neighbours, `tova` what the "
          "newest query attends to most over the layer's heads. Accuracy against the full cache on the same streams "
          "by teacher forcing (KL mean per step, top-1 agreement, perplexity); decode ms per token; the cache "
          "allocated; and a recall probe: a fact in a short prompt cut to the same fraction of its length, then the "
          "question, with the answer's probability and rank.",
          {{"policy", "policy_label", H::Text}, {"KV", "kv_dtype", H::Text}, {"budget", "kv_budget"},
           {"of stream", "budget_frac"}, {"KL mean", "kl_mean"}, {"top1 agreement", "top1_agreement"}, {"ppl", "ppl"},
           {"ppl change %", "ppl_delta_pct"}, {"ms/token", "decode_ms_per_token"}, {"cache MiB", "kv_bytes", H::MiB},
           {"recall p", "recall_prob"}, {"recall rank", "recall_rank"}},
          {"budget_frac", "policy", "kv_dtype"}}},
        {"evict_long",
         {"Past the context window",
          "One document four times the context window, teacher-forced through each bounded policy at one budget, "
          "against the model's own sliding-window recompute (every token's logits from a fresh forward over the "
          "budget's tokens before it, the costly baseline StreamingLLM compares with). ppl_past_window counts only "
          "the tokens beyond the window; ms per token early and late are medians over a budget's worth of steps just "
          "after the cache fills and at the end.",
          {{"method", "label", H::Text}, {"budget", "budget"}, {"stream", "stream_len"}, {"ppl", "ppl"},
           {"ppl past window", "ppl_past_window"}, {"ms/token", "ms_per_token"}, {"ms/token early", "ms_per_token_early"},
           {"ms/token late", "ms_per_token_late"}},
          {}}},
        {"evict_kept",
         {"Eviction: positions kept", "Which positions each policy held at the end of one stream.", {}, {}}},
        {"serving_timeline",
         {"Serving: KV memory over time", "The KV slots each policy reserved and those holding a token, step by step.", {}, {}}},
        {"roofline",
         {"Roofline",
          "Each measured phase placed against the machine's measured ceilings: arithmetic intensity (FLOPs per byte "
          "moved, from the cost model) against achieved GFLOP/s.",
          {{"phase", "phase", H::Text}, {"batch", "batch_size"}, {"context", "context"}, {"ms", "ms"},
           {"flop/byte", "intensity"}, {"GFLOP/s", "gflops"}, {"GB/s", "gbs"}, {"% peak FLOP/s", "pct_peak_flops"},
           {"% peak BW", "pct_peak_bw"}, {"bound", "bound", H::Text}, {"roofline tok/s", "roofline_tok_s"},
           {"% of roofline", "pct_roofline"}},
          {"phase", "batch_size", "context"}}},
    };
    return m;
}

std::string show(const Table& t, size_t r, const Col& c) {
    if (c.how == Col::How::Text) return t.cell(r, c.column);
    double v = 0;
    if (!parse_number(t.cell(r, c.column), &v)) return t.cell(r, c.column);
    return format_number(c.how == Col::How::MiB ? v / MiB : v);
}

// Rows sorted by `order`: "-col" sorts descending; numbers numerically, text as text.
std::vector<size_t> ordered(const Table& t, const std::vector<std::string>& order) {
    std::vector<size_t> rows = t.all_rows();
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        bool desc = it->front() == '-';
        std::string col = desc ? it->substr(1) : *it;
        if (!t.has(col)) continue;
        std::stable_sort(rows.begin(), rows.end(), [&](size_t a, size_t b) {
            double x, y;
            bool num = parse_number(t.cell(a, col), &x) && parse_number(t.cell(b, col), &y);
            bool less = num ? x < y : t.cell(a, col) < t.cell(b, col);
            bool more = num ? y < x : t.cell(b, col) < t.cell(a, col);
            return desc ? more : less;
        });
    }
    return rows;
}

Block table_block(const Table& t, const Experiment& e) {
    Block b{Block::Kind::Table};
    std::vector<Col> cols;
    for (const Col& c : e.cols)
        if (t.has(c.column)) cols.push_back(c);
    for (const Col& c : cols) b.header.push_back(c.label);
    for (size_t r : ordered(t, e.order)) {
        std::vector<std::string> row;
        for (const Col& c : cols) row.push_back(show(t, r, c));
        b.rows.push_back(row);
    }
    return b;
}

// cache_tokens.csv has a row per step: show step 0, 1, 2, 4, 8, ... and the last, both modes side by side.
Block token_table(const Table& t) {
    Block b{Block::Kind::Table};
    b.header = {"step", "token ms (cache)", "token ms (no cache)", "cumulative ms (cache)", "cumulative ms (no cache)"};
    std::vector<std::string> steps = t.distinct(t.all_rows(), "step");
    std::vector<std::string> pick;
    for (size_t i = 0; i < steps.size(); ++i) {
        double s = 0;
        parse_number(steps[i], &s);
        bool pow2 = s >= 1 && (long(s) & (long(s) - 1)) == 0;
        if (s == 0 || pow2 || i + 1 == steps.size()) pick.push_back(steps[i]);
    }
    for (const std::string& s : pick) {
        std::vector<std::string> row = {s};
        for (const char* col : {"token_ms", "cumulative_ms"})
            for (const char* mode : {"1", "0"}) {
                std::vector<size_t> m = t.where({{"use_cache", mode}, {"step", s}});
                row.push_back(m.empty() ? "" : format_number(t.num(m[0], col)));
            }
        b.rows.push_back(row);
    }
    return b;
}

// "batch_size 1, prompt_len 64, ..." for the configuration columns that are the same in every row.
std::string fixed_setup(const Table& t) {
    static const std::vector<std::string> cols = {"model", "weights", "dtype", "kv_dtype", "batch_size", "prompt_len",
                                                  "max_new_tokens", "use_cache", "padding", "threads", "warmup", "reps"};
    std::string s;
    for (const std::string& c : cols) {
        if (!t.has(c)) continue;
        std::vector<std::string> d = t.distinct(t.all_rows(), c);
        if (d.size() == 1) s += (s.empty() ? "" : ", ") + c + " " + d[0];
    }
    return s;
}

// ---- the sections ---------------------------------------------------------------------------------

void model_section(const Results& res, Document& doc) {
    doc.push_back(section("Model", "model"));
    const json& m = res.model;
    Block t{Block::Kind::Table};
    t.key_value = true;
    t.header = {"", "value"};
    auto row = [&](const std::string& label, const char* key) {
        if (!m.is_object() || !m.contains(key)) return;
        const json& v = m[key];
        std::string s = v.is_string() ? v.get<std::string>() : v.dump();
        if (std::string(key) == "n_params" && v.is_number())
            s = fmt::format("{} ({:.1f} M)", v.dump(), v.get<double>() / 1e6);
        t.rows.push_back({label, s});
    };
    row("name", "name");
    row("weights", "weights");
    row("architecture", "arch");
    row("model_type", "model_type");
    row("tokenizer", "tokenizer");
    row("layers (n_layer)", "n_layer");
    row("hidden size (n_embd)", "n_embd");
    row("attention heads (n_head)", "n_head");
    row("KV heads (n_kv_head)", "n_kv_head");
    row("head_dim", "head_dim");
    row("MLP size (n_ff)", "n_ff");
    row("vocabulary (n_vocab)", "n_vocab");
    row("context (n_ctx)", "n_ctx");
    row("parameters", "n_params");
    row("directory", "dir");
    if (t.rows.empty()) {
        doc.push_back(para("No sidecar JSON (`<experiment>.json`) carries the model configuration. From the CSVs: model " +
                           res.model_name() + (res.synthetic() ? ", synthetic weights." : ".")));
        return;
    }
    doc.push_back(t);
    auto num = [&](const char* k) { return m.contains(k) && m[k].is_number_integer() ? m[k].get<int64_t>() : int64_t(0); };
    const int64_t L = num("n_layer"), nh = num("n_head"), nkv = num("n_kv_head"), hd = num("head_dim");
    if (L > 0 && nh > 0 && nkv > 0 && hd > 0) {
        const int64_t per = 2 * L * nkv * hd;
        std::string text = fmt::format(
            "KV cache per token: 2 (K and V) x n_layer {} x n_kv_head {} x head_dim {} = {} values, {} bytes in fp32 "
            "and {} in fp16/bf16.",
            L, nkv, hd, per, per * 4, per * 2);
        if (nkv < nh)
            text += fmt::format(" Grouped-query attention: {} query heads share each KV head, so the cache is {}x "
                                "smaller ({:.0f}% less) than the same model with n_kv_head = n_head = {} ({} bytes per "
                                "token in fp32).",
                                nh / nkv, nh / nkv, 100.0 * (1.0 - double(nkv) / double(nh)), nh, 2 * L * nh * hd * 4);
        else
            text += " Every query head has its own KV head (multi-head attention): n_kv_head = n_head.";
        doc.push_back(para(text));
    }
    const json& sm = res.sample;
    if (sm.is_object() && sm.contains("text") && sm["text"].is_string()) {
        doc.push_back(para(fmt::format("What the model writes (greedy, {} new tokens after \"{}\"){}:",
                                       sm.value("tokens", 0), sm.value("prompt", std::string()),
                                       res.synthetic() ? ", from synthetic weights, so not meaningful text" : "")));
        Block code{Block::Kind::Code, sm["text"].get<std::string>()};
        doc.push_back(code);
    }
}

void hardware_section(const Results& res, Document& doc) {
    doc.push_back(section("Hardware", "hardware"));
    if (!res.hw) {
        doc.push_back(para("No sidecar JSON carries a hardware description (`hw`); the CSVs name the CPU: " + res.cpu() + "."));
        return;
    }
    const analysis::HwInfo& hw = *res.hw;
    Block t{Block::Kind::Table};
    t.key_value = true;
    t.header = {"", "value"};
    auto range = [](const analysis::Measure& m, const char* unit) {
        return fmt::format("{} {} median (min {}, max {}, {} reps)", format_number(m.median), unit, format_number(m.min),
                           format_number(m.max), m.reps);
    };
    t.rows.push_back({"CPU", hw.cpu_model});
    t.rows.push_back({"cores / threads", fmt::format("{} / {}", hw.cores, hw.threads)});
    t.rows.push_back({"L1d / L2 / L3 (per instance)", fmt::format("{} / {} / {}", bytes_text(double(hw.l1d_bytes)),
                                                                   bytes_text(double(hw.l2_bytes)), bytes_text(double(hw.l3_bytes)))});
    t.rows.push_back({"caches", hw.cache_note});
    t.rows.push_back({"RAM", bytes_text(double(hw.ram_bytes))});
    t.rows.push_back({"ISA used", hw.isa});
    if (hw.measured_threads > 0) {
        t.rows.push_back({fmt::format("read bandwidth, {} threads", hw.measured_threads),
                          range(hw.bw_gbs_all, "GB/s") + fmt::format(", {} stream(s)/thread", hw.bw_best_streams)});
        t.rows.push_back({"read bandwidth, 1 thread", range(hw.bw_gbs_1t, "GB/s")});
        t.rows.push_back({fmt::format("peak fp32 FMA, {} threads", hw.measured_threads), range(hw.gflops_all, "GFLOP/s")});
        t.rows.push_back({"peak fp32 FMA, 1 thread", range(hw.gflops_1t, "GFLOP/s")});
        t.rows.push_back({"ridge point", format_number(hw.ridge_flop_per_byte()) + " FLOP/byte (peak GFLOP/s / peak GB/s, medians)"});
        t.rows.push_back({"measured", hw.measured_at + (hw.quick ? " (quick mode: small buffer, few repetitions)" : "")});
    } else {
        t.rows.push_back({"measured", "no: static description only"});
    }
    doc.push_back(t);
    doc.push_back(para("From `" + res.hw_source + "`. Bandwidth and FLOP/s are measured on this machine by `kvscope hw`, "
                       "not taken from a datasheet; on shared machines they drift, hence the spread."));
}

std::string experiment_title(const std::string& name) {
    return experiments().at(name).title + " (" + name + ".csv)";
}

void findings_section(const std::vector<Finding>& findings, Document& doc) {
    doc.push_back(section("Findings", "findings"));
    if (findings.empty()) {
        doc.push_back(para("The CSVs present hold too few rows for any finding."));
        return;
    }
    doc.push_back(para("Computed from the CSVs when this report was made. Every number below is listed in `findings.json` "
                       "with the file, row and column it was read from (or the cells a ratio was computed from)."));
    for (const std::string& name : experiment_names()) {
        Block list{Block::Kind::List};
        for (const Finding& f : findings)
            if (f.experiment == name) list.items.push_back(f.text);
        if (list.items.empty()) continue;
        doc.push_back({Block::Kind::Subsection, experiment_title(name)});
        doc.push_back(list);
    }
}

void experiment_section(const Results& res, const std::string& name, const PlotSet& plots, Document& doc) {
    const Experiment& e = experiments().at(name);
    doc.push_back(section(experiment_title(name), "exp-" + name));
    const Table* t = res.table(name);
    for (const Skipped& s : plots.skipped)
        if (s.experiment == name && !t)
            doc.push_back(para(fmt::format("Not run: `{}.csv` is absent from the results directory, so its table and plots "
                                           "({}) are skipped.",
                                           name, s.plots)));
    if (!t) return;
    std::string what = e.what;
    if ((name == "quant" || name == "evict" || name == "evict_long") && res.synthetic())
        what += " The weights are synthetic: random weights lack a trained model's attention patterns and "
                "outliers, so these accuracy figures say little about a real model's.";
    std::string setup = fixed_setup(*t);
    if (!setup.empty()) what += " Same in every row: " + setup + ".";
    doc.push_back(para(what));
    doc.push_back(name == "cache_tokens" ? token_table(*t) : table_block(*t, e));
    for (const PlotInfo& p : plots.plots)
        if (p.experiment == name) {
            Block f{Block::Kind::Figure, p.heading};
            f.plot = p.name;
            f.caption = p.caption;
            doc.push_back(f);
        }
    for (const Skipped& s : plots.skipped)
        if (s.experiment == name) doc.push_back(para(fmt::format("Plot skipped ({}): {}.", s.plots, s.reason)));
}

std::string distinct_values(const Results& res, const char* column) {
    std::vector<std::string> all;
    for (const auto& [name, t] : res.tables)
        if (t.has(column))
            for (const std::string& v : t.distinct(t.all_rows(), column))
                if (std::find(all.begin(), all.end(), v) == all.end()) all.push_back(v);
    std::string s;
    for (const std::string& v : all) s += (s.empty() ? "" : " or ") + v;
    return s.empty() ? "?" : s;
}

void methodology_section(const Results& res, Document& doc) {
    doc.push_back(section("Methodology", "methodology"));
    Block l{Block::Kind::List};
    l.items.push_back(fmt::format("Warm-up and repetitions: each measured configuration ran {} untimed warm-up run(s), then {} "
                                  "timed repetitions (the warmup and reps columns), with {} OpenMP thread(s).",
                                  distinct_values(res, "warmup"), distinct_values(res, "reps"), distinct_values(res, "threads")));
    l.items.push_back("Statistics: a time is the median over repetitions; per-step decode figures pool every decode step of "
                      "every repetition and report the median (p50), the 95th percentile (linear interpolation between "
                      "closest ranks) and the sample standard deviation. Medians and p95, not means: one preempted step "
                      "should not move the headline number.");
    l.items.push_back("Interleaving: configurations that are compared with each other are measured alternately, repetition "
                      "by repetition, rather than one after the other, so slow drift of clock speed and memory bandwidth "
                      "(other tenants, thermal limits) lands on both sides alike.");
    l.items.push_back("Prefill and decode are timed separately: the first token includes the prompt's prefill; decode steps "
                      "produce one token per sequence each. tokens_per_s is tokens generated over total time (the seed "
                      "scripts' definition); decode_tok_s counts decode steps only.");
    l.items.push_back("KV bytes: kv_bytes is counted by the cache's own allocator, kv_bytes_theory is the formula "
                      "2 x batch x S x n_layer x n_kv_head x head_dim x bytes per element; they are computed independently.");
    l.items.push_back("What RSS shows: peak_rss_bytes is the process's high-water mark of resident pages (VmHWM). It includes "
                      "the weights only as far as their pages were touched (memory-mapped safetensors are counted once, when "
                      "read, and shared with the page cache), activations, the KV cache, and memory the allocator keeps after "
                      "a free for reuse (so RSS rarely goes down between configurations run in one process). It does not show "
                      "memory allocated but never written, and shared pages (libraries, the mapped weight file) are counted "
                      "in full by every process that maps them. kv_rss_delta_bytes, the growth of VmRSS when the cache was "
                      "allocated and touched, moves in whole pages and is blurred by memory the allocator already held: "
                      "trust it for large caches, not small ones.");
    l.items.push_back("Roofline: FLOPs and bytes per step come from the cost model; the ceilings (peak_gbs, peak_gflops) are "
                      "measured by kvscope hw on this machine; the ridge point is their ratio. A phase whose intensity is "
                      "below the ridge cannot beat the bandwidth ceiling, however fast the arithmetic.");
    if (res.synthetic())
        l.items.push_back("Synthetic weights: the model's shapes are exact, its weights are seeded random numbers. Speed and "
                          "memory do not depend on weight values; generated text and accuracy figures do.");
    doc.push_back(l);
}

void files_section(const Results& res, Document& doc) {
    doc.push_back(section("Files", "files"));
    Block t{Block::Kind::Table};
    t.header = {"file", "rows", "command", "created"};
    for (const std::string& name : experiment_names()) {
        const Table* tb = res.table(name);
        if (!tb) continue;
        std::string cmd, created;
        auto it = res.sidecars.find(name);
        if (it != res.sidecars.end()) {
            if (it->second.contains("command") && it->second["command"].is_string()) cmd = it->second["command"];
            if (it->second.contains("created") && it->second["created"].is_string()) created = it->second["created"];
        }
        t.rows.push_back({tb->file(), std::to_string(tb->size()), cmd, created});
    }
    doc.push_back(t);
    doc.push_back(para("Plots are in `plots/`: for each, the PNG, the SVG, the data extracted from the CSV (`.dat`) and the "
                       "gnuplot script that drew them (`.gp`; run `gnuplot NAME.gp` in that directory to redraw). "
                       "`findings.json` traces every number of the findings to its CSV cell."));
}

Document build_document(const Results& res, const std::vector<Finding>& findings, const PlotSet& plots) {
    Document doc;
    doc.push_back({Block::Kind::Title, "kvscope report: " + res.model_name() + " on " + res.cpu()});
    if (res.synthetic())
        doc.push_back({Block::Kind::Note,
                       "**These results were measured with synthetic weights**: seeded random numbers in the exact shapes of " +
                           res.model_name() +
                           ", not the pretrained checkpoint. Timing and memory are real, because they do not depend on weight "
                           "values; generated text and the accuracy numbers (KL, top1 agreement, greedy match) are not those "
                           "of the pretrained model."});
    std::string present;
    for (const auto& name : experiment_names())
        if (res.table(name)) present += (present.empty() ? "" : ", ") + ("`" + name + ".csv`");
    doc.push_back(para(fmt::format("Made by `kvscope report` (build {}) on {} from `{}`: {}.", build_commit(), utc_now(),
                                   res.dir.string(), present)));
    findings_section(findings, doc);
    model_section(res, doc);
    hardware_section(res, doc);
    for (const std::string& name : experiment_names())
        if (name == "serving_timeline" || name == "evict_kept") continue;  // drawn in their experiment's section
        // quant and evict are not in study: a section only when their CSVs are there.
        else if ((name != "quant" && name != "evict" && name != "evict_long") || res.table(name))
            experiment_section(res, name, plots, doc);
    methodology_section(res, doc);
    files_section(res, doc);
    return doc;
}

}  // namespace

ReportSummary make_report(const fs::path& results_dir) {
    Results res = load_results(results_dir);
    std::vector<Finding> findings = compute_findings(res);
    PlotSet plots = render_plots(res);
    Document doc = build_document(res, findings, plots);
    std::string md = render_markdown(doc);
    std::string html = render_html(doc, results_dir / "plots");
    std::string fj = findings_to_json(findings).dump(2) + "\n";

    ReportSummary s;
    s.html = results_dir / "report.html";
    s.markdown = results_dir / "report.md";
    s.findings = results_dir / "findings.json";
    // All three are written before any is renamed into place.
    AtomicFile f_md(s.markdown), f_html(s.html), f_json(s.findings);
    f_md.write(md);
    f_html.write(html);
    f_json.write(fj);
    f_json.commit();
    f_md.commit();
    f_html.commit();

    s.plots = int(plots.plots.size());
    for (const PlotInfo& p : plots.plots) s.plots_redrawn += p.redrawn;
    s.n_findings = int(findings.size());
    for (const Skipped& k : plots.skipped) s.skipped.push_back(fmt::format("{}: {} ({})", k.experiment, k.reason, k.plots));
    return s;
}

void write_report(const fs::path& results_dir) { make_report(results_dir); }

}  // namespace kvscope::report
