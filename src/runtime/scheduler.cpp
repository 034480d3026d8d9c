#include "runtime/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace kvscope {

const char* serve_policy_name(ServePolicy p) {
    switch (p) {
        case ServePolicy::Static: return "static";
        case ServePolicy::Paged: return "paged";
        case ServePolicy::Prefix: return "prefix";
    }
    return "?";
}

ServePolicy parse_serve_policy(const std::string& s, const std::string& flag) {
    if (s == "static") return ServePolicy::Static;
    if (s == "paged") return ServePolicy::Paged;
    if (s == "prefix") return ServePolicy::Prefix;
    fail("{} '{}': expected static, paged or prefix", flag, s);
}

int SchedulerConfig::lanes() const { return policy == ServePolicy::Static ? kv_tokens / std::max(max_len, 1) : max_seqs; }
int SchedulerConfig::n_blocks() const { return kv_tokens / std::max(block_tokens, 1); }

Scheduler::Scheduler(const SchedulerConfig& cfg) : cfg_(cfg) {
    if (cfg.max_len < 2) fail("--max-len {}: expected at least 2 tokens per request", cfg.max_len);
    if (cfg.step_tokens < 1) fail("--step-tokens {}: expected at least 1 token per step", cfg.step_tokens);
    if (cfg.max_seqs < 1) fail("--max-seqs {}: expected at least 1 running request", cfg.max_seqs);
    if (cfg.kv_tokens < 1) fail("--kv-tokens {}: expected a positive KV budget in tokens", cfg.kv_tokens);
    if (paged()) {
        if (cfg.block_tokens < 1) fail("--kv-block {}: expected a positive number of tokens per block", cfg.block_tokens);
        const int need = (cfg.max_len + cfg.block_tokens - 1) / cfg.block_tokens;
        if (cfg.n_blocks() < need)
            fail("--kv-tokens {}: {} blocks of {} tokens; one request of --max-len {} needs {}", cfg.kv_tokens,
                 cfg.n_blocks(), cfg.block_tokens, cfg.max_len, need);
        pool_ = std::make_unique<KvBlockPool>(cfg.n_blocks(), cfg.block_tokens);
        tables_ = std::make_unique<KvBlockTables>(pool_.get(), cfg.lanes(), cfg.max_len);
        fill_.resize(size_t(cfg.n_blocks()));
    } else if (cfg.lanes() < 1) {
        fail("--kv-tokens {}: the static policy reserves --max-len {} slots per request; the budget holds none",
             cfg.kv_tokens, cfg.max_len);
    }
    seqs_ = std::make_unique<KvSeqs>(cfg.lanes(), cfg.max_len);
    for (int l = cfg.lanes() - 1; l >= 0; l--) free_lanes_.push_back(l);
}

int Scheduler::add(std::vector<int32_t> prompt, int max_new) {
    const int id = int(reqs_.size());
    if (prompt.empty()) fail("request {}: empty prompt", id);
    if (max_new < 1) fail("request {}: {} new tokens; expected at least 1", id, max_new);
    if (int(prompt.size()) + max_new > cfg_.max_len)
        fail("request {}: {} prompt + {} new tokens exceed --max-len {}", id, prompt.size(), max_new, cfg_.max_len);
    Request q;
    q.prompt_len = int(prompt.size());
    q.tokens = std::move(prompt);
    q.tokens.reserve(size_t(q.prompt_len + max_new));
    q.max_new = max_new;
    reqs_.push_back(std::move(q));
    waiting_.push_back(id);
    return id;
}

bool Scheduler::reserve(int r, int n) {
    const Request& q = reqs_[size_t(r)];
    if (paged()) {
        KvBlockTables::Copy cp{};
        if (!tables_->append(q.lane, n, &cp)) return false;
        if (cp.src >= 0) plan_.copies.push_back(cp);
    }
    if (!seqs_->append(q.lane, n)) fail("internal: lane {} cannot take {} more slots", q.lane, n);
    return true;
}

void Scheduler::release(int r) {
    Request& q = reqs_[size_t(r)];
    if (paged()) tables_->release(q.lane);
    seqs_->clear(q.lane);
    free_lanes_.push_back(q.lane);
    q.lane = -1;
    running_.erase(std::find(running_.begin(), running_.end(), r));
}

void Scheduler::preempt(int r) {
    release(r);
    Request& q = reqs_[size_t(r)];
    q.computed = 0;
    q.preemptions++;
    preemptions_++;
    waiting_.push_front(r);
}

void Scheduler::add_item(int r, int n) {
    Request& q = reqs_[size_t(r)];
    const bool logits = q.computed + n == int(q.tokens.size());
    plan_.items.push_back({r, q.lane, q.computed, n, logits});
    q.computed += n;
    plan_.tokens += n;
    plan_.n_logits += logits ? 1 : 0;
}

const Scheduler::Plan& Scheduler::schedule() {
    plan_.items.clear();
    plan_.copies.clear();
    plan_.tokens = plan_.n_logits = 0;
    int budget = cfg_.step_tokens;
    bool preempted = false;
    // Running requests first, oldest admission first; the newest give way when blocks run out.
    for (size_t i = 0; i < running_.size() && budget > 0;) {
        const int r = running_[i];
        const Request& q = reqs_[size_t(r)];
        const int n = std::min(int(q.tokens.size()) - q.computed, budget);
        bool ok = reserve(r, n);
        while (!ok) {
            const int victim = running_.back();
            preempt(victim);
            preempted = true;
            if (victim == r) break;
            ok = reserve(r, n);
        }
        if (!ok) break;
        add_item(r, n);
        budget -= n;
        i++;
    }
    // Then new requests in arrival order, while tokens, lanes and memory last (none after a
    // preemption: the memory is short already).
    while (!preempted && budget > 0 && !waiting_.empty() && !free_lanes_.empty()) {
        const int r = waiting_.front();
        Request& q = reqs_[size_t(r)];
        q.lane = free_lanes_.back();
        int have = 0;
        if (cfg_.policy == ServePolicy::Prefix) {
            have = tables_->share_prefix(q.lane, q.tokens.data(), int(q.tokens.size()));
            if (!seqs_->append(q.lane, have)) fail("internal: lane {} cannot take {} shared slots", q.lane, have);
        }
        const int n = std::min(int(q.tokens.size()) - have, budget);
        if (!reserve(r, n)) {
            if (paged()) tables_->release(q.lane);
            seqs_->clear(q.lane);
            q.lane = -1;
            break;
        }
        free_lanes_.pop_back();
        waiting_.pop_front();
        running_.push_back(r);
        q.computed = have;
        q.prefix_reused += have;
        prefix_reused_ += have;
        add_item(r, n);
        budget -= n;
    }
    return plan_;
}

void Scheduler::commit(const std::vector<int32_t>& sampled, int32_t eos_id) {
    if (int(sampled.size()) != plan_.n_logits)
        fail("internal: {} sampled tokens for {} requests with logits", sampled.size(), plan_.n_logits);
    size_t k = 0;
    std::vector<int> done;
    for (const Item& it : plan_.items) {
        Request& q = reqs_[size_t(it.req)];
        if (it.logits) {
            const int32_t t = sampled[k++];
            q.tokens.push_back(t);
            q.generated++;
            if (q.generated >= q.max_new || (eos_id >= 0 && t == eos_id)) {
                q.finished = true;
                done.push_back(it.req);
            }
        }
        if (cfg_.policy == ServePolicy::Prefix) tables_->publish(q.lane, q.tokens.data());
    }
    for (int r : done) release(r);
}

int64_t Scheduler::reserved_tokens() const {
    if (!paged()) return int64_t(running_.size()) * cfg_.max_len;
    return int64_t(pool_->n_referenced()) * cfg_.block_tokens;
}

int64_t Scheduler::held_tokens() const {
    int64_t sum = 0;
    if (!paged()) {
        for (int r : running_) sum += seqs_->used(reqs_[size_t(r)].lane);
        return sum;
    }
    const int bt = cfg_.block_tokens;
    std::fill(fill_.begin(), fill_.end(), 0);
    for (int r : running_) {
        const int lane = reqs_[size_t(r)].lane, used = tables_->used(lane);
        const std::vector<int>& t = tables_->table(lane);
        for (size_t i = 0; i < t.size(); i++) {
            const int n = std::clamp(used - int(i) * bt, 0, bt);
            fill_[size_t(t[i])] = std::max(fill_[size_t(t[i])], n);
        }
    }
    for (int n : fill_) sum += n;
    return sum;
}

}  // namespace kvscope
