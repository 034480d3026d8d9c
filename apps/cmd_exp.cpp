// kvscope exp NAME: one experiment (or all of them) over a grid given by list-valued flags.
#include <cmath>
#include <cstdio>
#include <utility>

#include <fmt/core.h>

#include "analysis/hw.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "experiments/experiments.h"
#include "experiments/trace.h"
#include "kv/kv_codec.h"
#include "kv/kv_evict.h"
#include "runtime/scheduler.h"

namespace kvscope::cli {

namespace {

std::vector<KvFormat> parse_kv_formats(const std::vector<std::string>& v, const char* flag) {
    std::vector<KvFormat> out;
    for (const auto& s : v) out.push_back(parse_kv_format_spec(s, flag));
    return out;
}

std::vector<DType> parse_dtypes(const std::vector<std::string>& v, const char* flag) {
    std::vector<DType> out;
    for (const auto& s : v) {
        DType t;
        if (!parse_dtype(s, &t) || (t != DType::F32 && t != DType::F16 && t != DType::BF16))
            fail("{} {}: expected fp32, fp16 or bf16", flag, s);
        out.push_back(t);
    }
    return out;
}

void check_positive(const std::vector<int>& v, const char* flag) {
    for (int x : v)
        if (x < 1) fail("{} {}: expected positive integers", flag, x);
}

}  // namespace

void add_exp_options(CLI::App* cmd, ExpOpts& o) {
    cmd->add_option("--model", o.model, "Model directory, llama2.c .bin, Hugging Face name, or preset")->capture_default_str();
    cmd->add_option("--tokenizer", o.tokenizer, "Tokenizer file instead of the model's own (e.g. a llama2.c tok512.bin)");
    cmd->add_option("--out", o.out, "Directory for <experiment>.csv and .json")->capture_default_str();
    cmd->add_option("--reps", o.reps, "Measured repetitions per configuration")->capture_default_str();
    cmd->add_option("--warmup", o.warmup, "Untimed warm-up runs per configuration")->capture_default_str();
    cmd->add_option("--threads", o.threads, "Threads (0 = one per CPU)")->capture_default_str();
    cmd->add_option("--max-config-seconds", o.max_config_seconds,
                    "Stop repeating a configuration once its repetitions would pass this many seconds")
        ->capture_default_str();
    cmd->add_flag("--quick", o.quick, "Smoke-sized grids (CI)");
    cmd->add_flag("--fresh-hw", o.fresh_hw, "Measure the machine's ceilings again instead of reusing kvscope hw's cache");
    cmd->add_option("--len", o.g_lengths, "cache: new tokens, e.g. 32,64,128")->delimiter(',');
    cmd->add_option("--batch", o.g_batches, "batch/memory/roofline: batch sizes, e.g. 1,2,4,8; quant: its batch")->delimiter(',');
    cmd->add_option("--context", o.g_contexts, "seqlen/memory: contexts; roofline: prefill lengths; quant: its context")
        ->delimiter(',');
    cmd->add_option("--dtypes", o.g_wt, "precision: weight dtypes, e.g. fp32,bf16,fp16")->delimiter(',');
    cmd->add_option("--kv-dtypes", o.g_kv,
                    "precision/memory/quant: KV storage, e.g. fp32,fp16,int8,int4-g64,int8/int4 (K/V apart), "
                    "int4-kivi+r128+s4 (+rN window, +sN sinks; kvscope run --help: --kv-dtype)")
        ->delimiter(',');
    cmd->add_option("--prompt-len", o.prompt_len, "Prompt tokens (0 = the experiment's default; quant: stream length)")
        ->capture_default_str();
    cmd->add_option("--new-tokens", o.new_tokens, "New tokens (0 = the experiment's default)")->capture_default_str();
    cmd->add_option("--policies", o.policies, "serving: KV policies, e.g. static,paged,prefix (default all three)")
        ->delimiter(',');
    cmd->add_option("--rates", o.rates,
                    "serving: request rates (requests/s, Poisson arrivals); default: fractions of the capacity measured "
                    "with every request waiting at once")
        ->delimiter(',');
    cmd->add_option("--trace", o.trace,
                    "serving: a trace CSV (arrival_s, prompt_len, output_len[, shared_prefix_len]) instead of a "
                    "generated one");
    cmd->add_option("--requests", o.requests, "serving: requests in the generated trace (0 = 48, --quick 8)")
        ->capture_default_str();
    cmd->add_option("--prompt-lens", o.prompt_lens,
                    "serving: prompt tokens after the system prompt, N or LO-HI (default context/32 to context/8)");
    cmd->add_option("--output-lens", o.output_lens, "serving: new tokens per request, N or LO-HI (default context/64 to context/16)");
    cmd->add_option("--system-prompt", o.system_prompt,
                    "serving: tokens of a system prompt every generated request starts with (-1 = context/8)")
        ->capture_default_str();
    cmd->add_option("--kv-tokens", o.kv_tokens, "serving: the KV budget in token slots (0 = 2 x --max-len)")
        ->capture_default_str();
    cmd->add_option("--kv-block", o.kv_block, "serving: tokens per KV block of the paged policies")->capture_default_str();
    cmd->add_option("--max-len", o.max_len,
                    "serving: most tokens one request holds; static reserves this many (0 = the context window)")
        ->capture_default_str();
    cmd->add_option("--step-tokens", o.step_tokens, "serving: most tokens one forward computes (0 = 256)")
        ->capture_default_str();
    cmd->add_option("--max-seqs", o.max_seqs, "serving: most requests running at once (0 = 64)")->capture_default_str();
    cmd->add_option("--seed", o.seed, "serving: seed of the generated trace's lengths, arrivals and tokens")
        ->capture_default_str();
    cmd->add_option("--kv-policies", o.kv_policies, "evict: policies, e.g. window,sinks,h2o,snapkv,tova (default all)")
        ->delimiter(',');
    cmd->add_option("--budgets", o.budgets, "evict: budgets as fractions of the stream, e.g. 0.1,0.25,0.5,0.75,1")
        ->delimiter(',');
    cmd->add_option("--long-stream", o.long_stream,
                    "evict: tokens of the stream past the context window (rotary models; -1 = 4 x the context, 0 = none)")
        ->capture_default_str();
}

void run_exps(const ExpOpts& o, const std::vector<std::string>& names, const std::string& command) {
    if (o.reps < 1) fail("--reps {}: expected at least 1", o.reps);
    if (o.warmup < 0) fail("--warmup {}: expected 0 or more", o.warmup);
    check_positive(o.g_lengths, "--len");
    check_positive(o.g_batches, "--batch");
    check_positive(o.g_contexts, "--context");
    exp::Grid g;
    g.lengths = o.g_lengths;
    g.batches = o.g_batches;
    g.contexts = o.g_contexts;
    g.weight_dtypes = parse_dtypes(o.g_wt, "--dtypes");
    g.kv_dtypes = parse_kv_formats(o.g_kv, "--kv-dtypes");
    g.prompt_len = o.prompt_len;
    g.new_tokens = o.new_tokens;
    for (double r : o.rates)
        if (!(r > 0) || !std::isfinite(r)) fail("--rates {}: expected positive requests per second", r);
    g.serving.policies = o.policies;
    for (const auto& p : o.policies) parse_serve_policy(p, "--policies");
    g.serving.rates = o.rates;
    g.serving.trace = o.trace;
    if (!o.trace.empty()) exp::load_trace_csv(o.trace);  // a bad trace fails before anything runs
    g.serving.requests = o.requests;
    if (o.requests < 0) fail("--requests {}: expected 1 or more (0 = the default)", o.requests);
    g.serving.prompt_lens = o.prompt_lens;
    g.serving.output_lens = o.output_lens;
    if (!o.prompt_lens.empty()) exp::parse_len_range(o.prompt_lens, "--prompt-lens");
    if (!o.output_lens.empty()) exp::parse_len_range(o.output_lens, "--output-lens");
    g.serving.system_prompt = o.system_prompt;
    if (o.system_prompt < -1) fail("--system-prompt {}: expected 0 or more tokens (-1 = the default)", o.system_prompt);
    g.serving.kv_tokens = o.kv_tokens;
    g.serving.kv_block = o.kv_block;
    g.serving.max_len = o.max_len;
    g.serving.step_tokens = o.step_tokens;
    g.serving.max_seqs = o.max_seqs;
    for (auto [v, flag] : {std::pair{o.kv_tokens, "--kv-tokens"}, {o.max_len, "--max-len"}, {o.step_tokens, "--step-tokens"},
                          {o.max_seqs, "--max-seqs"}})
        if (v < 0) fail("{} {}: expected a positive number (0 = the default)", flag, v);
    if (o.kv_block < 1) fail("--kv-block {}: expected a positive number of tokens per block", o.kv_block);
    g.serving.seed = o.seed;
    for (const auto& p : o.kv_policies) parse_kv_policy(p, "--kv-policies");
    g.evict_policies = o.kv_policies;
    for (double b : o.budgets)
        if (!(b > 0 && b <= 1)) fail("--budgets {}: expected fractions of the stream in (0, 1]", b);
    g.budgets = o.budgets;
    if (o.long_stream < -1) fail("--long-stream {}: expected tokens (0 = none, -1 = 4 x the context)", o.long_stream);
    g.long_stream = o.long_stream;
    for (const auto& n : names) {
        bool known = false;
        for (const auto& k : exp::all_experiment_names()) known |= k == n;
        if (!known)
            fail("exp {}: unknown experiment (expected cache, batch, precision, seqlen, memory, roofline, serving, quant, evict "
                 "or all)", n);
    }
    ensure_output_dir(o.out, "--out");
    exp::Context ctx;
    ctx.model_spec = o.model;
    ctx.tokenizer = o.tokenizer;
    ctx.out_dir = o.out;
    ctx.threads = set_threads(o.threads);
    ctx.reps = o.quick ? std::min(o.reps, 2) : o.reps;
    ctx.warmup = o.warmup;
    ctx.quick = o.quick;
    ctx.max_config_seconds = o.max_config_seconds;
    ctx.command = command;
    ctx.model(DType::F32);  // fail early on a bad --model
    ctx.hw = analysis::load_or_probe(analysis::default_cache_file(), ctx.threads, o.fresh_hw, o.quick);
    for (const auto& n : names) {
        exp::run_experiment(ctx, n, g);
        std::fprintf(stderr, "kvscope: wrote %s/%s.csv\n", o.out.c_str(), n.c_str());
    }
}

void add_exp(CLI::App& app) {
    auto* cmd = app.add_subcommand("exp", "Run an experiment: cache, batch, precision, seqlen, memory, roofline, serving, quant, evict, all");
    auto o = std::make_shared<ExpOpts>();
    auto name = std::make_shared<std::string>();
    cmd->add_option("experiment", *name,
                    "cache | batch | precision | seqlen | memory | roofline | serving | quant | evict | all (all but quant and evict)")
        ->required();
    add_exp_options(cmd, *o);
    cmd->callback([o, name, &app]() {
        std::vector<std::string> names = *name == "all" ? exp::experiment_names() : std::vector<std::string>{*name};
        run_exps(*o, names, "kvscope exp " + *name);
    });
}

}  // namespace kvscope::cli
