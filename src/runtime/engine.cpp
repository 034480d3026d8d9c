#include "runtime/engine.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "kv/kv_codec.h"

namespace kvscope {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

volatile uint32_t g_read_sink;  // keeps the read-only steps' checksums live

}  // namespace

Engine::Engine(const Weights& w, const EngineOptions& opt) : w_(w), opt_(opt) {
    const ModelConfig& c = w.config();
    if (opt.n_seq < 1) fail("--batch-size {}: expected at least 1", opt.n_seq);
    if (opt.max_prompt < 1) fail("prompt is empty: expected at least one token");
    if (opt.max_new_tokens < 1) fail("--max-new-tokens {}: expected at least 1", opt.max_new_tokens);
    n_slots_ = engine_slots(opt);
    const KvPolicyConfig& pol = opt.policy;
    const int64_t positions = int64_t(opt.max_prompt) + opt.max_new_tokens;
    if (pol.bounded()) {
        pol.validate();
        if (!opt.use_cache) fail("--kv-policy {}: keeping part of the cache needs the cache on (--use_cache 1)", kv_policy_name(pol.kind));
        if (opt.left_pad) fail("--kv-policy {}: left padding is not supported with eviction; drop --padding left", kv_policy_name(pol.kind));
        if (opt.kv_block > 0)
            fail("--kv-policy {}: eviction compacts each sequence's contiguous rows; use --kv-layout contiguous", kv_policy_name(pol.kind));
        if (opt.kv_dtype.windowed())
            fail("--kv-policy {}: KV format {} keeps a window, sinks or per-channel keys of its own; eviction takes fp32, "
                 "fp16, bf16 and per-token integer codecs", kv_policy_name(pol.kind), kv_format_name(opt.kv_dtype));
        if (opt.max_prompt > c.n_ctx)
            fail("prompt of {} tokens exceeds the model's context window of {} positions", opt.max_prompt, c.n_ctx);
        // Learned absolute positions end at the window; rotary ones go on (the keys' distances stay within the budget).
        if (c.arch != Arch::LLAMA && positions > c.n_ctx)
            fail("prompt ({} tokens) + --max-new-tokens ({}) = {} exceeds the context window of {} positions: {}'s "
                 "learned positions end there (generation past the window needs a rotary-position model)",
                 opt.max_prompt, opt.max_new_tokens, positions, c.n_ctx, arch_name(c.arch));
    } else if (n_slots_ > c.n_ctx) {
        fail("prompt ({} tokens) + --max-new-tokens ({}) = {} exceeds the model's context window of {} positions",
             opt.max_prompt, opt.max_new_tokens, n_slots_, c.n_ctx);
    }
    if (c.sliding_window > 0 && n_slots_ > c.sliding_window)
        fail("prompt + --max-new-tokens = {} positions: past this model's sliding attention window ({}), which "
             "kvscope does not implement", n_slots_, c.sliding_window);
    if (opt.kv_block < 0) fail("--kv-block {}: expected a positive number of tokens per block", opt.kv_block);
    if (opt.prefix_cache && opt.kv_block == 0) fail("--prefix-cache needs --kv-layout paged");
    if (opt.prefix_cache && opt.left_pad) fail("--prefix-cache: left-padded prompts do not start at slot 0; drop --left-pad");
    const KvShape ks = engine_kv_shape(c, opt);
    cache_ = std::make_unique<KvCache>(ks);
    seqs_ = std::make_unique<KvSeqs>(opt.n_seq, n_slots_);
    if (ks.paged()) {
        pool_ = std::make_unique<KvBlockPool>(ks.n_blocks, ks.block_tokens);
        tables_ = std::make_unique<KvBlockTables>(pool_.get(), opt.n_seq, n_slots_);
        cache_->set_tables(tables_.get());
        if (opt.prefix_cache) held_logits_.resize(size_t(opt.n_seq) * size_t(c.n_vocab));
    }
    if (pol.bounded()) {
        evictor_ = std::make_unique<KvEvictor>(pol, c.n_layer, opt.n_seq, c.n_kv_head, c.n_head / c.n_kv_head, n_slots_);
        cache_->set_evictor(evictor_.get());
        moves_.reserve(size_t(c.n_layer) * size_t(c.n_kv_head) * size_t(n_slots_));
    }
    // With the cache a forward holds at most the (padded) prompts; without it, whole sequences.
    const int max_tok = opt.n_seq * (opt.use_cache ? opt.max_prompt : n_slots_);
    const int max_out = opt.all_logits ? std::max(opt.n_seq, opt.max_prompt) : opt.n_seq;
    model_ = w.make_forward(max_tok, max_out, n_slots_);
    logits_.assign(size_t(max_out) * size_t(c.n_vocab), 0.0f);
    tok_.resize(size_t(max_tok));
    seq_.resize(size_t(max_tok));
    slot_.resize(size_t(max_tok));
    pos_.resize(size_t(max_tok));
    out_.resize(size_t(max_out));
    if (cache_->windowed() && cache_->shape().max_chunk < n_slots_) {
        staged_tok_.resize(size_t(max_tok));
        staged_seq_.resize(size_t(max_tok));
        staged_slot_.resize(size_t(max_tok));
        staged_pos_.resize(size_t(max_tok));
        staged_out_.resize(size_t(max_out));
        seq_count_.resize(size_t(opt.n_seq));
        seq_done_.resize(size_t(opt.n_seq));
    }
}

int engine_slots(const EngineOptions& opt) {
    if (opt.policy.bounded()) return std::max(opt.max_prompt, opt.policy.budget) + 1;
    return opt.max_prompt + opt.max_new_tokens;
}

KvShape engine_kv_shape(const ModelConfig& c, const EngineOptions& opt) {
    const int n_slots = engine_slots(opt);
    KvShape ks{opt.use_cache ? c.n_layer : 1, opt.n_seq, c.n_kv_head, n_slots, c.head_dim, opt.kv_dtype};
    // A windowed cache's ring holds one chunk: the prefill runs in chunks of kPrefillChunk
    // tokens per sequence. Without the cache every step recomputes whole sequences in one forward.
    ks.max_chunk = opt.kv_dtype.windowed() && opt.use_cache && !opt.all_logits ? std::min(n_slots, kPrefillChunk) : n_slots;
    if (opt.kv_block > 0) {  // a pool as large as the contiguous layout: every sequence can reach n_slots
        ks.block_tokens = opt.kv_block;
        ks.n_blocks = opt.n_seq * ((n_slots + opt.kv_block - 1) / opt.kv_block);
    }
    // StreamingLLM's positions within the cache: the sinks' keys move up to the window.
    if (opt.policy.kind == KvPolicy::Sinks && c.arch == Arch::LLAMA) ks.virtual_sinks = opt.policy.sinks;
    return ks;
}

void Engine::seq_append(int seq, int n) {
    if (!seqs_->append(seq, n)) fail("internal: sequence {} cannot take {} more slots", seq, n);
    if (!tables_) return;
    KvBlockTables::Copy cp{};
    if (!tables_->append(seq, n, &cp)) fail("internal: the KV block pool has no room for sequence {}", seq);
    if (cp.src >= 0) cache_->copy_block(cp.src, cp.dst);
}

void Engine::seq_padding(int seq, int n) {
    if (!seqs_->set_padding(seq, n)) fail("internal: padding sequence {} with {} slots", seq, n);
    if (!tables_) return;
    KvBlockTables::Copy cp{};
    if (!tables_->append(seq, n, &cp)) fail("internal: the KV block pool has no room for sequence {}", seq);
}

void Engine::seq_clear_all() {
    seqs_->clear_all();
    if (tables_)
        for (int b = 0; b < opt_.n_seq; b++) tables_->release(b);
    if (evictor_)
        for (int b = 0; b < opt_.n_seq; b++) evictor_->clear(b);
}

void Engine::evict(int seq) {
    if (!evictor_) return;
    moves_.clear();
    const int n = seqs_->used(seq);
    const int kept = evictor_->evict(seq, n, &moves_);
    for (const KvEvictor::Move& m : moves_) cache_->move_row(m.il, seq, m.h, m.from, m.to);
    if (kept < n && !seqs_->shrink(seq, kept)) fail("internal: sequence {} cannot shrink to {} slots", seq, kept);
}

int64_t Engine::scratch_bytes() const {
    return model_->scratch_bytes() + int64_t(logits_.size()) * 4 +
           int64_t(tok_.size()) * int64_t(sizeof(int32_t) + 3 * sizeof(int)) + int64_t(out_.size()) * 4;
}

Engine::TimedSteps Engine::time_steps(const std::vector<int32_t>& prompt, const std::vector<DepthStep>& steps) {
    const ModelConfig& c = w_.config();
    const int len = int(prompt.size());
    if (opt_.n_seq != 1 || !opt_.use_cache || len < 1 || len > opt_.max_prompt)
        fail("internal: time_steps needs a batch-1 cached engine set up for {} tokens", len);
    if (evictor_) fail("--kv-policy: steps at chosen depths need every position cached (use --kv-policy full)");
    if (cache_->windowed())
        fail("KV format {}: steps at chosen depths rewrite cached slots, which a window or per-channel keys do not allow; "
             "measure it with generation (kvscope run, exp quant)", kv_format_name(opt_.kv_dtype));
    for (int32_t t : prompt)
        if (t < 0 || t >= c.n_vocab) fail("token id {} is outside the vocabulary (0..{})", t, c.n_vocab - 1);
    for (const DepthStep& s : steps)
        if (s.depth < 0 || s.depth >= len)
            fail("time_steps: depth {}; a prompt of {} tokens holds steps at depths 0 to {}", s.depth, len, len - 1);
    stage_single(prompt);
    out_[0] = n_tok_ - 1;
    run(1);
    Sampler sampler(c.n_vocab, SamplingParams{});
    std::mt19937_64 rng(1);
    TimedSteps r;
    r.ms.reserve(steps.size());
    r.tokens.reserve(steps.size());
    uint32_t sum = 0;
    for (const DepthStep& s : steps) {
        const auto t0 = std::chrono::steady_clock::now();
        int32_t token = -1;
        if (s.read_only) {
            sum += model_->read_step(*cache_, 0, s.depth + 1);
        } else {
            tok_[0] = prompt[size_t(s.depth)];
            seq_[0] = 0;
            slot_[0] = s.depth;
            pos_[0] = s.depth;
            n_tok_ = 1;
            out_[0] = 0;
            run(1);
            token = sampler.sample(logits_.data(), rng);
        }
        r.ms.push_back(ms_since(t0));
        r.tokens.push_back(token);
    }
    g_read_sink = sum;
    return r;
}

void Engine::run_staged(int n_out) {
    const int C = cache_->shape().max_chunk;
    if (staged_tok_.empty()) return run(n_out);
    std::fill(seq_count_.begin(), seq_count_.end(), 0);
    for (int i = 0; i < n_tok_; i++) seq_count_[size_t(seq_[size_t(i)])]++;
    int most = 0;
    for (int n : seq_count_) most = std::max(most, n);
    if (most <= C) return run(n_out);
    // Each sequence's staged tokens (in slot order) go out in chunks aligned to its end, so the
    // last chunk holds every sequence's last token: the only ones whose logits are asked for.
    const int n = n_tok_;
    std::copy_n(tok_.begin(), n, staged_tok_.begin());
    std::copy_n(seq_.begin(), n, staged_seq_.begin());
    std::copy_n(slot_.begin(), n, staged_slot_.begin());
    std::copy_n(pos_.begin(), n, staged_pos_.begin());
    std::copy_n(out_.begin(), n_out, staged_out_.begin());
    const int n_chunks = (most + C - 1) / C;
    for (int ch = 0; ch < n_chunks; ch++) {
        const bool last = ch == n_chunks - 1;
        std::fill(seq_done_.begin(), seq_done_.end(), 0);  // tokens of each sequence seen so far
        n_tok_ = 0;
        for (int i = 0; i < n; i++) {
            const int b = staged_seq_[size_t(i)], k = seq_done_[size_t(b)]++;
            const int from = seq_count_[size_t(b)] - (n_chunks - ch) * C;  // this chunk: its tokens [from, from + C)
            if (k < from || k >= from + C) continue;
            for (int o = 0; last && o < n_out; o++)
                if (staged_out_[size_t(o)] == i) out_[size_t(o)] = n_tok_;
            tok_[size_t(n_tok_)] = staged_tok_[size_t(i)];
            seq_[size_t(n_tok_)] = b;
            slot_[size_t(n_tok_)] = staged_slot_[size_t(i)];
            pos_[size_t(n_tok_)] = staged_pos_[size_t(i)];
            n_tok_++;
        }
        run(last ? n_out : 0);
    }
}

void Engine::run(int n_out) {
    Ubatch ub;
    ub.n_tok = n_tok_;
    ub.token = tok_.data();
    ub.seq = seq_.data();
    ub.slot = slot_.data();
    ub.pos = pos_.data();
    ub.n_out = n_out;
    ub.out_idx = out_.data();
    model_->forward(ub, *cache_, *seqs_, logits_.data());
}

GenerateResult Engine::generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& g) {
    const ModelConfig& c = w_.config();
    const int B = opt_.n_seq;
    if (int(prompts.size()) != B) fail("internal: {} prompts for a batch of {}", prompts.size(), B);
    int max_len = 0;
    for (const auto& p : prompts) {
        if (p.empty()) fail("prompt is empty: expected at least one token");
        if (int(p.size()) > opt_.max_prompt)
            fail("prompt of {} tokens is longer than the engine was set up for ({})", p.size(), opt_.max_prompt);
        for (int32_t t : p)
            if (t < 0 || t >= c.n_vocab) fail("token id {} is outside the vocabulary (0..{})", t, c.n_vocab - 1);
        max_len = std::max(max_len, int(p.size()));
    }
    if (g.max_new_tokens < 1 || g.max_new_tokens > opt_.max_new_tokens)
        fail("--max-new-tokens {}: expected 1..{}", g.max_new_tokens, opt_.max_new_tokens);

    GenerateResult r;
    r.tokens.resize(size_t(B));
    for (auto& t : r.tokens) t.reserve(size_t(g.max_new_tokens));
    r.step_ms.reserve(size_t(g.max_new_tokens));
    r.step_tokens.reserve(size_t(g.max_new_tokens));
    std::vector<std::mt19937_64> rng;
    for (int b = 0; b < B; b++) rng.emplace_back(g.sampling.seed * 0x9E3779B97F4A7C15ull + uint64_t(b) + 1);
    Sampler sampler(c.n_vocab, g.sampling);
    std::vector<int> active(static_cast<size_t>(B));
    for (int b = 0; b < B; b++) active[size_t(b)] = b;
    for (const auto& p : prompts) r.prompt_tokens += int64_t(p.size());

    auto pad_of = [&](int b) { return opt_.left_pad ? max_len - int(prompts[size_t(b)].size()) : 0; };
    // Stages sequence b from scratch: padding, prompt, then the tokens generated so far.
    auto stage_full = [&](int b) {
        const int pad = pad_of(b);
        seq_padding(b, pad);
        for (int i = 0; i < pad; i++) {
            tok_[size_t(n_tok_)] = c.eos_id >= 0 && c.eos_id < c.n_vocab ? c.eos_id : 0;  // padding: computed, never attended to
            seq_[size_t(n_tok_)] = b;
            slot_[size_t(n_tok_)] = i;
            pos_[size_t(n_tok_)] = 0;
            n_tok_++;
        }
        const auto& p = prompts[size_t(b)];
        const auto& gen = r.tokens[size_t(b)];
        const int len = int(p.size() + gen.size());
        for (int j = 0; j < len; j++) {
            tok_[size_t(n_tok_)] = j < int(p.size()) ? p[size_t(j)] : gen[size_t(j) - p.size()];
            seq_[size_t(n_tok_)] = b;
            slot_[size_t(n_tok_)] = pad + j;
            pos_[size_t(n_tok_)] = j;
            note_write(b, pad + j, j);
            n_tok_++;
        }
        seq_append(b, len);
    };
    // Samples the next token of each active sequence from logits row i; drops finished ones.
    auto commit = [&]() {
        int produced = 0;
        size_t keep = 0;
        for (size_t i = 0; i < active.size(); i++) {
            const int b = active[i];
            int32_t t = sampler.sample(logits_.data() + i * size_t(c.n_vocab), rng[size_t(b)]);
            r.tokens[size_t(b)].push_back(t);
            produced++;
            bool done = int(r.tokens[size_t(b)].size()) >= g.max_new_tokens || (g.stop_at_eos && t == c.eos_id);
            if (!done) active[keep++] = b;
        }
        active.resize(keep);
        return produced;
    };

    const auto t_start = std::chrono::steady_clock::now();
    // First token: the prompt's forward (prefill), identical in both modes.
    seq_clear_all();
    r.padded_tokens = 0;
    for (int b = 0; b < B; b++) r.padded_tokens += pad_of(b);
    if (opt_.prefix_cache && opt_.use_cache) {
        r.prefix_tokens_reused = prefill_shared(prompts);
        r.prefill_forwards = prefill_forwards_;
    } else {
        n_tok_ = 0;
        for (int b = 0; b < B; b++) {
            stage_full(b);
            out_[size_t(b)] = n_tok_ - 1;
        }
        run_staged(B);
    }
    for (int b = 0; b < B; b++) evict(b);
    r.tokens_generated += commit();
    r.prefill_ms = ms_since(t_start);

    while (!active.empty()) {
        const auto t0 = std::chrono::steady_clock::now();
        n_tok_ = 0;
        if (opt_.use_cache) {
            // One new token per active sequence, written at the next free slot.
            for (size_t i = 0; i < active.size(); i++) {
                const int b = active[i];
                tok_[size_t(n_tok_)] = r.tokens[size_t(b)].back();
                seq_[size_t(n_tok_)] = b;
                slot_[size_t(n_tok_)] = seqs_->next_slot(b);
                pos_[size_t(n_tok_)] = seqs_->next_pos(b);
                note_write(b, slot_[size_t(n_tok_)], pos_[size_t(n_tok_)]);
                seq_append(b, 1);
                out_[i] = n_tok_++;
            }
        } else {
            // No cache: recompute every active sequence from its first token.
            seq_clear_all();
            for (size_t i = 0; i < active.size(); i++) {
                stage_full(active[i]);
                out_[i] = n_tok_ - 1;
            }
        }
        run(int(active.size()));
        for (int b : active) evict(b);
        int produced = commit();
        r.tokens_generated += produced;
        r.step_ms.push_back(ms_since(t0));
        r.step_tokens.push_back(produced);
    }
    r.total_ms = ms_since(t_start);
    return r;
}

int64_t Engine::prefill_shared(const std::vector<std::vector<int32_t>>& prompts) {
    const int B = opt_.n_seq, bt = opt_.kv_block;
    const size_t V = size_t(w_.config().n_vocab);
    // Wave 0: the first prompt of each distinct first block (and prompts shorter than a block
    // plus one token); wave 1: the prompts whose first block an earlier prompt computes, which
    // then find it (and whatever else of their prefix is cached) in the prefix cache.
    std::vector<int> wave(size_t(B), 0);
    for (int b = 0; b < B; b++) {
        const auto& p = prompts[size_t(b)];
        if (int(p.size()) <= bt) continue;
        for (int e = 0; e < b; e++) {
            const auto& q = prompts[size_t(e)];
            if (wave[size_t(e)] == 0 && int(q.size()) > bt && std::equal(p.begin(), p.begin() + bt, q.begin())) {
                wave[size_t(b)] = 1;
                break;
            }
        }
    }
    int64_t reused = 0;
    prefill_forwards_ = 0;
    for (int w = 0; w < 2; w++) {
        n_tok_ = 0;
        int n_out = 0;
        std::vector<int> who;
        for (int b = 0; b < B; b++) {
            if (wave[size_t(b)] != w) continue;
            const auto& p = prompts[size_t(b)];
            const int len = int(p.size());
            const int have = tables_->share_prefix(b, p.data(), len);
            if (!seqs_->append(b, have)) fail("internal: sequence {} cannot take {} shared slots", b, have);
            reused += have;
            for (int j = have; j < len; j++) {
                tok_[size_t(n_tok_)] = p[size_t(j)];
                seq_[size_t(n_tok_)] = b;
                slot_[size_t(n_tok_)] = j;
                pos_[size_t(n_tok_)] = j;
                n_tok_++;
            }
            seq_append(b, len - have);
            out_[size_t(n_out++)] = n_tok_ - 1;
            who.push_back(b);
        }
        if (who.empty()) continue;
        run(n_out);
        prefill_forwards_++;
        for (size_t i = 0; i < who.size(); i++) {
            const int b = who[i];
            std::copy_n(logits_.begin() + int64_t(i * V), V, held_logits_.begin() + int64_t(size_t(b) * V));
            tables_->publish(b, prompts[size_t(b)].data());
        }
    }
    std::copy(held_logits_.begin(), held_logits_.end(), logits_.begin());
    return reused;
}

void Engine::stage_single(const std::vector<int32_t>& prompt) {
    seq_clear_all();
    n_tok_ = 0;
    for (size_t j = 0; j < prompt.size(); j++) {
        tok_[j] = prompt[j];
        seq_[j] = 0;
        slot_[j] = int(j);
        pos_[j] = int(j);
        note_write(0, int(j), int(j));
        n_tok_++;
    }
    seq_append(0, n_tok_);
}

std::vector<float> Engine::all_logits(const std::vector<int32_t>& prompt) {
    const ModelConfig& c = w_.config();
    if (!opt_.all_logits || opt_.n_seq != 1 || int(prompt.size()) > opt_.max_prompt || prompt.empty() || evictor_)
        fail("internal: all_logits needs a batch-1 engine set up for {} tokens, with every position cached", prompt.size());
    stage_single(prompt);
    for (int j = 0; j < n_tok_; j++) out_[size_t(j)] = j;
    run(n_tok_);
    return std::vector<float>(logits_.begin(), logits_.begin() + int64_t(prompt.size()) * c.n_vocab);
}

std::vector<float> Engine::prefill_logits(const std::vector<int32_t>& prompt) {
    const ModelConfig& c = w_.config();
    if (opt_.n_seq != 1 || !opt_.use_cache || prompt.empty() || int(prompt.size()) > opt_.max_prompt)
        fail("internal: prefill_logits needs a batch-1 cached engine set up for {} tokens", prompt.size());
    for (int32_t t : prompt)
        if (t < 0 || t >= c.n_vocab) fail("token id {} is outside the vocabulary (0..{})", t, c.n_vocab - 1);
    stage_single(prompt);
    out_[0] = n_tok_ - 1;
    run_staged(1);
    return std::vector<float>(logits_.begin(), logits_.begin() + c.n_vocab);
}

std::vector<float> Engine::forced_logits(const std::vector<int32_t>& prompt, const std::vector<int32_t>& forced,
                                         std::vector<double>* step_ms) {
    const ModelConfig& c = w_.config();
    if (opt_.n_seq != 1 || !opt_.use_cache || prompt.empty() || int(prompt.size()) > opt_.max_prompt ||
        int(forced.size()) > opt_.max_new_tokens)
        fail("internal: forced_logits needs a batch-1 cached engine set up for {}+{} tokens", prompt.size(),
             forced.size());
    std::vector<float> out(forced.size() * size_t(c.n_vocab));
    if (forced.empty()) return out;
    stage_single(prompt);
    out_[0] = n_tok_ - 1;
    run_staged(1);
    evict(0);
    std::copy(logits_.begin(), logits_.begin() + c.n_vocab, out.begin());
    if (step_ms) step_ms->clear();
    for (size_t i = 0; i + 1 < forced.size(); i++) {
        const auto t0 = std::chrono::steady_clock::now();
        tok_[0] = forced[i];
        seq_[0] = 0;
        slot_[0] = seqs_->next_slot(0);
        pos_[0] = seqs_->next_pos(0);
        note_write(0, slot_[0], pos_[0]);
        seq_append(0, 1);
        n_tok_ = 1;
        out_[0] = 0;
        run(1);
        evict(0);
        std::copy(logits_.begin(), logits_.begin() + c.n_vocab, out.begin() + int64_t(i + 1) * c.n_vocab);
        if (step_ms) step_ms->push_back(ms_since(t0));
    }
    return out;
}

}  // namespace kvscope
