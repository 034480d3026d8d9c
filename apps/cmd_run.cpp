// kvscope run: one generation with the seed scripts' flags, an honest summary, a CSV row.
#include <cstdio>
#include <fstream>

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "analysis/process.h"
#include "analysis/stats.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "kv/kv_codec.h"
#include "kv/kv_evict.h"
#include "model/loader.h"
#include "report/csv.h"
#include "runtime/engine.h"
#include "runtime/prompts.h"

namespace kvscope::cli {

namespace {

struct RunOpts {
    std::string model = "distilgpt2", tokenizer, dtype = "fp32", kv_dtype = "", k_dtype, v_dtype, device = "cpu", csv,
        padding = "none", kv_layout = "contiguous", kv_policy = "full", kv_budget;
    std::vector<std::string> prompts, prompt_ids;
    int use_cache = 1, batch = 1, prompt_len = 32, max_new = 64, threads = 0, warmup = 1, top_k = 0, kv_residual = 0, kv_sinks = 0,
        kv_block = 16, evict_sinks = 4, evict_recent = -1, snapkv_window = 32, snapkv_pool = 7;
    bool no_cache = false, prefix_cache = false, json = false, ignore_eos = false, quiet = false;
    float temperature = 0.0f, top_p = 1.0f;
    uint64_t seed = 0;
};

const std::vector<std::string> kCsvHeader = {
    // The seed scripts' logs.csv columns, in their order...
    "model", "dtype", "device", "use_cache", "batch_size", "prompt_len", "max_new_tokens", "total_time_s",
    "tokens_generated", "tokens_per_s", "p50_latency_s", "p95_latency_s", "peak_mem_mb",
    // ...then kvscope's own.
    "weights", "kv_dtype", "threads", "prefill_ms", "decode_tok_s", "p50_ms", "p95_ms", "kv_bytes",
    "peak_rss_bytes", "commit"};

void check_csv_header(const std::string& path) {
    std::ifstream f(path);
    if (!f) return;
    std::string first;
    std::getline(f, first);
    if (first.empty()) return;
    std::string want = csv_line(kCsvHeader);
    want.pop_back();
    if (first != want)
        fail("--csv {}: existing file has a different header (expected kvscope run's columns: {}); use a new file",
             path, want);
}

std::string g(double v) { return fmt::format("{:.6g}", v); }

// Prompt and continuation decoded as one sequence (SentencePiece-style decoders treat a
// sequence's first piece differently, so decoding the two halves apart would differ).
std::string whole_text(const Tokenizer& tok, const std::vector<int32_t>& prompt, const std::vector<int32_t>& gen) {
    std::vector<int32_t> all(prompt);
    all.insert(all.end(), gen.begin(), gen.end());
    return tok.decode(all);
}

void run(const RunOpts& o) {
    DType wt;
    if (!parse_dtype(o.dtype, &wt) || (wt != DType::F32 && wt != DType::F16 && wt != DType::BF16))
        fail("--dtype {}: expected fp32, fp16 or bf16 (or float32, float16, bfloat16)", o.dtype);
    const KvFormat kt = parse_kv_format(o.kv_dtype, o.k_dtype, o.v_dtype, o.kv_residual, o.kv_sinks);
    if (o.device != "cpu")
        fail("--device {}: this build has no GPU backend; kvscope runs on the CPU (use --device cpu)", o.device);
    if (o.use_cache != 0 && o.use_cache != 1) fail("--use_cache {}: expected 0 or 1", o.use_cache);
    if (o.padding != "none" && o.padding != "left") fail("--padding {}: expected none or left", o.padding);
    if (o.kv_layout != "contiguous" && o.kv_layout != "paged")
        fail("--kv-layout {}: expected contiguous or paged", o.kv_layout);
    const bool paged = o.kv_layout == "paged";
    if (paged && (o.kv_block < 1 || o.kv_block > 4096)) fail("--kv-block {}: expected 1 to 4096 tokens per block", o.kv_block);
    if (o.prefix_cache && !paged) fail("--prefix-cache: needs --kv-layout paged (blocks are what is shared)");
    if (o.batch < 1) fail("--batch-size {}: expected at least 1", o.batch);
    if (o.max_new < 1) fail("--max-new-tokens {}: expected at least 1", o.max_new);
    if (o.prompt_len < 1) fail("--prompt-len {}: expected at least 1", o.prompt_len);
    if (o.temperature < 0) fail("--temperature {}: expected >= 0", o.temperature);
    if (!(o.top_p > 0 && o.top_p <= 1)) fail("--top-p {}: expected a value in (0, 1]", o.top_p);
    if (!o.csv.empty()) {
        ensure_output_dir(std::filesystem::path(o.csv).parent_path(), "--csv " + o.csv + ":");
        check_csv_header(o.csv);
    }
    const bool use_cache = o.use_cache == 1 && !o.no_cache;
    const int threads = set_threads(o.threads);

    Model m = load_model(o.model, wt, true, o.tokenizer);
    const ModelConfig& c = m.cfg;

    // Prompts: explicit ids, explicit texts, or the seeds' fixed text cut to --prompt-len tokens.
    std::vector<std::vector<int32_t>> base;
    for (const auto& s : o.prompt_ids) base.push_back(parse_ids(s, c.n_vocab, "--prompt-ids"));
    for (const auto& s : o.prompts) {
        if (!m.tokenizer)
            fail("--prompt: {} has no tokenizer (tokenizer.model, tokenizer.json, vocab.json + merges.txt or a llama2.c "
                 "tok*.bin); give one with --tokenizer, or use --prompt-ids", m.source.path.string());
        base.push_back(m.tokenizer->encode_prompt(s));
        if (base.back().empty()) fail("--prompt \"{}\": encodes to no tokens", s);
    }
    if (base.empty()) base.push_back(prompt_of_length(m.tokenizer.get(), c.n_vocab, o.prompt_len));
    std::vector<std::vector<int32_t>> prompts;
    for (int b = 0; b < o.batch; b++) prompts.push_back(base[size_t(b) % base.size()]);
    int max_prompt = 0;
    for (const auto& p : prompts) max_prompt = std::max(max_prompt, int(p.size()));

    EngineOptions eo;
    eo.n_seq = o.batch;
    eo.max_prompt = max_prompt;
    eo.max_new_tokens = o.max_new;
    eo.use_cache = use_cache;
    eo.left_pad = o.padding == "left";
    eo.kv_dtype = kt;
    eo.kv_block = paged ? o.kv_block : 0;
    eo.prefix_cache = o.prefix_cache;
    eo.policy.kind = parse_kv_policy(o.kv_policy, "--kv-policy");
    if (eo.policy.bounded()) {
        if (o.kv_budget.empty()) fail("--kv-policy {}: give the tokens to keep with --kv-budget (e.g. 256 or 0.25)", o.kv_policy);
        eo.policy.budget = parse_kv_budget(o.kv_budget, c.n_ctx, "--kv-budget");
        eo.policy.sinks = o.evict_sinks;
        eo.policy.recent = o.evict_recent;
        eo.policy.window = o.snapkv_window;
        eo.policy.pool = o.snapkv_pool;
        eo.policy.validate();
    } else if (!o.kv_budget.empty()) {
        fail("--kv-budget {}: needs a bounded --kv-policy (window, sinks, h2o, snapkv or tova)", o.kv_budget);
    }
    if (!eo.policy.bounded() && max_prompt + o.max_new > c.n_ctx)
        fail("prompt ({} tokens) + --max-new-tokens ({}) = {} exceeds the context window of {} ({} positions)",
             max_prompt, o.max_new, max_prompt + o.max_new, o.model, c.n_ctx);
    Engine engine(*m.weights, eo);
    GenerateOptions go;
    go.max_new_tokens = o.max_new;
    go.stop_at_eos = !o.ignore_eos;
    go.sampling = {o.temperature, o.top_k, o.top_p, o.seed};
    for (int i = 0; i < o.warmup; i++) engine.generate(prompts, go);
    GenerateResult r = engine.generate(prompts, go);

    Summary st = summarize(r.step_ms);
    double decode_ms = 0;
    int64_t decode_tokens = 0;
    for (size_t i = 0; i < r.step_ms.size(); i++) {
        decode_ms += r.step_ms[i];
        decode_tokens += r.step_tokens[i];
    }
    const double decode_tok_s = decode_ms > 0 ? double(decode_tokens) / (decode_ms / 1e3) : 0.0;
    const double tok_s = double(r.tokens_generated) / (r.total_ms / 1e3);
    const int64_t rss = peak_rss_bytes();

    if (!o.csv.empty()) {
        std::vector<std::string> row = {o.model, dtype_name(wt), "cpu", use_cache ? "1" : "0", std::to_string(o.batch),
                                        std::to_string(max_prompt), std::to_string(o.max_new), g(r.total_ms / 1e3),
                                        std::to_string(r.tokens_generated), g(tok_s), g(st.median / 1e3),
                                        g(st.p95 / 1e3), g(double(rss) / 1048576.0), m.weights_kind(),
                                        kv_format_name(kt), std::to_string(threads), g(r.prefill_ms), g(decode_tok_s),
                                        g(st.median), g(st.p95), std::to_string(engine.kv_bytes()),
                                        std::to_string(rss), build_commit()};
        append_csv_row(o.csv, kCsvHeader, row, "--csv");
    }
    if (o.json) {
        nlohmann::json j;
        j["model"] = o.model;
        j["model_dir"] = m.source.path.string();
        j["arch"] = arch_name(c.arch);
        j["weights"] = m.weights_kind();
        j["dtype"] = dtype_name(wt);
        j["kv_dtype"] = kv_format_name(kt);
        j["kv_layout"] = o.kv_layout;
        j["kv_policy"] = kv_policy_name(eo.policy.kind);
        if (eo.policy.bounded()) {
            j["kv_budget"] = eo.policy.budget;
            j["kv_policy_label"] = kv_policy_label(eo.policy);
            j["kv_tokens_held"] = engine.held(0);
        }
        if (paged) {
            j["kv_block"] = o.kv_block;
            j["kv_blocks"] = engine.block_pool()->n_blocks();
            j["prefix_cache"] = o.prefix_cache;
            j["prefix_tokens_reused"] = r.prefix_tokens_reused;
            j["prompt_tokens_total"] = r.prompt_tokens;
        }
        j["device"] = "cpu";
        j["use_cache"] = use_cache;
        j["batch_size"] = o.batch;
        j["padding"] = o.padding;
        j["prompt_len"] = max_prompt;
        j["max_new_tokens"] = o.max_new;
        j["threads"] = threads;
        j["seed"] = o.seed;
        j["temperature"] = o.temperature;
        j["prefill_ms"] = r.prefill_ms;
        j["total_time_s"] = r.total_ms / 1e3;
        j["tokens_generated"] = r.tokens_generated;
        j["tokens_per_s"] = tok_s;
        j["decode_tok_s"] = decode_tok_s;
        j["p50_ms"] = st.median;
        j["p95_ms"] = st.p95;
        j["kv_bytes"] = engine.kv_bytes();
        j["scratch_bytes"] = engine.scratch_bytes();
        j["weight_bytes"] = m.weights->bytes();
        j["peak_rss_bytes"] = rss;
        j["commit"] = build_commit();
        j["prompt_tokens"] = prompts;
        j["tokens"] = r.tokens;
        if (m.tokenizer) {
            std::vector<std::string> texts;
            for (const auto& t : r.tokens) texts.push_back(m.tokenizer->decode(t));
            j["text"] = texts;
            std::vector<std::string> full;
            for (int b = 0; b < o.batch; b++) full.push_back(whole_text(*m.tokenizer, prompts[size_t(b)], r.tokens[size_t(b)]));
            j["full_text"] = full;
        }
        j["step_ms"] = r.step_ms;
        std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return;
    }
    if (!o.quiet) {
        for (int b = 0; b < o.batch; b++) {
            const auto& t = r.tokens[size_t(b)];
            if (m.tokenizer)
                fmt::print("[{}] {}\n", b, whole_text(*m.tokenizer, prompts[size_t(b)], t));
            else
                fmt::print("[{}] new token ids: {}\n", b, fmt::format("{}", fmt::join(t, ",")));
        }
    }
    fmt::print("---\n");
    fmt::print("model {} ({}, weights={}, {}), dtype {}, kv {}, cache {}, batch {}, prompt {} tokens, {} threads\n", o.model,
               arch_name(c.arch), m.weights_kind(), m.source.how, dtype_name(wt), kv_format_name(kt),
               use_cache ? "on" : "off", o.batch, max_prompt, threads);
    if (paged) {
        const KvBlockPool& pool = *engine.block_pool();
        fmt::print("KV layout paged: {} blocks of {} tokens; {} blocks cached for prefix reuse, {} evicted\n",
                   pool.n_blocks(), pool.block_tokens(), pool.n_cached(), pool.evictions());
    }
    if (eo.policy.bounded())
        fmt::print("KV policy {}: {} of {} tokens held per sequence at the end (cache of {} slots)\n",
                   kv_policy_label(eo.policy), engine.held(0), max_prompt + int(r.tokens[0].size()) - 1,
                   engine_slots(eo));
    if (o.prefix_cache)
        fmt::print("prefix cache: {} of {} prompt tokens taken from cached blocks, not prefilled ({} prefill forwards)\n",
                   r.prefix_tokens_reused, r.prompt_tokens, r.prefill_forwards);
    fmt::print("prefill (time to first token) {:.2f} ms\n", r.prefill_ms);
    fmt::print("decode {:.1f} tokens/s, per step p50 {:.3f} ms, p95 {:.3f} ms ({} steps)\n", decode_tok_s, st.median,
               st.p95, r.step_ms.size());
    fmt::print("total {:.3f} s for {} new tokens ({:.1f} tokens/s overall)\n", r.total_ms / 1e3, r.tokens_generated, tok_s);
    fmt::print("KV cache {} bytes allocated ({:.2f} MiB); scratch {:.2f} MiB; weights {:.1f} MiB; peak RSS {:.1f} MiB\n",
               engine.kv_bytes(), double(engine.kv_bytes()) / 1048576.0, double(engine.scratch_bytes()) / 1048576.0,
               double(m.weights->bytes()) / 1048576.0, double(rss) / 1048576.0);
}

}  // namespace

void add_run(CLI::App& app) {
    auto* cmd = app.add_subcommand("run", "Generate once with the cache on or off and report timings");
    auto o = std::make_shared<RunOpts>();
    cmd->add_option("--model", o->model, "Model directory, llama2.c .bin, Hugging Face name, or preset")->capture_default_str();
    cmd->add_option("--tokenizer", o->tokenizer,
                    "Tokenizer file (tokenizer.model, tokenizer.json, llama2.c tok*.bin) instead of the model's own");
    cmd->add_option("--dtype", o->dtype, "Weight storage: fp32, fp16, bf16 (float32/float16/bfloat16 too)")
        ->capture_default_str();
    cmd->add_option("--kv-dtype,--kv_dtype", o->kv_dtype,
                    "KV cache storage of K and V: fp32, fp16, bf16, int8, int4, int2; integers take -gN (channels "
                    "per fp16 scale, 0 = the row) or -cN (keys per channel over N tokens) and -sym/-asym, e.g. "
                    "int4-g64-sym; int4-kivi = keys int4-c32-asym, values int4-g32-asym [fp32; int8 = int8-sym per "
                    "row, int4/int2 = -g32-asym]");
    cmd->add_option("--kv-residual", o->kv_residual,
                    "Keep the most recent N tokens' integer-coded K/V in fp16 (KIVI's window)")->capture_default_str();
    cmd->add_option("--kv-sinks", o->kv_sinks, "Keep the first N tokens' integer-coded K/V in fp16 (attention sinks)")
        ->capture_default_str();
    cmd->add_option("--kv-layout", o->kv_layout,
                    "contiguous (each sequence reserves its whole length) or paged (a pool of blocks, each sequence "
                    "a block table; fp32/fp16/bf16 and per-token integer codecs)")
        ->capture_default_str();
    cmd->add_option("--kv-block", o->kv_block, "Paged layout: tokens per block")->capture_default_str();
    cmd->add_flag("--prefix-cache", o->prefix_cache,
                  "Paged layout: prompts reuse cached blocks of a shared prefix (hash of parent block and tokens) and "
                  "prefill only the rest");
    cmd->add_option("--kv-policy", o->kv_policy,
                    "Keep part of the cache: full, window (newest tokens), sinks (first --evict-sinks + newest, "
                    "StreamingLLM), h2o (newest --evict-recent + most attended), snapkv (observation window + most "
                    "attended by it, pooled), tova (most attended by the newest query); bounded policies may "
                    "generate past a rotary model's context window")
        ->capture_default_str();
    cmd->add_option("--kv-budget", o->kv_budget, "Tokens each sequence keeps with a bounded --kv-policy: N or a fraction of the context (0.25)");
    cmd->add_option("--evict-sinks", o->evict_sinks, "--kv-policy sinks: first tokens never evicted")->capture_default_str();
    cmd->add_option("--evict-recent", o->evict_recent, "--kv-policy h2o: newest tokens always kept (-1 = half the budget)")
        ->capture_default_str();
    cmd->add_option("--snapkv-window", o->snapkv_window, "--kv-policy snapkv: observation window (newest queries and tokens)")
        ->capture_default_str();
    cmd->add_option("--snapkv-pool", o->snapkv_pool, "--kv-policy snapkv: max-pooling width over neighbouring positions (odd)")
        ->capture_default_str();
    cmd->add_option("--k-dtype", o->k_dtype, "Storage of K alone (overrides --kv-dtype for keys)");
    cmd->add_option("--v-dtype", o->v_dtype, "Storage of V alone (overrides --kv-dtype for values)");
    cmd->add_option("--device", o->device, "cpu (the only backend in this build)")->capture_default_str();
    cmd->add_option("--use_cache,--use-cache", o->use_cache, "1: KV cache on, 0: recompute everything each step")
        ->capture_default_str();
    cmd->add_flag("--no-cache", o->no_cache, "Same as --use_cache 0");
    cmd->add_option("--batch_size,--batch-size", o->batch, "Sequences generated together")->capture_default_str();
    cmd->add_option("--prompt_len,--prompt-len", o->prompt_len,
                    "Prompt of exactly N tokens (the seeds' repeated sentence) when no --prompt is given")
        ->capture_default_str();
    cmd->add_option("--max_new_tokens,--max-new-tokens", o->max_new, "Tokens to generate per sequence")
        ->capture_default_str();
    cmd->add_option("--prompt", o->prompts, "Prompt text; repeat for a batch of different prompts");
    cmd->add_option("--prompt-ids,--prompt_ids", o->prompt_ids, "Prompt as token ids 1,2,3; repeatable");
    cmd->add_option("--padding", o->padding,
                    "Unequal prompts: none (packed, no wasted work) or left (pad + mask as Hugging Face)")
        ->capture_default_str();
    cmd->add_option("--temperature", o->temperature, "0 = greedy")->capture_default_str();
    cmd->add_option("--top-k,--top_k", o->top_k, "Sample from the k most likely tokens (0 = all)")->capture_default_str();
    cmd->add_option("--top-p,--top_p", o->top_p, "Nucleus sampling threshold")->capture_default_str();
    cmd->add_option("--seed", o->seed, "Sampling seed")->capture_default_str();
    cmd->add_flag("--ignore-eos", o->ignore_eos, "Always generate --max-new-tokens tokens");
    cmd->add_option("--threads", o->threads, "Threads (0 = one per CPU)")->capture_default_str();
    cmd->add_option("--warmup", o->warmup, "Untimed identical runs first")->capture_default_str();
    cmd->add_option("--csv", o->csv, "Append one row to this CSV (header written when new)");
    cmd->add_flag("--json", o->json, "Print one JSON document (tokens, per-step latencies) instead of text");
    cmd->add_flag("--quiet", o->quiet, "Do not print the generated text");
    cmd->callback([o]() { run(*o); });
}

}  // namespace kvscope::cli
