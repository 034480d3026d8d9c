// Generation: prefill once then one token per step with the cache on, or a full recompute of
// every sequence at every step with the cache off. Both share the same forward pass; every
// buffer (cache, scratch, logits, sampler) is allocated in the constructor.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "arch/forward.h"
#include "kv/kv_blocks.h"
#include "kv/kv_cache.h"
#include "kv/kv_evict.h"
#include "kv/kv_seqs.h"
#include "model/weights.h"
#include "runtime/sampler.h"

namespace kvscope {

struct EngineOptions {
    int n_seq = 1;           // batch size
    int max_prompt = 1;      // longest prompt (real tokens)
    int max_new_tokens = 1;
    bool use_cache = true;
    bool left_pad = false;   // pad prompts on the left to one length, as Hugging Face does
    KvFormat kv_dtype = DType::F32;  // K and V storage (kv/kv_codec.h)
    bool all_logits = false; // size the logits buffer for every prompt position (tests)
    int kv_block = 0;        // > 0: paged layout, this many tokens per block (kv/kv_blocks.h)
    bool prefix_cache = false;  // paged: reuse cached blocks of a prompt's prefix instead of prefilling them
    // Eviction (kv/kv_evict.h): with a bounded policy each sequence keeps at most policy.budget
    // tokens after every forward (the prompt is prefilled whole, then cut to the budget), and
    // a rotary-position model may generate past its context window.
    KvPolicyConfig policy;
};

struct GenerateOptions {
    int max_new_tokens = 32;
    bool stop_at_eos = true;
    SamplingParams sampling;
};

struct GenerateResult {
    std::vector<std::vector<int32_t>> tokens;  // new tokens per sequence
    double prefill_ms = 0;                     // time to first token (whole batch)
    std::vector<double> step_ms;               // each later step, producing one token per active sequence
    std::vector<int> step_tokens;              // tokens produced by each later step
    double total_ms = 0;
    int64_t tokens_generated = 0;              // real tokens (padding excluded)
    int64_t prompt_tokens = 0;                 // real prompt tokens
    int64_t padded_tokens = 0;                 // padding tokens computed during prefill
    int64_t prefix_tokens_reused = 0;          // prompt tokens taken from the prefix cache, not prefilled
    int prefill_forwards = 1;                  // forwards of the prefill (2 when prefix sharing defers some prompts)
};

// Tokens per sequence per forward when a windowed KV format (a full-precision window, sinks or
// per-channel keys) prefills: its fp16 ring then holds the window plus one chunk.
constexpr int kPrefillChunk = 32;
// Slots per sequence: prompt + new tokens, or with a bounded policy the longer of the prompt and
// the budget, plus the token a step adds before evicting.
int engine_slots(const EngineOptions& opt);
// The cache an engine with these options allocates (the harness predicts it with the same call).
KvShape engine_kv_shape(const ModelConfig& c, const EngineOptions& opt);

class Engine {
public:
    Engine(const Weights& w, const EngineOptions& opt);

    // prompts.size() must equal n_seq; each prompt non-empty and within max_prompt.
    GenerateResult generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& g);
    // Logits at every position of one prompt ([len, n_vocab]), for correctness tests.
    std::vector<float> all_logits(const std::vector<int32_t>& prompt);

    // Teacher forcing with the cache on (batch 1): row i of the result is the next-token logits
    // after prompt + forced[0..i-1]; forced.size() rows of n_vocab.
    // step_ms, when given, receives each forced step's time (forced.size() - 1 decode steps).
    std::vector<float> forced_logits(const std::vector<int32_t>& prompt, const std::vector<int32_t>& forced,
                                     std::vector<double>* step_ms = nullptr);
    // The next-token logits after a prompt (batch 1, cache on, from an empty cache).
    std::vector<float> prefill_logits(const std::vector<int32_t>& prompt);

    // Decode steps of sequence 0 at chosen depths, timed in the given order, so that a
    // measurement can alternate depths step by step and the machine's drift falls on all of
    // them alike. The prompt (more tokens than the deepest step) is prefilled once, untimed; a
    // step at depth d then runs the forward of prompt token d at slot d, attending over slots
    // [0, d], and samples from its logits (greedy): the work of a generation's step at depth d.
    // Its K and V overwrite slot d with what the prefill wrote there (the same token at the
    // same position: equal up to rounding, the prefill's products being blocked differently).
    // A read_only step instead reads what that step reads, with no arithmetic
    // (Forward::read_step: the read floor). Needs a batch-1 engine with the cache on, set up
    // for the prompt.
    struct DepthStep {
        int depth;
        bool read_only;
    };
    struct TimedSteps {
        std::vector<double> ms;       // each step's time
        std::vector<int32_t> tokens;  // each step's greedy token (-1 for a read-only step)
    };
    TimedSteps time_steps(const std::vector<int32_t>& prompt, const std::vector<DepthStep>& steps);

    int64_t kv_bytes() const { return cache_->bytes_allocated(); }
    int64_t scratch_bytes() const;
    const EngineOptions& options() const { return opt_; }
    int n_slots() const { return n_slots_; }
    // The paged layout's pool (nullptr for the contiguous layout).
    const KvBlockPool* block_pool() const { return pool_.get(); }
    // A bounded policy's bookkeeping (nullptr without one): which positions each stream holds.
    const KvEvictor* evictor() const { return evictor_.get(); }
    // Tokens sequence b holds in the cache now.
    int held(int b) const { return seqs_->used(b) - seqs_->pad(b); }

private:
    void run(int n_out);  // forward of the tokens staged in tok_/seq_/slot_/pos_
    // The same in chunks of the cache's max_chunk tokens per sequence when it is smaller than
    // what is staged; out_ must name each sequence's last staged token.
    void run_staged(int n_out);
    void stage_single(const std::vector<int32_t>& prompt);  // sequence 0 from scratch, slots = positions
    // Slot bookkeeping in both KvSeqs and, when paged, the block tables (blocks allocated,
    // shared blocks copied before they are written).
    void seq_append(int seq, int n);
    void seq_padding(int seq, int n);
    void seq_clear_all();
    // A staged token: its slot's eviction statistics start afresh.
    void note_write(int seq, int slot, int pos) {
        if (evictor_) evictor_->on_write(seq, slot, pos);
    }
    // After a forward: sequences over the budget drop to it (rows moved, slots released).
    void evict(int seq);
    // Prefill with prefix sharing (paged, prefix cache on): each prompt takes the cached blocks
    // of its prefix and computes the rest; returns the prompt tokens taken from the cache.
    int64_t prefill_shared(const std::vector<std::vector<int32_t>>& prompts);

    const Weights& w_;
    EngineOptions opt_;
    int n_slots_ = 0;
    std::unique_ptr<KvCache> cache_;
    std::unique_ptr<KvSeqs> seqs_;
    std::unique_ptr<KvBlockPool> pool_;
    std::unique_ptr<KvBlockTables> tables_;
    std::unique_ptr<KvEvictor> evictor_;
    std::vector<KvEvictor::Move> moves_;
    std::vector<float> held_logits_;                  // prefix sharing: each prompt's first logits across waves
    std::unique_ptr<Forward> model_;
    std::vector<float> logits_;                       // [max_out, n_vocab]
    std::vector<int32_t> tok_;                        // staged ubatch, capacity fixed at setup
    std::vector<int> seq_, slot_, pos_, out_;
    int n_tok_ = 0, n_out_ = 0;
    int prefill_forwards_ = 0;
    std::vector<int32_t> staged_tok_;                 // run_staged's copy of a whole prefill
    std::vector<int> staged_seq_, staged_slot_, staged_pos_, staged_out_, seq_count_, seq_done_;
};

}  // namespace kvscope
