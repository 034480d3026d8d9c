// A request trace served by continuous batching (scheduler.h) on one engine: one forward per
// step over the tokens the scheduler picked, K/V in the cache layout the policy needs
// (contiguous lanes for static reservation, a block pool for paged and prefix).
//
// Time is the engine's own: the clock advances by each step's measured duration (schedule,
// forward, sampling, bookkeeping), and jumps to the next arrival when nothing is left to run,
// so a trace at any request rate runs as fast as the machine computes it, and each request's
// latencies are what a server on this machine would have given it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "arch/forward.h"
#include "kv/kv_cache.h"
#include "model/weights.h"
#include "runtime/sampler.h"
#include "runtime/scheduler.h"

namespace kvscope {

struct ServeOptions {
    SchedulerConfig sched;
    KvFormat kv = DType::F32;
    SamplingParams sampling;    // each request draws from its own generator, seeded by (seed, request)
    bool stop_at_eos = false;   // traces fix each request's output length, as serving benchmarks do
};

struct TraceRequest {
    double arrival_s = 0;
    std::vector<int32_t> prompt;
    int max_new = 1;
};

struct RequestRecord {
    double arrival_s = 0, first_token_s = 0, finish_s = 0;
    int prompt_len = 0, n_out = 0, prefix_reused = 0, preemptions = 0;
    std::vector<int32_t> tokens;  // generated
    double ttft_ms() const { return (first_token_s - arrival_s) * 1e3; }
    double e2e_ms() const { return (finish_s - arrival_s) * 1e3; }
    // Time per output token after the first; 0 for a single-token request.
    double tpot_ms() const { return n_out > 1 ? (finish_s - first_token_s) * 1e3 / (n_out - 1) : 0; }
};

// The state after one step.
struct TimelinePoint {
    double t_s = 0, step_ms = 0;
    int tokens = 0, decodes = 0, running = 0, waiting = 0;
    int64_t reserved_tokens = 0, held_tokens = 0;
};

struct ServeResult {
    std::vector<RequestRecord> requests;  // trace order
    std::vector<TimelinePoint> timeline;
    double makespan_s = 0;  // first arrival to last finish
    int max_running = 0;
    int64_t steps = 0, preemptions = 0, prefix_tokens_reused = 0, prompt_tokens = 0, output_tokens = 0;
    int64_t block_evictions = 0;
    // Time-weighted over the steps: KV slots reserved and holding a token, and the waste 1 - held / reserved.
    double mean_reserved_tokens = 0, mean_held_tokens = 0, waste = 0;
};

class Server {
public:
    // Allocates the cache for the policy's layout and the forward's scratch; fails with a
    // one-line error for a KV format the policy cannot serve.
    Server(const Weights& w, const ServeOptions& opt);
    // Runs the trace (any order of arrivals) from an empty cache.
    ServeResult run(const std::vector<TraceRequest>& trace);

    int64_t kv_bytes() const { return cache_->bytes_allocated(); }
    const ServeOptions& options() const { return opt_; }

private:
    const Weights& w_;
    ServeOptions opt_;
    std::unique_ptr<KvCache> cache_;
    std::unique_ptr<Forward> model_;
    std::vector<float> logits_;
    std::vector<int32_t> tok_;
    std::vector<int> seq_, slot_, pos_, out_;
};

}  // namespace kvscope
