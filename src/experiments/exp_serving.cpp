// Serving: one request trace through three KV memory policies on the same engine and KV budget
// (runtime/scheduler.h): static reservation of max_len per request, paged blocks, and paged
// blocks with prefix sharing; continuous batching in all three. Per policy and request rate:
// throughput, TTFT, TPOT and end-to-end latency percentiles, the largest concurrency, and the KV
// slots reserved against those holding a token over time (serving_timeline.csv).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "analysis/process.h"
#include "core/error.h"
#include "experiments/experiments.h"
#include "experiments/trace.h"
#include "kv/kv_codec.h"
#include "report/csv.h"
#include "runtime/server.h"

namespace kvscope::exp {

namespace {

struct Run {
    ServePolicy policy;
    double rate;  // requests/s (0: all at once)
    ServeResult res;
    int64_t peak_rss = 0;
};

double pct(std::vector<double> v, double p) { return v.empty() ? 0 : percentile(std::move(v), p); }

}  // namespace

void run_serving(Context& ctx, const Grid& grid) {
    const ServingGrid& g = grid.serving;
    Model& m = ctx.model(DType::F32);
    const ModelConfig& c = m.cfg;
    const DType wdt = grid.weight_dtypes.empty() ? DType::F32 : grid.weight_dtypes[0];
    Model& mw = ctx.model(wdt);
    const KvFormat kv = grid.kv_dtypes.empty() ? KvFormat(DType::F32) : grid.kv_dtypes[0];

    std::vector<ServePolicy> policies;
    for (const std::string& p : g.policies) policies.push_back(parse_serve_policy(p, "--policies"));
    if (policies.empty()) policies = {ServePolicy::Static, ServePolicy::Paged, ServePolicy::Prefix};

    // The trace: defaults scale with the context window (distilgpt2: 24 requests, a 128-token
    // system prompt, 32-128 more prompt tokens, 16-64 new tokens; the budget holds 4 requests of
    // the whole window).
    const int n_ctx = c.n_ctx;
    SchedulerConfig sc;
    sc.max_len = g.max_len > 0 ? g.max_len : n_ctx;
    sc.block_tokens = g.kv_block;
    sc.kv_tokens = g.kv_tokens > 0 ? g.kv_tokens : 2 * sc.max_len;
    sc.step_tokens = g.step_tokens > 0 ? g.step_tokens : 256;
    sc.max_seqs = g.max_seqs > 0 ? g.max_seqs : 64;
    if (sc.max_len > n_ctx) fail("--max-len {}: exceeds the model's context window of {} positions", sc.max_len, n_ctx);
    std::vector<TraceRow> rows;
    std::string trace_name;
    int system_prompt = 0;
    if (!g.trace.empty()) {
        rows = load_trace_csv(g.trace);
        trace_name = g.trace;
        for (const TraceRow& r : rows) system_prompt = std::max(system_prompt, r.shared_prefix_len);
    } else {
        TraceGen tg;
        tg.n_requests = g.requests > 0 ? g.requests : (ctx.quick ? 8 : 48);
        tg.prompt = g.prompt_lens.empty() ? LenRange{std::max(1, n_ctx / 32), std::max(1, n_ctx / 8)}
                                          : parse_len_range(g.prompt_lens, "--prompt-lens");
        tg.output = g.output_lens.empty() ? LenRange{std::max(1, n_ctx / 64), std::max(1, n_ctx / 16)}
                                          : parse_len_range(g.output_lens, "--output-lens");
        if (ctx.quick && g.prompt_lens.empty()) tg.prompt = {std::max(1, n_ctx / 64), std::max(1, n_ctx / 16)};
        if (ctx.quick && g.output_lens.empty()) tg.output = {std::max(1, n_ctx / 128), std::max(1, n_ctx / 32)};
        // --quick: at least two blocks, so that the prefix policy has something to share.
        tg.system_prompt = g.system_prompt >= 0 ? g.system_prompt
                                                : ctx.quick ? std::min(n_ctx / 4, std::max(2 * sc.block_tokens, n_ctx / 16))
                                                            : n_ctx / 8;
        tg.seed = g.seed;
        rows = generate_trace(tg);
        trace_name = "generated trace";
        system_prompt = tg.system_prompt;
    }
    // Validate every row against the budget before anything runs.
    const std::vector<TraceRequest> base = trace_requests(rows, m.tokenizer.get(), c, sc.max_len, trace_name, g.seed);

    std::vector<Server> servers;
    servers.reserve(policies.size());
    for (ServePolicy p : policies) {
        ServeOptions so;
        so.sched = sc;
        so.sched.policy = p;
        so.kv = kv;
        servers.emplace_back(*mw.weights, so);
    }
    auto trace_at = [&](double rate) {
        std::vector<TraceRequest> t = base;
        if (!g.trace.empty() && rate < 0) return t;  // the CSV's own arrivals
        const std::vector<TraceRow> timed = with_rate(rows, rate, g.seed);
        for (size_t i = 0; i < t.size(); i++) t[i].arrival_s = timed[i].arrival_s;
        return t;
    };
    // Warm-up: a few requests through every server (first touches, thread start-up), untimed.
    {
        std::vector<TraceRequest> w(base.begin(), base.begin() + std::min<size_t>(base.size(), 2));
        for (TraceRequest& r : w) r.max_new = std::min(r.max_new, 4);
        for (Server& s : servers) s.run(w);
    }

    // The system prompt's own prefill: what prefix sharing can save each request.
    double sys_prefill_ms = 0;
    if (system_prompt > 0) {
        size_t j = 0;
        while (rows[j].shared_prefix_len != system_prompt) j++;
        const std::vector<int32_t> sys(base[j].prompt.begin(), base[j].prompt.begin() + system_prompt);
        EngineOptions eo;
        eo.max_prompt = system_prompt;
        eo.kv_dtype = kv;
        Engine e(*mw.weights, eo);
        GenerateOptions go;
        go.max_new_tokens = 1;
        go.stop_at_eos = false;
        std::vector<double> ms;
        for (int i = 0; i < 3; i++) ms.push_back(e.generate({sys}, go).prefill_ms);
        sys_prefill_ms = summarize(ms).median;
    }

    // Rates: the user's, the CSV's own arrivals, or fractions of what the first paged policy
    // sustains with every request waiting at the start.
    std::vector<double> rates = g.rates;
    double capacity = 0;
    if (rates.empty() && !g.trace.empty()) rates = {-1};
    if (rates.empty()) {
        size_t probe = 0;
        for (size_t i = 0; i < policies.size(); i++)
            if (policies[i] != ServePolicy::Static) {
                probe = i;
                break;
            }
        std::fprintf(stderr, "[exp serving] measuring capacity: %zu requests at once, %s\n", base.size(),
                     serve_policy_name(policies[probe]));
        const ServeResult r = servers[probe].run(trace_at(0));
        capacity = r.makespan_s > 0 ? double(base.size()) / r.makespan_s : 1;
        for (double f : ctx.quick ? std::vector<double>{0.5, 1.0} : std::vector<double>{0.25, 0.5, 0.75, 1.0})
            rates.push_back(capacity * f);
    }

    Progress progress("serving", int(rates.size() * policies.size()));
    std::vector<Run> runs;
    int done = 0;
    for (double rate : rates)
        for (size_t i = 0; i < policies.size(); i++) {  // policies alternate within a rate: drift falls on all
            progress.update(done++, fmt::format("{} at {} req/s", serve_policy_name(policies[i]),
                                                rate < 0 ? std::string("the trace's") : fmt::format("{:.3g}", rate)));
            reset_peak_rss();
            Run r{policies[i], rate, servers[i].run(trace_at(rate)), 0};
            r.peak_rss = peak_rss_bytes();
            runs.push_back(std::move(r));
        }
    progress.finish();

    std::vector<std::string> header = common_columns();
    header.insert(header.end(),
                  {"policy", "rate_req_s", "capacity_req_s", "requests", "kv_tokens", "kv_block", "max_len",
                   "step_tokens", "lanes", "system_prompt", "system_prompt_prefill_ms", "throughput_req_s",
                   "output_tok_s", "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p90",
                   "tpot_ms_p99", "e2e_ms_p50", "e2e_ms_p90", "e2e_ms_p99", "max_running", "mean_reserved_tokens",
                   "mean_held_tokens", "waste_pct", "peak_reserved_tokens", "preemptions", "prefix_tokens_reused",
                   "prompt_tokens", "output_tokens", "makespan_s", "steps"});
    std::vector<std::vector<std::string>> out;
    std::vector<std::vector<std::string>> timeline;
    for (size_t k = 0; k < runs.size(); k++) {
        const Run& r = runs[k];
        const ServeResult& s = r.res;
        const Server& srv = servers[k % policies.size()];
        std::vector<double> ttft, tpot, e2e;
        for (const RequestRecord& q : s.requests) {
            ttft.push_back(q.ttft_ms());
            e2e.push_back(q.e2e_ms());
            if (q.n_out > 1) tpot.push_back(q.tpot_ms());
        }
        // The common columns, read for a trace: one "repetition", TTFT as the prefill, steps as decode.
        Spec spec;
        spec.weights = wdt;
        spec.kv = kv;
        int max_out = 0;
        for (const TraceRequest& q : base) {
            spec.prompts.push_back(q.prompt);
            max_out = std::max(max_out, q.max_new);
        }
        spec.new_tokens = max_out;
        Result res;
        res.reps.resize(1);
        res.warmup = 1;
        res.prefill_ms = summarize(ttft);
        std::vector<double> steps;
        double dec_ms = 0, dec_tok = 0;
        int64_t peak_reserved = 0;
        for (const TimelinePoint& p : s.timeline) {
            steps.push_back(p.step_ms);
            if (p.tokens == p.decodes) {  // decode-only steps
                dec_ms += p.step_ms;
                dec_tok += p.decodes;
            }
            peak_reserved = std::max(peak_reserved, p.reserved_tokens);
        }
        res.step_ms = summarize(steps);
        res.decode_tok_s = dec_ms > 0 ? dec_tok / (dec_ms / 1e3) : 0;
        res.total_ms = summarize({s.makespan_s * 1e3});
        res.tokens_per_s = s.makespan_s > 0 ? double(s.output_tokens) / s.makespan_s : 0;
        res.tokens_generated = s.output_tokens;
        res.kv_bytes = srv.kv_bytes();
        res.kv_theory = srv.kv_bytes();
        res.weight_bytes = mw.weights->bytes();
        res.peak_rss = r.peak_rss;
        std::vector<std::string> row = common_row(ctx, "serving", spec, res);
        const SchedulerConfig& cfg = srv.options().sched;
        double span = 0;  // a CSV trace's own rate: requests over its arrival span
        for (const TraceRow& t : rows) span = std::max(span, t.arrival_s);
        const std::string rate = fmt_num(r.rate >= 0 ? r.rate : span > 0 ? double(base.size()) / span : 0);
        row.insert(row.end(),
                   {serve_policy_name(r.policy), rate,
                    fmt_num(capacity), std::to_string(base.size()), std::to_string(cfg.kv_tokens),
                    std::to_string(cfg.block_tokens), std::to_string(cfg.max_len), std::to_string(cfg.step_tokens),
                    std::to_string(cfg.lanes()), std::to_string(system_prompt), fmt_num(sys_prefill_ms),
                    fmt_num(s.makespan_s > 0 ? double(base.size()) / s.makespan_s : 0), fmt_num(res.tokens_per_s),
                    fmt_num(pct(ttft, 50)), fmt_num(pct(ttft, 90)), fmt_num(pct(ttft, 99)), fmt_num(pct(tpot, 50)),
                    fmt_num(pct(tpot, 90)), fmt_num(pct(tpot, 99)), fmt_num(pct(e2e, 50)), fmt_num(pct(e2e, 90)),
                    fmt_num(pct(e2e, 99)), std::to_string(s.max_running), fmt_num(s.mean_reserved_tokens),
                    fmt_num(s.mean_held_tokens), fmt_num(100 * s.waste), std::to_string(peak_reserved),
                    std::to_string(s.preemptions), std::to_string(s.prefix_tokens_reused),
                    std::to_string(s.prompt_tokens), std::to_string(s.output_tokens), fmt_num(s.makespan_s),
                    std::to_string(s.steps)});
        out.push_back(row);
        for (const TimelinePoint& p : s.timeline)
            timeline.push_back({serve_policy_name(r.policy), rate, fmt_num(p.t_s),
                                fmt_num(p.step_ms), std::to_string(p.tokens), std::to_string(p.decodes),
                                std::to_string(p.running), std::to_string(p.waiting), std::to_string(p.reserved_tokens),
                                std::to_string(p.held_tokens)});
    }
    write_results(ctx, "serving", header, out);
    write_csv(ctx.out_dir / "serving_timeline.csv",
              {"policy", "rate_req_s", "t_s", "step_ms", "tokens", "decodes", "running", "waiting", "reserved_tokens",
               "held_tokens"},
              timeline);
}

}  // namespace kvscope::exp
