// Continuous batching: which tokens of which requests the next forward computes, with no
// tensor memory (the bytes live in KvCache; the server runs the forward the plan describes).
//
// Each request is a token list (prompt, then what it generated) and the number of those tokens
// whose K/V are in the cache. A step takes, within a budget of `step_tokens` tokens, first the
// running requests in the order they were admitted (a decode is one token; a prompt still being
// prefilled gets its next chunk), then admits waiting requests in arrival order while tokens,
// lanes and KV memory last. A request whose tokens are all computed after the step gets logits,
// and the server appends the token it samples: so prefill chunks and decodes share one forward,
// which reads each weight once for all of them.
//
// KV memory by policy, over one budget of `kv_tokens` token slots:
//   static  a contiguous lane of `max_len` slots reserved per request at admission (what a
//           plain batch or Hugging Face's static cache does): kv_tokens / max_len lanes;
//   paged   blocks of `block_tokens` slots allocated as a request grows (kv_blocks.h): when a
//           running request needs a block and none is left, the most recently admitted running
//           request is preempted (its blocks freed; it waits again at the front of the queue
//           and recomputes its tokens when readmitted, as vLLM's recompute preemption does);
//   prefix  paged, and a request first takes the cached blocks of its prompt's prefix (hashes of
//           parent and tokens) and computes only the rest; full blocks are published as they fill.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "kv/kv_blocks.h"
#include "kv/kv_seqs.h"

namespace kvscope {

enum class ServePolicy { Static, Paged, Prefix };
const char* serve_policy_name(ServePolicy p);
// "static", "paged", "prefix"; throws a one-line error naming `flag` otherwise.
ServePolicy parse_serve_policy(const std::string& s, const std::string& flag);

struct SchedulerConfig {
    ServePolicy policy = ServePolicy::Paged;
    int kv_tokens = 0;       // KV budget in token slots (per layer and KV head, as every layer holds the same)
    int block_tokens = 16;   // paged: slots per block
    int max_len = 0;         // most tokens one request may hold; static reserves this many per request
    int step_tokens = 256;   // most tokens one forward computes
    int max_seqs = 64;       // most requests running at once
    // Lanes (sequences of the cache): static kv_tokens / max_len, paged max_seqs.
    int lanes() const;
    // Blocks of the paged pool: kv_tokens / block_tokens.
    int n_blocks() const;
};

class Scheduler {
public:
    // Fails with a one-line error when the budget cannot hold one request of max_len tokens.
    explicit Scheduler(const SchedulerConfig& cfg);

    struct Item {
        int req;     // request index (add() order)
        int lane;    // cache sequence
        int first;   // first token computed: token index = cache slot = position
        int n;       // tokens computed
        bool logits; // the request's last token is among them: sample its next token
    };
    struct Plan {
        std::vector<Item> items;
        std::vector<KvBlockTables::Copy> copies;  // copy-on-write, before the forward
        int tokens = 0;
        int n_logits = 0;
    };

    // A request arrives; returns its index. prompt non-empty, prompt + max_new <= max_len.
    int add(std::vector<int32_t> prompt, int max_new);
    // The next step. Empty only when nothing is running or waiting.
    const Plan& schedule();
    // After the forward: one sampled token per logits item, in plan order. finished(req) then
    // tells which requests ended (their lanes and blocks are released).
    void commit(const std::vector<int32_t>& sampled, int32_t eos_id = -1);

    bool idle() const { return running_.empty() && waiting_.empty(); }
    int n_running() const { return int(running_.size()); }
    int n_waiting() const { return int(waiting_.size()); }

    struct Request {
        std::vector<int32_t> tokens;  // prompt, then generated
        int prompt_len = 0;
        int max_new = 0;
        int computed = 0;             // tokens whose K/V are in the cache
        int lane = -1;                // -1 unless running
        int generated = 0;
        int preemptions = 0;
        int prefix_reused = 0;        // prompt tokens taken from cached blocks (every admission)
        bool finished = false;
    };
    const Request& request(int r) const { return reqs_[size_t(r)]; }
    int n_requests() const { return int(reqs_.size()); }

    // Token slots reserved for running requests (static: max_len each; paged: referenced blocks)
    // and the slots among them that hold a token (a shared block counted once).
    int64_t reserved_tokens() const;
    int64_t held_tokens() const;
    int64_t preemptions() const { return preemptions_; }
    int64_t prefix_tokens_reused() const { return prefix_reused_; }

    const SchedulerConfig& config() const { return cfg_; }
    const KvSeqs& seqs() const { return *seqs_; }
    const KvBlockTables* tables() const { return tables_.get(); }
    const KvBlockPool* pool() const { return pool_.get(); }

private:
    bool paged() const { return cfg_.policy != ServePolicy::Static; }
    // Room for n more slots of running request r (paged: blocks; static: its lane has them).
    bool reserve(int r, int n);
    void preempt(int r);
    void release(int r);
    void add_item(int r, int n);

    SchedulerConfig cfg_;
    std::vector<Request> reqs_;
    std::vector<int> running_;  // admission order
    std::deque<int> waiting_;   // arrival order, preempted requests in front
    std::vector<int> free_lanes_;
    std::unique_ptr<KvSeqs> seqs_;
    std::unique_ptr<KvBlockPool> pool_;
    std::unique_ptr<KvBlockTables> tables_;
    Plan plan_;
    int64_t preemptions_ = 0, prefix_reused_ = 0;
    mutable std::vector<int> fill_;  // held_tokens' per-block scratch
};

}  // namespace kvscope
