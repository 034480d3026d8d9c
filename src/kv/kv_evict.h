// Keeping less of the cache: which positions each (layer, sequence, KV head) stream keeps once
// it holds more than a budget, with no K/V bytes (KvCache moves the rows this class names).
//
// A stream's occupied slots are [0, n): after a forward writes its tokens at the end, evict()
// picks n - budget victims and closes the holes by moving rows from the tail into them, so
// attention keeps reading one contiguous run of slots, in no particular order of position (the
// order of keys does not change attention; positions are in the keys, by RoPE or learned
// embeddings). The policies:
//   window  the newest `budget` tokens;
//   sinks   the first `sinks` tokens and the newest budget - sinks (StreamingLLM);
//   h2o     the newest `recent` tokens and, of the rest, those with the largest attention
//           accumulated over every query so far, per KV head (H2O's heavy hitters);
//   snapkv  the newest `window` tokens (the observation window) and, of the rest, those the
//           last `window` queries attended to most, max-pooled over `pool` neighbours in
//           position order, per KV head (SnapKV's criterion, applied at every eviction: once
//           to a prompt longer than the budget, then as generation grows the cache);
//   tova    the tokens the newest query attends to most, summed over the layer's heads (TOVA).
// Attention statistics come from the attention kernel's own probabilities (observe()), summed
// over the query heads that share the KV head.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvscope {

enum class KvPolicy { Full, Window, Sinks, H2O, SnapKV, TOVA };
const char* kv_policy_name(KvPolicy p);
// full, window, sinks, h2o, snapkv, tova; throws a one-line error naming `flag` otherwise.
KvPolicy parse_kv_policy(const std::string& s, const std::string& flag);

struct KvPolicyConfig {
    KvPolicy kind = KvPolicy::Full;
    int budget = 0;   // tokens each stream keeps after a forward (full: unbounded)
    int sinks = 4;    // sinks: first tokens never evicted
    int recent = -1;  // h2o: newest tokens always kept (-1: budget / 2)
    int window = 32;  // snapkv: the observation window (newest tokens kept; last queries scoring the rest)
    int pool = 7;     // snapkv: max-pooling width over neighbouring positions (odd)
    bool bounded() const { return kind != KvPolicy::Full; }
    int recent_kept() const { return recent >= 0 ? recent : budget / 2; }
    // Checks the parameters against each other; throws naming the flag at fault.
    void validate() const;
};
std::string kv_policy_label(const KvPolicyConfig& p);  // e.g. "sinks(4)+252", "h2o 128", "full"
// --kv-budget: a token count ("256") or a fraction of the context window ("0.25"); throws a
// one-line error naming `flag` otherwise.
int parse_kv_budget(const std::string& s, int n_ctx, const std::string& flag);

class KvEvictor {
public:
    // n_group: query heads per KV head. capacity: slots per stream (budget plus the most
    // tokens one forward may add).
    KvEvictor(const KvPolicyConfig& p, int n_layer, int n_seq, int n_kv_head, int n_group, int capacity);

    const KvPolicyConfig& policy() const { return p_; }
    int capacity() const { return cap_; }

    // A token of `seq` at `slot` with position `pos` is about to be written in every layer and
    // head: its statistics start from zero.
    void on_write(int seq, int slot, int pos);
    void clear(int seq);

    // One query of `seq` (rank_from_end: how many later tokens of the sequence the forward
    // holds) attended over slots [lo, hi) of (il, h) with probabilities p[x][lo..hi) for each of
    // the group's n query heads (p[x] indexed by slot). shared: other tokens of the same
    // sequence are observed at the same time (accumulate atomically).
    void observe(int il, int seq, int h, int rank_from_end, const float* const* p, int n, int lo, int hi, bool shared);
    // Which statistics observe() keeps for this policy (none: attention need not report).
    bool needs_stats() const;

    struct Move {
        int il, h, from, to;  // move the row at slot `from` to slot `to`
    };
    // Brings every stream of `seq` holding n slots down to the budget: appends the row moves
    // that compact each stream and returns the new count (n when nothing is evicted).
    int evict(int seq, int n, std::vector<Move>* moves);

    // Positions held by stream (il, seq, h) in slots [0, n).
    const int* positions(int il, int seq, int h) const { return &pos_[stream(il, seq, h) * size_t(cap_)]; }

private:
    size_t stream(int il, int seq, int h) const { return (size_t(il) * size_t(n_seq_) + size_t(seq)) * size_t(n_kv_) + size_t(h); }
    float* col(std::vector<float>& v, size_t s, int rows = 1) { return &v[s * size_t(cap_) * size_t(rows)]; }
    // Victims of one stream (or of a whole layer, scored over its heads) among slots [0, n).
    void choose(int il, int seq, int h_first, int h_last, int n, int k, std::vector<int>* victims);
    void compact(int il, int seq, int h, int n, const std::vector<int>& victims, std::vector<Move>* moves);

    KvPolicyConfig p_;
    int n_layer_, n_seq_, n_kv_, n_group_, cap_;
    std::vector<int> pos_;        // [stream][cap] position of each slot
    std::vector<float> acc_;      // h2o: [stream][cap] accumulated attention
    std::vector<float> cur_;      // tova: [stream][cap] the newest query's attention
    std::vector<float> obs_;      // snapkv: [stream][window][cap] the last queries' attention, a ring by query position
    std::vector<int> obs_pos_;    // snapkv: [seq][window] position of the query in each ring row (-1: none)
    std::vector<int> newest_;     // [seq] newest position written
    // choose()'s scratch
    std::vector<float> score_, pooled_;
    std::vector<int> order_, victims_;
};

}  // namespace kvscope
