// The sweep harness every experiment shares: a grid of configurations, each warmed up and
// then repeated in interleaved order (rep 1 of every configuration, then rep 2, ...), so slow
// drift of the machine (bandwidth here moves by tens of percent over minutes) spreads over all
// configurations instead of biasing the last ones. Engines are built per run outside the timed
// region; peak RSS is reset before each setup, so memory columns belong to that configuration.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/hw.h"
#include "analysis/stats.h"
#include "model/loader.h"
#include "runtime/engine.h"

namespace kvscope::exp {

struct Context {
    std::string model_spec = "distilgpt2";
    std::string tokenizer;  // --tokenizer ("" = the model's own)
    std::filesystem::path out_dir = "results";
    int threads = 0;
    int reps = 5;
    int warmup = 1;
    bool quick = false;
    double max_config_seconds = 60;  // repetitions of one configuration stop at this budget (at least 1)
    std::string command;             // the command line, recorded in sidecars
    analysis::HwInfo hw;

    // Loaded once per weight dtype.
    Model& model(DType weights);
    // The fp32 model's greedy continuation of a fixed prompt, for the report to show what the
    // model writes: {"prompt", "text", "tokens"}; null without a tokenizer. Made once.
    const nlohmann::json& sample();

private:
    std::map<DType, std::unique_ptr<Model>> models_;
    std::unique_ptr<nlohmann::json> sample_;
};

struct Spec {
    DType weights = DType::F32;
    KvFormat kv = DType::F32;
    std::vector<std::vector<int32_t>> prompts;  // one per sequence: batch = prompts.size()
    int new_tokens = 32;   // slots reserved per sequence beyond the prompt
    int gen_tokens = -1;   // tokens actually generated (-1: new_tokens); fewer only to size a cache cheaply
    bool use_cache = true;
    bool left_pad = false;
    int batch() const { return int(prompts.size()); }
    int max_prompt() const;
};

struct Result {
    std::vector<GenerateResult> reps;
    int warmup = 0;
    int64_t kv_bytes = 0, kv_theory = 0, scratch_bytes = 0, weight_bytes = 0;
    int64_t peak_rss = 0, rss_after_setup = 0, kv_rss_delta = 0;
    Summary prefill_ms, step_ms, total_ms;
    double decode_tok_s = 0;   // median over reps
    double tokens_per_s = 0;   // median over reps
    int64_t tokens_generated = 0;
    std::vector<double> decode_ms_by_rep;  // median step ms of each rep
};

// Progress on stderr: "[exp cache] 3/12 configurations, rep 2/5, 14 s elapsed, ~40 s left".
class Progress {
public:
    Progress(std::string name, int total_runs);
    void update(int done_runs, const std::string& what);
    void finish();

private:
    std::string name_;
    int total_;
    double t0_;
    bool tty_;
};

// Measures every spec: warmup runs, then reps in interleaved order. before_round, when set,
// runs before each round of repetitions (one run of every spec), e.g. to sample the
// machine's bandwidth in the middle of the measurement.
// One sequence's continuation of `prompt`: n new tokens (fewer if the context ends first, or at
// EOS when stop_at_eos), with the fp32 cache.
std::vector<int32_t> continuation(const Model& m, const std::vector<int32_t>& prompt, int n, const SamplingParams& sp,
                                  bool stop_at_eos);

std::vector<Result> measure(Context& ctx, const std::string& name, const std::vector<Spec>& grid,
                            const std::function<void()>& before_round = {});

// The columns every experiment CSV starts with (docs/SCHEMA.md) and their values for one row.
std::vector<std::string> common_columns();
std::vector<std::string> common_row(Context& ctx, const std::string& experiment, const Spec& s, const Result& r);

// results/<name>.csv and results/<name>.json (hardware, model, command), both atomically.
void write_results(Context& ctx, const std::string& name, const std::vector<std::string>& header,
                   const std::vector<std::vector<std::string>>& rows);

std::string fmt_num(double v);   // shortest faithful text for a CSV cell
void reset_peak_rss();           // /proc/self/clear_refs: VmHWM := VmRSS

}  // namespace kvscope::exp
