#include "runtime/server.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "core/error.h"
#include "kv/kv_codec.h"

namespace kvscope {

Server::Server(const Weights& w, const ServeOptions& opt) : w_(w), opt_(opt) {
    const ModelConfig& c = w.config();
    const SchedulerConfig& sc = opt.sched;
    if (sc.max_len > c.n_ctx)
        fail("--max-len {}: exceeds the model's context window of {} positions", sc.max_len, c.n_ctx);
    if (opt.kv.windowed())
        fail("KV format {}: serving takes fp32, fp16, bf16 and per-token integer codecs (no window, sinks or "
             "per-channel keys)", kv_format_name(opt.kv));
    Scheduler probe(sc);  // validates the budget against the policy
    const int lanes = sc.lanes();
    KvShape ks{c.n_layer, lanes, c.n_kv_head, sc.max_len, c.head_dim, opt.kv};
    if (sc.policy != ServePolicy::Static) {
        ks.block_tokens = sc.block_tokens;
        ks.n_blocks = sc.n_blocks();
    }
    cache_ = std::make_unique<KvCache>(ks);
    const int max_tok = sc.step_tokens;
    const int max_out = std::min(lanes, max_tok);
    model_ = w.make_forward(max_tok, max_out, sc.max_len);
    logits_.assign(size_t(max_out) * size_t(c.n_vocab), 0.0f);
    tok_.resize(size_t(max_tok));
    seq_.resize(size_t(max_tok));
    slot_.resize(size_t(max_tok));
    pos_.resize(size_t(max_tok));
    out_.resize(size_t(max_out));
}

ServeResult Server::run(const std::vector<TraceRequest>& trace) {
    const ModelConfig& c = w_.config();
    using clock = std::chrono::steady_clock;
    std::vector<size_t> order(trace.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return trace[a].arrival_s < trace[b].arrival_s; });
    for (const TraceRequest& r : trace)
        for (int32_t t : r.prompt)
            if (t < 0 || t >= c.n_vocab) fail("trace: token id {} is outside the vocabulary (0..{})", t, c.n_vocab - 1);

    Scheduler sched(opt_.sched);
    cache_->set_tables(sched.tables());
    Sampler sampler(c.n_vocab, opt_.sampling);
    std::vector<std::mt19937_64> rng;
    std::vector<size_t> trace_of;  // scheduler request -> trace index
    ServeResult res;
    res.requests.resize(trace.size());
    for (size_t i = 0; i < trace.size(); i++) {
        res.requests[i].arrival_s = trace[i].arrival_s;
        res.requests[i].prompt_len = int(trace[i].prompt.size());
        res.prompt_tokens += int64_t(trace[i].prompt.size());
    }
    std::vector<int32_t> sampled;
    std::vector<int> got;
    double now = trace.empty() ? 0 : trace[order[0]].arrival_s;
    const double start = now;
    double weight_sum = 0, reserved_sum = 0, held_sum = 0;
    size_t next = 0;
    while (next < order.size() || !sched.idle()) {
        while (next < order.size() && trace[order[next]].arrival_s <= now) {
            const TraceRequest& r = trace[order[next]];
            sched.add(r.prompt, r.max_new);
            trace_of.push_back(order[next]);
            rng.emplace_back(opt_.sampling.seed * 0x9E3779B97F4A7C15ull + uint64_t(order[next]) + 1);
            next++;
        }
        if (sched.idle()) {  // nothing to run until the next arrival
            now = trace[order[next]].arrival_s;
            continue;
        }
        const auto t0 = clock::now();
        const Scheduler::Plan& plan = sched.schedule();
        res.max_running = std::max(res.max_running, sched.n_running());
        if (plan.items.empty()) fail("internal: the scheduler planned nothing with {} requests waiting", sched.n_waiting());
        for (const KvBlockTables::Copy& cp : plan.copies) cache_->copy_block(cp.src, cp.dst);
        int n_tok = 0, n_out = 0, decodes = 0;
        for (const Scheduler::Item& it : plan.items) {
            const Scheduler::Request& q = sched.request(it.req);
            for (int j = it.first; j < it.first + it.n; j++) {
                tok_[size_t(n_tok)] = q.tokens[size_t(j)];
                seq_[size_t(n_tok)] = it.lane;
                slot_[size_t(n_tok)] = j;
                pos_[size_t(n_tok)] = j;
                n_tok++;
            }
            if (it.logits) out_[size_t(n_out++)] = n_tok - 1;
            if (it.n == 1 && it.first >= q.prompt_len) decodes++;
        }
        Ubatch ub;
        ub.n_tok = n_tok;
        ub.token = tok_.data();
        ub.seq = seq_.data();
        ub.slot = slot_.data();
        ub.pos = pos_.data();
        ub.n_out = n_out;
        ub.out_idx = out_.data();
        model_->forward(ub, *cache_, sched.seqs(), logits_.data());
        sampled.clear();
        int o = 0;
        for (const Scheduler::Item& it : plan.items)
            if (it.logits) {
                sampled.push_back(sampler.sample(logits_.data() + size_t(o) * size_t(c.n_vocab), rng[size_t(it.req)]));
                o++;
            }
        // The plan is overwritten by the next schedule(): note which requests got a token first.
        got.clear();
        for (const Scheduler::Item& it : plan.items)
            if (it.logits) got.push_back(it.req);
        sched.commit(sampled, opt_.stop_at_eos ? c.eos_id : -1);
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        now += dt;
        for (int r : got) {
            const Scheduler::Request& q = sched.request(r);
            RequestRecord& rec = res.requests[trace_of[size_t(r)]];
            if (q.generated == 1 && rec.n_out == 0) rec.first_token_s = now;
            rec.n_out = q.generated;
            if (q.finished) rec.finish_s = now;
        }
        TimelinePoint p;
        p.t_s = now - start;
        p.step_ms = dt * 1e3;
        p.tokens = plan.tokens;
        p.decodes = decodes;
        p.running = sched.n_running();
        p.waiting = sched.n_waiting();
        p.reserved_tokens = sched.reserved_tokens();
        p.held_tokens = sched.held_tokens();
        res.timeline.push_back(p);
        weight_sum += dt;
        reserved_sum += dt * double(p.reserved_tokens);
        held_sum += dt * double(p.held_tokens);
        res.steps++;
    }
    for (int r = 0; r < sched.n_requests(); r++) {
        const Scheduler::Request& q = sched.request(r);
        RequestRecord& rec = res.requests[trace_of[size_t(r)]];
        rec.tokens.assign(q.tokens.begin() + q.prompt_len, q.tokens.end());
        rec.prefix_reused = q.prefix_reused;
        rec.preemptions = q.preemptions;
        res.output_tokens += q.generated;
    }
    res.makespan_s = now - start;
    res.preemptions = sched.preemptions();
    res.prefix_tokens_reused = sched.prefix_tokens_reused();
    res.block_evictions = sched.pool() ? sched.pool()->evictions() : 0;
    if (weight_sum > 0) {
        res.mean_reserved_tokens = reserved_sum / weight_sum;
        res.mean_held_tokens = held_sum / weight_sum;
        res.waste = reserved_sum > 0 ? 1.0 - held_sum / reserved_sum : 0;
    }
    cache_->set_tables(nullptr);
    return res;
}

}  // namespace kvscope
