// `kvscope report` on a results directory written here, following docs/SCHEMA.md, with numbers
// shaped like distilgpt2's on a small CPU: every plot is a valid PNG and SVG, a changed CSV
// redraws its plots (and only those), every number of findings.json is the CSV cell it names
// and appears in report.md, absent CSVs are said to be absent, bad input fails with one line
// and leaves no half-written report, and report.html renders in headless Chromium.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <map>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <set>

#include "analysis/hw.h"
#include "core/fs.h"
#include "report/csv.h"
#include "report/plots.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// ---- a results directory ------------------------------------------------------------------

const std::vector<std::string> kCommon = {
    "experiment",       "commit",          "cpu",           "threads",          "model",          "weights",
    "n_params",         "dtype",           "kv_dtype",      "batch_size",       "prompt_len",     "max_new_tokens",
    "use_cache",        "reps",            "warmup",        "prefill_ms_median", "prefill_ms_p95", "prefill_ms_std",
    "decode_ms_median", "decode_ms_p50",   "decode_ms_p95", "decode_ms_std",    "decode_tok_s",   "total_ms_median",
    "total_ms_p95",     "tokens_per_s",    "tokens_generated", "kv_bytes",      "kv_bytes_theory", "weight_bytes",
    "scratch_bytes",    "peak_rss_bytes"};

constexpr const char* kCpu = "AMD EPYC 7B13 64-Core Processor";
constexpr int64_t kParams = 81912576;
constexpr int64_t kKvPerToken = 2 * 6 * 12 * 64 * 4;  // distilgpt2, fp32

std::string n(double v) { return fmt::format("{:.6g}", v); }

using Row = std::map<std::string, std::string>;

// A row of the common columns with plausible defaults; `set` overrides and extends it.
Row common(const std::string& experiment, const Row& set) {
    Row r = {{"experiment", experiment}, {"commit", "abc1234"}, {"cpu", kCpu}, {"threads", "2"}, {"model", "distilgpt2"},
             {"weights", "synthetic"}, {"n_params", std::to_string(kParams)}, {"dtype", "fp32"}, {"kv_dtype", "fp32"},
             {"batch_size", "1"}, {"prompt_len", "32"}, {"max_new_tokens", "64"}, {"use_cache", "1"}, {"reps", "5"},
             {"warmup", "1"}, {"prefill_ms_median", "41.2"}, {"prefill_ms_p95", "43.0"}, {"prefill_ms_std", "0.8"},
             {"decode_ms_median", "12.5"}, {"decode_ms_p50", "12.5"}, {"decode_ms_p95", "13.4"}, {"decode_ms_std", "0.4"},
             {"decode_tok_s", "80"}, {"total_ms_median", "800"}, {"total_ms_p95", "820"}, {"tokens_per_s", "80"},
             {"tokens_generated", "64"}, {"kv_bytes", "0"}, {"kv_bytes_theory", "0"}, {"weight_bytes", std::to_string(kParams * 4)},
             {"scratch_bytes", "1048576"}, {"peak_rss_bytes", "420000000"}};
    for (const auto& [k, v] : set) r[k] = v;
    return r;
}

void write_rows(const fs::path& p, const std::vector<std::string>& header, const std::vector<Row>& rows) {
    std::vector<std::vector<std::string>> out;
    for (const Row& r : rows) {
        std::vector<std::string> line;
        for (const std::string& h : header) line.push_back(r.count(h) ? r.at(h) : "");
        out.push_back(line);
    }
    write_csv(p, header, out);
}

std::vector<std::string> with(std::vector<std::string> h, const std::vector<std::string>& extra) {
    h.insert(h.end(), extra.begin(), extra.end());
    return h;
}

void write_sidecar(const fs::path& dir, const std::string& experiment) {
    analysis::HwInfo hw;
    hw.cpu_model = kCpu;
    hw.cores = 1;
    hw.threads = 2;
    hw.l1d_bytes = 32 * 1024;
    hw.l1i_bytes = 32 * 1024;
    hw.l2_bytes = 512 * 1024;
    hw.l3_bytes = 32 * 1024 * 1024;
    hw.cache_note = "L1d 32 KiB x1, L2 512 KiB x1, L3 32 MiB shared";
    hw.ram_bytes = int64_t(8) << 30;
    hw.isa = "AVX2 FMA F16C";
    hw.measured_threads = 2;
    hw.bw_gbs_1t = {14.1, 13.8, 13.2, 14.1, 7};
    hw.bw_gbs_all = {20.3, 20.0, 18.9, 20.3, 7};
    hw.bw_best_streams = 2;
    hw.bw_1t_by_streams = {{1, hw.bw_gbs_1t}};
    hw.bw_all_by_streams = {{2, hw.bw_gbs_all}};
    hw.gflops_1t = {126.0, 125.0, 120.0, 126.0, 7};
    hw.gflops_all = {251.0, 250.0, 240.0, 251.0, 7};
    hw.measured_at = "2025-03-01T09:30:12.345Z";
    json j = {{"experiment", experiment},
              {"command", "kvscope exp " + experiment + " --model distilgpt2"},
              {"created", "2025-03-01T10:00:00Z"},
              {"model", {{"name", "distilgpt2"}, {"dir", "/tmp/distilgpt2"}, {"weights", "synthetic"}, {"n_layer", 6},
                         {"n_embd", 768}, {"n_head", 12}, {"n_kv_head", 12}, {"head_dim", 64}, {"n_ff", 3072},
                         {"n_vocab", 50257}, {"n_ctx", 1024}, {"n_params", kParams}}},
              {"hw", analysis::to_json(hw)}};
    write_file_atomic(dir / (experiment + ".json"), j.dump(2));
}

// Step times of a 32-token prompt continued for L tokens: with the cache a step costs a little
// more as the cache deepens; without it, it recomputes the whole sequence.
double step_on(int pos) { return 12.0 + 0.01 * pos; }
double step_off(int pos) { return 10.0 + 0.35 * pos; }

void write_cache(const fs::path& dir) {
    std::vector<Row> rows;
    for (int L : {16, 32, 64, 128, 256}) {
        double on = 41.2, off = 41.2;
        for (int i = 1; i < L; ++i) {
            on += step_on(32 + i);
            off += step_off(32 + i);
        }
        double speedup = off / on;
        for (int mode : {1, 0}) {
            double total = mode ? on : off;
            double last = mode ? step_on(32 + L - 1) : step_off(32 + L - 1);
            rows.push_back(common("cache", {{"max_new_tokens", std::to_string(L)}, {"use_cache", std::to_string(mode)},
                                            {"tokens_generated", std::to_string(L)}, {"total_ms_median", n(total)},
                                            {"total_ms_p95", n(total * 1.03)}, {"tokens_per_s", n(1000.0 * L / total)},
                                            {"decode_ms_median", n(mode ? step_on(32 + L / 2) : step_off(32 + L / 2))},
                                            {"decode_ms_p50", n(mode ? step_on(32 + L / 2) : step_off(32 + L / 2))},
                                            {"decode_ms_p95", n(last * 0.98)}, {"decode_tok_s", n(1000.0 * (L - 1) / (total - 41.2))},
                                            {"kv_bytes", std::to_string(mode ? kKvPerToken * (32 + L) : 0)},
                                            {"kv_bytes_theory", std::to_string(mode ? kKvPerToken * (32 + L) : 0)},
                                            {"speedup", n(speedup)}, {"decode_ms_last", n(last)}}));
        }
    }
    write_rows(dir / "cache.csv", with(kCommon, {"speedup", "decode_ms_last"}), rows);
    write_sidecar(dir, "cache");
}

void write_cache_tokens(const fs::path& dir) {
    std::vector<Row> rows;
    for (int mode : {1, 0}) {
        double cum = 0;
        for (int step = 0; step < 128; ++step) {
            double ms = step == 0 ? 41.2 : (mode ? step_on(32 + step) : step_off(32 + step)) + 0.3 * std::sin(step * 1.7);
            cum += ms;
            rows.push_back({{"use_cache", std::to_string(mode)}, {"step", std::to_string(step)}, {"token_ms", n(ms)},
                            {"cumulative_ms", n(cum)}});
        }
    }
    write_rows(dir / "cache_tokens.csv", {"use_cache", "step", "token_ms", "cumulative_ms"}, rows);
}

void write_batch(const fs::path& dir) {
    std::vector<Row> rows;
    const std::vector<std::pair<int, double>> steps = {{1, 13.0}, {2, 14.1}, {4, 16.5}, {8, 24.0}, {16, 44.0}};
    for (auto [b, ms] : steps) {
        std::string lens;
        for (int i = 0; i < b; ++i) lens += (i ? "/" : "") + std::to_string(8 << (i % 4));
        rows.push_back(common("batch", {{"batch_size", std::to_string(b)}, {"prompt_len", "64"}, {"decode_ms_median", n(ms)},
                                        {"decode_ms_p50", n(ms)}, {"decode_ms_p95", n(ms * 1.12)}, {"decode_tok_s", n(1000.0 * b / ms)},
                                        {"tokens_per_s", n(1000.0 * b / (ms * 1.1))}, {"tokens_generated", std::to_string(64 * b)},
                                        {"kv_bytes", std::to_string(kKvPerToken * 128 * b)},
                                        {"kv_bytes_theory", std::to_string(kKvPerToken * 128 * b)},
                                        {"peak_rss_bytes", std::to_string(400000000 + kKvPerToken * 128 * b + 3000000 * b)},
                                        {"padding", "left"}, {"prompt_lens", lens}, {"padded_tokens", std::to_string(3 * b)},
                                        {"seq_latency_ms_p50", n(ms)}, {"seq_latency_ms_p95", n(ms * 1.12)}}));
    }
    write_rows(dir / "batch.csv",
               with(kCommon, {"padding", "prompt_lens", "padded_tokens", "seq_latency_ms_p50", "seq_latency_ms_p95"}), rows);
    write_sidecar(dir, "batch");
}

void write_precision(const fs::path& dir) {
    std::vector<Row> rows;
    const std::map<std::string, double> speed = {{"fp32", 80.0}, {"fp16", 131.0}, {"bf16", 127.0}};
    const std::map<std::string, double> err = {{"fp32", 0.0}, {"fp16", 2.1e-6}, {"bf16", 3.4e-4}};
    for (const char* w : {"fp32", "fp16", "bf16"})
        for (const char* kv : {"fp32", "fp16", "bf16"}) {
            double e = err.at(w) + 0.3 * err.at(kv);
            bool ref = e == 0;
            double tok_s = speed.at(w) * (std::string(kv) == "fp32" ? 1.0 : 1.04);
            rows.push_back(common("precision", {{"dtype", w}, {"kv_dtype", kv}, {"decode_tok_s", n(tok_s)},
                                                {"weight_bytes", std::to_string(kParams * (std::string(w) == "fp32" ? 4 : 2))},
                                                {"kv_bytes", std::to_string(96 * kKvPerToken / (std::string(kv) == "fp32" ? 1 : 2))},
                                                {"max_abs_logit_diff", n(ref ? 0 : std::sqrt(e) * 4)}, {"kl_mean", n(e)},
                                                {"kl_max", n(e * 9)}, {"top1_agreement", n(ref ? 1 : 1 - std::sqrt(e) * 2)},
                                                {"greedy_match", n(ref ? 1 : e > 1e-4 ? 0.4375 : 1)}}));
        }
    write_rows(dir / "precision.csv",
               with(kCommon, {"max_abs_logit_diff", "kl_mean", "kl_max", "top1_agreement", "greedy_match"}), rows);
    write_sidecar(dir, "precision");
}

void write_seqlen(const fs::path& dir) {
    std::vector<Row> rows;
    for (int s : {32, 64, 128, 256, 512, 1024})
        for (int mode : {1, 0}) {
            int64_t theory = mode ? kKvPerToken * s : 0;
            int64_t rss = !mode ? 0 : s == 32 ? 0 : s == 64 ? 2101248 : theory + 8192;
            double ms = mode ? 12.0 + 0.004 * s : 10.0 + 0.35 * s;
            rows.push_back(common("seqlen", {{"use_cache", std::to_string(mode)}, {"prompt_len", std::to_string(s)},
                                             {"max_new_tokens", "16"}, {"decode_ms_median", n(ms)}, {"decode_ms_p50", n(ms)},
                                             {"decode_ms_p95", n(ms * 1.05)}, {"kv_bytes", std::to_string(theory)},
                                             {"kv_bytes_theory", std::to_string(theory)}, {"context", std::to_string(s)},
                                             {"kv_rss_delta_bytes", std::to_string(rss)}}));
        }
    write_rows(dir / "seqlen.csv", with(kCommon, {"context", "kv_rss_delta_bytes"}), rows);
    write_sidecar(dir, "seqlen");
}

void write_memory(const fs::path& dir) {
    std::vector<Row> rows;
    for (const char* kv : {"fp32", "fp16"})
        for (int s : {128, 512, 1024}) {
            int64_t theory = kKvPerToken * s / (std::string(kv) == "fp32" ? 1 : 2);
            rows.push_back(common("memory", {{"kv_dtype", kv}, {"kv_bytes", std::to_string(theory)},
                                             {"kv_bytes_theory", std::to_string(theory)}, {"context", std::to_string(s)},
                                             {"kv_rss_delta_bytes", std::to_string(theory + 4096 * (s / 128))},
                                             {"rss_bytes", std::to_string(360000000 + theory)}, {"kv_formula_matches", "1"}}));
        }
    write_rows(dir / "memory.csv", with(kCommon, {"context", "kv_rss_delta_bytes", "rss_bytes", "kv_formula_matches"}), rows);
    write_sidecar(dir, "memory");
}

void write_roofline(const fs::path& dir) {
    const double peak_gbs = 20.0, peak_gflops = 250.0, ridge = peak_gflops / peak_gbs;
    struct P {
        const char* phase;
        int batch, context;
        double intensity, gbs;
    };
    std::vector<Row> rows;
    for (P p : {P{"prefill", 1, 128, 58.0, 2.9}, P{"decode", 1, 128, 0.49, 15.2}, P{"decode", 4, 128, 1.9, 14.1},
                P{"decode", 16, 128, 6.8, 11.0}}) {
        double flops = 2.0 * kParams * (std::string(p.phase) == "prefill" ? p.context : p.batch);
        double bytes = flops / p.intensity, ms = bytes / p.gbs / 1e6, gflops = flops / ms / 1e6;
        double roof_ms = std::max(bytes / peak_gbs, flops / peak_gflops) / 1e6;
        int tokens = std::string(p.phase) == "prefill" ? p.context : p.batch;
        rows.push_back(common("roofline", {{"batch_size", std::to_string(p.batch)}, {"phase", p.phase},
                                           {"context", std::to_string(p.context)}, {"flops", n(flops)}, {"bytes", n(bytes)},
                                           {"intensity", n(p.intensity)}, {"ms", n(ms)}, {"gflops", n(gflops)}, {"gbs", n(p.gbs)},
                                           {"peak_gflops", n(peak_gflops)}, {"peak_gbs", n(peak_gbs)}, {"ridge", n(ridge)},
                                           {"pct_peak_flops", n(100 * gflops / peak_gflops)}, {"pct_peak_bw", n(100 * p.gbs / peak_gbs)},
                                           {"bound", p.intensity < ridge ? "memory" : "compute"},
                                           {"roofline_tok_s", n(tokens * 1000.0 / roof_ms)}, {"pct_roofline", n(100 * roof_ms / ms)}}));
    }
    write_rows(dir / "roofline.csv",
               with(kCommon, {"phase", "context", "flops", "bytes", "intensity", "ms", "gflops", "gbs", "peak_gflops", "peak_gbs",
                              "ridge", "pct_peak_flops", "pct_peak_bw", "bound", "roofline_tok_s", "pct_roofline"}),
               rows);
    write_sidecar(dir, "roofline");
}

// Three policies at three rates: static saturates first; prefix sharing saves most of a
// 64-token system prompt's prefill.
void write_serving(const fs::path& dir) {
    std::vector<Row> rows, tl;
    const std::vector<std::string> cols = {"policy", "rate_req_s", "capacity_req_s", "requests", "kv_tokens", "kv_block", "max_len",
                                           "step_tokens", "lanes", "system_prompt", "system_prompt_prefill_ms",
                                           "throughput_req_s", "output_tok_s", "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99",
                                           "tpot_ms_p50", "tpot_ms_p90", "tpot_ms_p99", "e2e_ms_p50", "e2e_ms_p90",
                                           "e2e_ms_p99", "max_running", "mean_reserved_tokens", "mean_held_tokens",
                                           "waste_pct", "peak_reserved_tokens", "preemptions", "prefix_tokens_reused",
                                           "prompt_tokens", "output_tokens", "makespan_s", "steps"};
    struct P {
        const char* policy;
        double waste, ttft_slope, save;
        int lanes, running;
    };
    for (P p : {P{"static", 71.5, 9.0, 0, 4, 4}, P{"paged", 4.2, 1.5, 0, 64, 11}, P{"prefix", 3.9, 1.4, 30, 64, 12}})
        for (double rate : {1.0, 2.0, 4.0}) {
            const double ttft50 = 60 - p.save + p.ttft_slope * rate * rate, ttft99 = 2 * ttft50;
            const double served = std::min(rate, p.lanes == 4 ? 2.2 : 3.6);
            rows.push_back(common("serving", {{"policy", p.policy}, {"rate_req_s", n(rate)}, {"capacity_req_s", "3.6"},
                                              {"requests", "24"}, {"batch_size", "24"}, {"kv_tokens", "4096"}, {"kv_block", "16"},
                                              {"max_len", "1024"}, {"step_tokens", "256"}, {"lanes", std::to_string(p.lanes)},
                                              {"system_prompt", "64"}, {"system_prompt_prefill_ms", "33.5"},
                                              {"throughput_req_s", n(served)}, {"output_tok_s", n(served * 40)},
                                              {"ttft_ms_p50", n(ttft50)}, {"ttft_ms_p90", n(1.6 * ttft50)}, {"ttft_ms_p99", n(ttft99)},
                                              {"tpot_ms_p50", "14.2"}, {"tpot_ms_p90", "16"}, {"tpot_ms_p99", "19"},
                                              {"e2e_ms_p50", n(ttft50 + 560)}, {"e2e_ms_p90", n(ttft50 + 800)},
                                              {"e2e_ms_p99", n(ttft99 + 900)}, {"max_running", std::to_string(p.running)},
                                              {"mean_reserved_tokens", n(p.lanes == 4 ? 3400 : 1500)},
                                              {"mean_held_tokens", n(p.lanes == 4 ? 3400 * (1 - p.waste / 100) : 1500 * (1 - p.waste / 100))},
                                              {"waste_pct", n(p.waste)}, {"peak_reserved_tokens", "4096"}, {"preemptions", "0"},
                                              {"prefix_tokens_reused", p.save > 0 ? "1472" : "0"}, {"prompt_tokens", "4200"},
                                              {"output_tokens", "960"}, {"makespan_s", n(24 / served)}, {"steps", "900"}}));
            for (int k = 0; k < 5; k++)
                tl.push_back({{"policy", p.policy}, {"rate_req_s", n(rate)}, {"t_s", n(0.5 * k)}, {"step_ms", "12"},
                              {"tokens", "8"}, {"decodes", "8"}, {"running", "3"}, {"waiting", "1"},
                              {"reserved_tokens", std::to_string(p.lanes == 4 ? 3072 : 800 + 16 * k)},
                              {"held_tokens", std::to_string(700 + 10 * k)}});
        }
    write_rows(dir / "serving.csv", with(kCommon, cols), rows);
    write_sidecar(dir, "serving");
    write_rows(dir / "serving_timeline.csv",
               {"policy", "rate_req_s", "t_s", "step_ms", "tokens", "decodes", "running", "waiting", "reserved_tokens",
                "held_tokens"},
               tl);
}

fs::path results_dir(const std::string& tag) {
    fs::path d = test::temp_dir("report-" + tag);
    write_cache(d);
    write_cache_tokens(d);
    write_batch(d);
    write_precision(d);
    write_seqlen(d);
    write_memory(d);
    write_roofline(d);
    write_serving(d);
    return d;
}

// Removes a test's directory when the test passed; a failing test leaves it for inspection.
struct RemoveIfPassed {
    fs::path dir;
    ~RemoveIfPassed() {
        std::error_code ec;
        if (!::testing::Test::HasFailure()) fs::remove_all(dir, ec);
    }
};

test::CmdResult run_report(const fs::path& dir) { return test::run_cmd(test::kvscope_bin() + " report --results " + dir.string()); }

// ---- file checks --------------------------------------------------------------------------

std::string slurp(const fs::path& p) { return read_file(p); }

// PNG: the 8-byte signature, then an IHDR chunk of 13 bytes with a non-zero width and height.
std::string png_problem(const fs::path& p) {
    if (!fs::exists(p)) return "missing";
    std::string s = slurp(p);
    if (s.size() < 33) return "too short";
    if (s.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return "no PNG signature";
    auto be32 = [&](size_t i) {
        return uint32_t(uint8_t(s[i])) << 24 | uint32_t(uint8_t(s[i + 1])) << 16 | uint32_t(uint8_t(s[i + 2])) << 8 | uint8_t(s[i + 3]);
    };
    if (be32(8) != 13 || s.compare(12, 4, "IHDR") != 0) return "first chunk is not IHDR";
    if (be32(16) == 0 || be32(20) == 0) return "zero width or height";
    if (s.find("IEND") == std::string::npos) return "no IEND chunk";
    return "";
}

// A small XML well-formedness check: declaration, comments, DOCTYPE, CDATA, elements with
// quoted attributes, matching end tags, entity references, one root. Returns the root's name,
// or "error: ..." when the text is not well-formed XML.
std::string xml_root(const std::string& s) {
    std::vector<std::string> stack;
    std::string root;
    size_t i = 0;
    auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '_' || c == '-' || c == '.'; };
    auto check_text = [&](size_t a, size_t b) -> std::string {
        for (size_t k = a; k < b; ++k)
            if (s[k] == '&') {
                size_t semi = s.find(';', k);
                if (semi == std::string::npos || semi - k > 10) return "bad entity reference";
                std::string ent = s.substr(k + 1, semi - k - 1);
                static const std::set<std::string> named = {"amp", "lt", "gt", "quot", "apos"};
                if (!named.count(ent) && !(ent.size() > 1 && ent[0] == '#')) return "unknown entity &" + ent + ";";
            }
        return "";
    };
    while (i < s.size()) {
        size_t lt = s.find('<', i);
        if (lt == std::string::npos) lt = s.size();
        if (auto e = check_text(i, lt); !e.empty()) return "error: " + e;
        if (stack.empty() && !root.empty())
            for (size_t k = i; k < lt; ++k)
                if (!std::isspace(static_cast<unsigned char>(s[k]))) return "error: text after the root element";
        if (lt == s.size()) break;
        if (s.compare(lt, 4, "<!--") == 0) {
            size_t e = s.find("-->", lt);
            if (e == std::string::npos) return "error: unterminated comment";
            i = e + 3;
        } else if (s.compare(lt, 9, "<![CDATA[") == 0) {
            size_t e = s.find("]]>", lt);
            if (e == std::string::npos) return "error: unterminated CDATA";
            i = e + 3;
        } else if (s.compare(lt, 2, "<?") == 0) {
            size_t e = s.find("?>", lt);
            if (e == std::string::npos) return "error: unterminated processing instruction";
            i = e + 2;
        } else if (s.compare(lt, 9, "<!DOCTYPE") == 0) {
            size_t k = lt + 9;
            int depth = 0;
            while (k < s.size() && !(s[k] == '>' && depth == 0)) depth += s[k] == '[' ? 1 : s[k] == ']' ? -1 : 0, ++k;
            if (k == s.size()) return "error: unterminated DOCTYPE";
            i = k + 1;
        } else if (s.compare(lt, 2, "</") == 0) {
            size_t k = lt + 2, b = k;
            while (k < s.size() && name_char(s[k])) ++k;
            std::string name = s.substr(b, k - b);
            while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
            if (k == s.size() || s[k] != '>') return "error: bad end tag " + name;
            if (stack.empty() || stack.back() != name) return "error: end tag " + name + " does not match";
            stack.pop_back();
            i = k + 1;
        } else {
            size_t k = lt + 1, b = k;
            while (k < s.size() && name_char(s[k])) ++k;
            std::string name = s.substr(b, k - b);
            if (name.empty()) return "error: empty tag name";
            if (stack.empty()) {
                if (!root.empty()) return "error: a second root element " + name;
                root = name;
            }
            std::set<std::string> attrs;
            for (;;) {
                while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
                if (k >= s.size()) return "error: unterminated tag " + name;
                if (s[k] == '>') {
                    stack.push_back(name);
                    ++k;
                    break;
                }
                if (s.compare(k, 2, "/>") == 0) {
                    k += 2;
                    break;
                }
                size_t ab = k;
                while (k < s.size() && name_char(s[k])) ++k;
                std::string an = s.substr(ab, k - ab);
                if (an.empty() || !attrs.insert(an).second) return "error: bad or repeated attribute in " + name;
                while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
                if (k >= s.size() || s[k] != '=') return "error: attribute " + an + " without a value";
                ++k;
                while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
                if (k >= s.size() || (s[k] != '"' && s[k] != '\'')) return "error: unquoted attribute " + an;
                char quote = s[k];
                size_t e = s.find(quote, k + 1);
                if (e == std::string::npos) return "error: unterminated attribute " + an;
                if (s.substr(k + 1, e - k - 1).find('<') != std::string::npos) return "error: '<' in attribute " + an;
                if (auto err = check_text(k + 1, e); !err.empty()) return "error: " + err;
                k = e + 1;
            }
            i = k;
        }
    }
    if (!stack.empty()) return "error: unclosed element " + stack.back();
    if (root.empty()) return "error: no root element";
    return root;
}

// The plots of the experiments `study` runs (quant and evict are run on their own).
std::vector<std::string> all_plot_names() {
    std::vector<std::string> out;
    for (const auto& [experiment, names] : report::plot_names())
        if (experiment != "quant" && experiment != "evict") out.insert(out.end(), names.begin(), names.end());
    return out;
}

// The numbers of a sentence, found independently of the report's own scanner: digits (with a
// fraction and an exponent) that do not continue a word such as "fp16" or "p95".
std::vector<std::string> numbers(const std::string& s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
            ++i;
            continue;
        }
        bool word = i > 0 && (std::isalnum(static_cast<unsigned char>(s[i - 1])) || std::strchr("_.-", s[i - 1]));
        size_t j = i;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1])))
            for (++j; j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]));) ++j;
        if (j + 1 < s.size() && (s[j] == 'e' || s[j] == 'E')) {
            size_t k = j + 1;
            if (s[k] == '-' || s[k] == '+') ++k;
            if (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k])))
                for (j = k; j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]));) ++j;
        }
        if (!word) out.push_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

// Half a unit in the last digit shown: "3.42" -> 0.005, "2.10e-06" -> 5e-9, "128" -> 0.5.
double rounding(const std::string& shown) {
    size_t e = shown.find_first_of("eE");
    std::string mant = shown.substr(0, e);
    int exp = e == std::string::npos ? 0 : std::stoi(shown.substr(e + 1));
    size_t dot = mant.find('.');
    int decimals = dot == std::string::npos ? 0 : int(mant.size() - dot - 1);
    return 0.5 * std::pow(10.0, exp - decimals);
}

// The CSV cell a findings.json reference names: exactly one row must match its key.
double csv_cell(const fs::path& dir, const json& ref) {
    auto rows = read_csv(dir / ref["file"].get<std::string>());
    const auto& header = rows.at(0);
    auto col = [&](const std::string& c) {
        auto it = std::find(header.begin(), header.end(), c);
        EXPECT_NE(it, header.end()) << c << " not in " << ref["file"];
        return size_t(it - header.begin());
    };
    std::vector<size_t> match;
    for (size_t r = 1; r < rows.size(); ++r) {
        bool ok = true;
        for (const auto& [k, v] : ref["row"].items()) ok = ok && rows[r][col(k)] == v.get<std::string>();
        if (ok) match.push_back(r);
    }
    EXPECT_EQ(match.size(), 1u) << ref.dump();
    if (match.size() != 1) return std::nan("");
    return std::stod(rows[match[0]][col(ref["column"])]);
}

// ---- shared fixture: one full report, made once ---------------------------------------------

class Report : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new fs::path(results_dir("full"));
        auto r = run_report(*dir_);
        status_ = r.status;
        out_ = new std::string(r.out + r.err);
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        if (!::testing::UnitTest::GetInstance()->current_test_suite()->Failed()) fs::remove_all(*dir_, ec);
        delete dir_;
        delete out_;
    }
    void SetUp() override { ASSERT_EQ(status_, 0) << *out_; }
    static fs::path* dir_;
    static int status_;
    static std::string* out_;
};
fs::path* Report::dir_ = nullptr;
int Report::status_ = -1;
std::string* Report::out_ = nullptr;

}  // namespace

// Every plot of a report directory is a valid PNG and SVG with its gnuplot script.
static void check_plots(const fs::path& dir) {
    for (const std::string& name : all_plot_names()) {
        fs::path png = dir / "plots" / (name + ".png"), svg = dir / "plots" / (name + ".svg");
        EXPECT_EQ(png_problem(png), "") << png;
        ASSERT_TRUE(fs::exists(svg)) << svg;
        EXPECT_EQ(xml_root(slurp(svg)), "svg") << svg;
        EXPECT_TRUE(fs::exists(dir / "plots" / (name + ".gp"))) << name;
    }
    for (const char* f : {"report.html", "report.md", "findings.json"}) EXPECT_TRUE(fs::exists(dir / f)) << f;
}

TEST_F(Report, EveryPlotIsAValidPngAndSvg) {
    check_plots(*dir_);
    // Titles name the model, its synthetic weights and the CPU.
    std::string svg = slurp(*dir_ / "plots" / "cache_ms_per_token.svg");
    EXPECT_NE(svg.find("distilgpt2 (synthetic weights)"), std::string::npos);
    EXPECT_NE(svg.find(kCpu), std::string::npos);
}

TEST_F(Report, MarkdownHasTheSectionsTablesAndSyntheticNote) {
    std::string md = slurp(*dir_ / "report.md");
    EXPECT_NE(md.find("synthetic weights"), std::string::npos);
    EXPECT_NE(md.find("Timing and memory are real"), std::string::npos);
    for (const char* s : {"## Model", "## Hardware", "## Findings", "## Methodology", "| layers (n_layer) | 6 |",
                          "| hidden size (n_embd) | 768 |", "| head_dim | 64 |", "81912576", "20 GB/s median",
                          "250 GFLOP/s median", kCpu})
        EXPECT_NE(md.find(s), std::string::npos) << s;
    EXPECT_NE(md.find("12.5 FLOP/byte"), std::string::npos) << "ridge point = 250 / 20";
    for (const std::string& name : all_plot_names()) EXPECT_NE(md.find("plots/" + name + ".png"), std::string::npos) << name;
    EXPECT_NE(md.find("VmHWM"), std::string::npos);  // the methodology says what RSS is
}

// Each number quoted in the findings is the CSV cell it names (or a ratio of such cells), is
// shown in report.md, and every experiment has at least one finding.
static void check_findings(const fs::path& dir, size_t min_findings, int min_values) {
    json findings = json::parse(slurp(dir / "findings.json"));
    std::string md = slurp(dir / "report.md");
    ASSERT_TRUE(findings.is_array());
    ASSERT_GE(findings.size(), min_findings);
    std::set<std::string> experiments;
    int checked = 0;
    for (const json& f : findings) {
        std::string text = f["text"];
        experiments.insert(f["experiment"].get<std::string>());
        EXPECT_NE(md.find(text), std::string::npos) << "not in report.md: " << text;
        std::set<std::string> shown;
        for (const json& v : f["values"]) {
            std::string s = v["shown"];
            shown.insert(s);
            EXPECT_NE(text.find(s), std::string::npos) << s << " not in: " << text;
            double value = v["value"], scale = v["scale"];
            EXPECT_LE(std::fabs(std::stod(s) * scale - value), rounding(s) * scale * (1 + 1e-9) + 1e-12 * std::fabs(value))
                << s << " x " << scale << " vs " << value << " in: " << text;
            std::string kind = v["kind"];
            if (kind == "cell") {
                EXPECT_EQ(csv_cell(dir, v), value) << v.dump();
            } else if (kind == "derived") {
                std::vector<double> a;
                for (const json& arg : v["args"]) {
                    a.push_back(csv_cell(dir, arg));
                    EXPECT_EQ(a.back(), arg["value"].get<double>()) << arg.dump();
                }
                std::string op = v["op"];
                double expect = op == "ratio"          ? a.at(0) / a.at(1)
                                : op == "pct_diff"     ? 100 * std::fabs(a.at(0) - a.at(1)) / a.at(1)
                                : op == "diff"         ? a.at(0) - a.at(1)
                                : op == "per_doubling" ? std::pow(a.at(0) / a.at(1), 1 / std::log2(a.at(2) / a.at(3)))
                                                       : std::nan("");
                EXPECT_NEAR(value, expect, 1e-9 * std::fabs(expect)) << op << " in: " << text;
            } else {
                EXPECT_EQ(kind, "threshold");
                EXPECT_TRUE(value == 2 || value == 1.2 || value == 10) << value;
            }
            ++checked;
        }
        for (const std::string& num : numbers(text)) EXPECT_TRUE(shown.count(num)) << "untraced number " << num << " in: " << text;
    }
    EXPECT_GE(checked, min_values);
    for (const char* e : {"cache", "cache_tokens", "batch", "precision", "seqlen", "memory", "roofline", "serving"})
        EXPECT_TRUE(experiments.count(e)) << "no finding for " << e;
}

TEST_F(Report, EveryFindingNumberIsTheCsvCellItNames) { check_findings(*dir_, 15, 100); }

// The main job end to end on a tiny model: hw probe, every experiment, the report, from the
// rows the engine really measured (not fabricated CSVs).
TEST(Study, QuickRunsEveryExperimentAndWritesTheReport) {
    fs::path model = test::tiny_model_dir("study", test::tiny_config(96, 128));
    fs::path dir = test::temp_dir("study-quick");
    RemoveIfPassed cleanup{dir};
    auto r = test::run_cmd("XDG_CACHE_HOME=" + dir.string() + "/cache " + test::kvscope_bin() + " study --quick --model " +
                           model.string() + " --out " + dir.string() + "/results");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find(dir.string() + "/results/report.html"), std::string::npos) << r.out;
    for (const char* e : {"[exp cache]", "[exp batch]", "[exp precision]", "[exp seqlen]", "[exp memory]", "[exp roofline]",
                          "[exp serving]"})
        EXPECT_NE(r.err.find(e), std::string::npos) << "no progress for " << e;
    const fs::path res = dir / "results";
    for (const char* f : {"cache", "cache_tokens", "batch", "precision", "seqlen", "memory", "roofline", "serving",
                          "serving_timeline"})
        EXPECT_TRUE(fs::exists(res / (std::string(f) + ".csv"))) << f;
    check_plots(res);
    check_findings(res, 10, 30);
}

TEST_F(Report, FindingsAreReadOffTheNumbers) {
    std::string all;
    for (const json& f : json::parse(slurp(*dir_ / "findings.json"))) all += f["text"].get<std::string>() + "\n";
    // The first length whose speedup reaches 2x, found here from the CSV.
    auto rows = read_csv(*dir_ / "cache.csv");
    const auto& h = rows[0];
    auto col = [&](const char* c) { return size_t(std::find(h.begin(), h.end(), c) - h.begin()); };
    std::string first;
    for (size_t r = 1; r < rows.size() && first.empty(); ++r)
        if (rows[r][col("use_cache")] == "1" && std::stod(rows[r][col("speedup")]) >= 2) first = rows[r][col("max_new_tokens")];
    ASSERT_FALSE(first.empty());
    EXPECT_NE(all.find("first reaches 2x at " + first + " new tokens"), std::string::npos) << all;
    // Throughput gains 44/24 -> 16/8 * 24/44 = 1.09x from batch 8 to 16: below 1.2x.
    EXPECT_NE(all.find("stops scaling at batch 16: from batch 8 it gains only 1.09x per doubling (below 1.2x)"), std::string::npos)
        << all;
    EXPECT_NE(all.find("Decode at batch 1, context 128: 0.490 flop/byte is below the ridge of 12.5, so memory-bound"),
              std::string::npos)
        << all;
    EXPECT_NE(all.find("Prefill at batch 1, context 128: 58 flop/byte reaches the ridge of 12.5, so compute-bound"),
              std::string::npos)
        << all;
    EXPECT_NE(all.find("equals the formula (kv_bytes_theory) at every context"), std::string::npos) << all;
    EXPECT_NE(all.find("agrees with the formula within 10% at context 128, 256, 512, 1024 and not at 32, 64"), std::string::npos) << all;
}

TEST(ReportRun, ChangedCsvRedrawsOnlyItsPlots) {
    fs::path d = results_dir("redraw");
    RemoveIfPassed cleanup{d};
    ASSERT_EQ(run_report(d).status, 0);
    std::string before = slurp(d / "plots" / "cache_speedup.png");
    std::string before_svg = slurp(d / "plots" / "cache_speedup.svg");
    auto batch_time = fs::last_write_time(d / "plots" / "batch_throughput.png");

    // Triple every speedup in cache.csv.
    auto rows = read_csv(d / "cache.csv");
    size_t c = size_t(std::find(rows[0].begin(), rows[0].end(), "speedup") - rows[0].begin());
    for (size_t r = 1; r < rows.size(); ++r) rows[r][c] = n(std::stod(rows[r][c]) * 3);
    write_csv(d / "cache.csv", rows[0], {rows.begin() + 1, rows.end()});

    auto r = run_report(d);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(slurp(d / "plots" / "cache_speedup.png"), before);
    EXPECT_NE(slurp(d / "plots" / "cache_speedup.svg"), before_svg);
    EXPECT_EQ(png_problem(d / "plots" / "cache_speedup.png"), "");
    EXPECT_EQ(fs::last_write_time(d / "plots" / "batch_throughput.png"), batch_time) << "an unchanged CSV's plot was redrawn";
    EXPECT_NE(r.out.find("redrawn"), std::string::npos);
    // The findings moved with the data: at 16 new tokens the speedup is now above 2x.
    std::string all = slurp(d / "findings.json");
    EXPECT_NE(all.find("first reaches 2x at 16 new tokens"), std::string::npos);
}

TEST(ReportRun, AbsentCsvSkipsItsPlotsAndSaysSo) {
    fs::path d = results_dir("absent");
    RemoveIfPassed cleanup{d};
    fs::remove(d / "precision.csv");
    fs::remove(d / "precision.json");
    fs::remove(d / "cache_tokens.csv");
    auto r = run_report(d);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(fs::exists(d / "plots" / "precision_speed.png"));
    EXPECT_FALSE(fs::exists(d / "plots" / "cache_tokens_latency.png"));
    EXPECT_EQ(png_problem(d / "plots" / "roofline.png"), "");
    std::string md = slurp(d / "report.md");
    EXPECT_NE(md.find("`precision.csv` is absent"), std::string::npos);
    EXPECT_NE(md.find("precision_speed, precision_error"), std::string::npos);
    EXPECT_NE(md.find("`cache_tokens.csv` is absent"), std::string::npos);
    EXPECT_EQ(md.find("plots/precision_speed.png"), std::string::npos);
    EXPECT_NE(r.out.find("skipped"), std::string::npos);
}

TEST(ReportRun, BadInputFailsWithOneLineAndNoHalfWrittenReport) {
    auto expect_error = [](const test::CmdResult& r, std::vector<std::string> needles) {
        EXPECT_NE(r.status, 0);
        std::string e = r.err;
        while (!e.empty() && e.back() == '\n') e.pop_back();
        EXPECT_EQ(e.find('\n'), std::string::npos) << r.err;
        for (const auto& n : needles) EXPECT_NE(e.find(n), std::string::npos) << "'" << n << "' not in: " << e;
    };
    fs::path missing = test::temp_dir("report-missing") / "nope";
    RemoveIfPassed c1{missing.parent_path()}, c2{test::temp_dir("report-empty")};
    expect_error(run_report(missing), {"nope", "does not exist"});
    expect_error(run_report(test::temp_dir("report-empty")), {"no result CSV"});

    // A good report first; then a broken CSV must leave it exactly as it was.
    fs::path d = results_dir("bad");
    RemoveIfPassed c3{d};
    ASSERT_EQ(run_report(d).status, 0);
    std::string html = slurp(d / "report.html"), md = slurp(d / "report.md"), fj = slurp(d / "findings.json");
    std::string good_batch = slurp(d / "batch.csv");

    std::string short_row = good_batch.substr(0, good_batch.rfind(',', good_batch.size() - 2)) + "\n";  // last row loses a field
    write_file_atomic(d / "batch.csv", short_row);
    expect_error(run_report(d), {"batch.csv", "line 6", "fields"});

    std::string not_num = good_batch;
    size_t at = not_num.find("\n") + 1;
    at = not_num.find(kCpu, at);
    ASSERT_NE(at, std::string::npos);
    not_num.replace(not_num.find(",2,", at), 3, ",two,");  // threads column
    write_file_atomic(d / "batch.csv", not_num);
    expect_error(run_report(d), {"batch.csv", "line 2", "'threads'", "not a number"});

    write_file_atomic(d / "batch.csv", good_batch);
    write_file_atomic(d / "memory.json", "{\"model\": ");
    expect_error(run_report(d), {"memory.json", "not valid JSON"});
    write_sidecar(d, "memory");

    std::string cache = slurp(d / "cache.csv");
    write_file_atomic(d / "cache.csv", cache.substr(0, cache.find('\n') + 1));
    expect_error(run_report(d), {"cache.csv", "no rows"});

    EXPECT_EQ(slurp(d / "report.html"), html);
    EXPECT_EQ(slurp(d / "report.md"), md);
    EXPECT_EQ(slurp(d / "findings.json"), fj);
    for (const auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();

    // A fresh directory with a bad CSV gets no report at all.
    fs::path fresh = test::temp_dir("report-bad-fresh");
    RemoveIfPassed c4{fresh};
    write_file_atomic(fresh / "batch.csv", short_row);
    expect_error(run_report(fresh), {"batch.csv"});
    EXPECT_FALSE(fs::exists(fresh / "report.html"));
    EXPECT_FALSE(fs::exists(fresh / "report.md"));
    EXPECT_FALSE(fs::exists(fresh / "findings.json"));
}

TEST_F(Report, HtmlRendersOfflineInHeadlessChromium) {
    if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "/usr/bin/chromium is absent: bash scripts/setup_report_deps.sh installs it";
    if (test::run_cmd("command -v node").status != 0) GTEST_SKIP() << "node is absent: bash scripts/setup_report_deps.sh installs it";
    fs::path pw = fs::path(test::source_dir()) / "third_party/npm/node_modules/playwright-core";
    ASSERT_TRUE(fs::exists(pw)) << pw << " is missing: run bash scripts/setup_report_deps.sh";
    std::string html = slurp(*dir_ / "report.html");
    EXPECT_EQ(html.find("<script"), std::string::npos);
    EXPECT_EQ(html.find("src=\"http"), std::string::npos);
    fs::path shot = *dir_ / "report-screenshot.png";
    auto r = test::run_cmd("timeout 180 node " + test::source_dir() + "/tools/check_report.js " + (*dir_ / "report.html").string() +
                           " " + shot.string());
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    json j = json::parse(r.out);
    EXPECT_TRUE(j["ok"].get<bool>()) << r.out;
    EXPECT_EQ(j["images"].get<size_t>(), all_plot_names().size()) << r.out;
    EXPECT_TRUE(j["broken"].empty()) << r.out;
    EXPECT_TRUE(j["errors"].empty()) << r.out;
    EXPECT_EQ(png_problem(shot), "");
    EXPECT_GT(j["height"].get<int>(), 3000);
}
