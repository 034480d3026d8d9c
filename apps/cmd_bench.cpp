// kvscope bench: engine performance rows against the roofline of this machine, measured in the
// same run; --vs-torch runs the PyTorch eager baseline on the same checkpoint and shapes.
#include <cstdio>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "analysis/hw.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/paths.h"
#include "experiments/bench.h"
#include "ops/gemv_avx512.h"

namespace kvscope::cli {

namespace fs = std::filesystem;

namespace {

struct BenchOpts {
    std::string model = "distilgpt2", out = "results";
    int threads = 0, reps = 5, warmup = 1, prompt_len = 8, new_tokens = 128;
    bool vs_torch = false, quick = false;
};

nlohmann::json torch_baseline(const std::string& dir, int threads, const std::string& dtype, int P, int N, int reps) {
    const fs::path script = find_shipped("tools/torch_baseline.py");
    if (script.empty())
        fail("--vs-torch: tools/torch_baseline.py is not beside this kvscope binary (looked in {}/tools)",
             shipped_dirs().empty() ? std::string("?") : shipped_dirs().front().string());
    if (!fs::exists("/usr/bin/python3")) fail("--vs-torch: /usr/bin/python3 not found (apt-get install python3-torch)");
    std::string cmd = fmt::format(
        "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS={0} /usr/bin/python3 "
        "'{1}' --model '{2}' --threads {0} --dtype {3} --prompt-len {4} --new-tokens {5} --reps {6} 2>/dev/null",
        threads, script.string(), absolute_path(dir).string(), dtype, P, N, reps);
    FILE* f = popen(cmd.c_str(), "r");
    if (!f) fail("--vs-torch: cannot run {}", script.string());
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    pclose(f);
    try {
        return nlohmann::json::parse(out);
    } catch (const std::exception&) {
        fail("--vs-torch: tools/torch_baseline.py printed no JSON (is python3-torch installed for /usr/bin/python3?)");
    }
}

}  // namespace

void add_bench(CLI::App& app) {
    auto* cmd = app.add_subcommand("bench", "Engine speed against this machine's roofline (and PyTorch with --vs-torch)");
    auto o = std::make_shared<BenchOpts>();
    cmd->add_option("--model", o->model, "Model directory, Hugging Face name, or preset")->capture_default_str();
    cmd->add_option("--out", o->out, "Writes bench.csv, bench_depth.csv, bench_floor.csv and their .json here")->capture_default_str();
    cmd->add_option("--threads", o->threads, "Threads (0 = one per CPU)")->capture_default_str();
    cmd->add_option("--reps", o->reps, "Repetitions")->capture_default_str();
    cmd->add_option("--warmup", o->warmup, "Warm-up runs")->capture_default_str();
    cmd->add_option("--prompt-len", o->prompt_len, "Prompt tokens of the decode rows")->capture_default_str();
    cmd->add_option("--new-tokens", o->new_tokens, "New tokens of the decode rows")->capture_default_str();
    cmd->add_flag("--vs-torch", o->vs_torch, "Also run PyTorch eager (tools/torch_baseline.py) on the same shapes");
    cmd->add_flag("--quick", o->quick, "Quick hardware probe and 2 repetitions (smoke test)");
    cmd->callback([o]() {
        if (o->reps < 1 || o->prompt_len < 1 || o->new_tokens < 2)
            fail("bench: --reps >= 1, --prompt-len >= 1 and --new-tokens >= 2 expected");
        ensure_output_dir(o->out, "--out");
        exp::Context ctx;
        ctx.model_spec = o->model;
        ctx.out_dir = o->out;
        ctx.threads = set_threads(o->threads);
        ctx.reps = o->quick ? std::min(o->reps, 2) : o->reps;
        ctx.warmup = o->warmup;
        ctx.quick = o->quick;
        ctx.command = "kvscope bench";
        ctx.model(DType::F32);
        // The ceilings are measured now, in the same run: bandwidth drifts from minute to minute.
        std::fprintf(stderr, "kvscope bench: measuring this machine's bandwidth and FLOP/s...\n");
        ctx.hw = analysis::probe_hardware(ctx.threads, o->quick);
        const exp::Bench bench = exp::run_bench(ctx, o->prompt_len, o->new_tokens);
        const auto& rows = bench.rows;
        std::vector<std::string> header = exp::common_columns();
        header.push_back("label");
        auto rc = exp::roofline_columns();
        header.insert(header.end(), rc.begin(), rc.end());
        std::vector<std::vector<std::string>> csv;
        for (const auto& r : rows) {
            auto row = exp::common_row(ctx, "bench", r.spec, r.result);
            row.push_back(r.label);
            auto v = exp::roofline_values(r.point);
            row.insert(row.end(), v.begin(), v.end());
            csv.push_back(row);
        }
        exp::write_results(ctx, "bench", header, csv);
        const exp::DepthSweep& ds = bench.depth;
        if (!ds.engine.rounds.empty()) {
            std::vector<std::vector<std::string>> drows;
            for (size_t i = 0; i < ds.engine.rounds.size(); i++) {
                const exp::DepthWindow& w = ds.engine.rounds[i];
                const exp::DepthWindow& f = ds.floor.rounds[i];  // the same round's read floor
                drows.push_back({std::to_string(i + 1), std::to_string(ds.steps), std::to_string(ds.shallow_lo),
                                 std::to_string(ds.shallow_hi), std::to_string(ds.deep_lo), std::to_string(ds.deep_hi),
                                 exp::fmt_num(w.shallow_ms), exp::fmt_num(w.deep_ms), exp::fmt_num(100 * w.rise),
                                 exp::fmt_num(100 * ds.bytes_rise), exp::fmt_num(w.ms_per_key * 1e3),
                                 exp::fmt_num(f.shallow_ms), exp::fmt_num(f.deep_ms), exp::fmt_num(100 * f.rise),
                                 exp::fmt_num(f.ms_per_key * 1e3)});
            }
            exp::write_results(ctx, "bench_depth",
                               {"rep", "steps", "shallow_lo", "shallow_hi", "deep_lo", "deep_hi",
                                "shallow_ms", "deep_ms", "rise_pct", "bytes_rise_pct", "us_per_key", "floor_shallow_ms",
                                "floor_deep_ms", "floor_rise_pct", "floor_us_per_key"},
                               drows);
        }
        if (!bench.floor.empty() && !bench.floor[0].rounds.empty()) {
            std::vector<std::vector<std::string>> frows;
            for (const exp::FloorSeries& f : bench.floor)
                for (size_t i = 0; i < f.rounds.size(); i++)
                    frows.push_back({std::to_string(i + 1), dtype_name(f.weights), std::to_string(f.lo),
                                     std::to_string(f.hi), exp::fmt_num(f.bytes), exp::fmt_num(f.rounds[i].engine_ms),
                                     exp::fmt_num(f.rounds[i].floor_ms),
                                     exp::fmt_num(100 * f.rounds[i].floor_ms / f.rounds[i].engine_ms)});
            exp::write_results(ctx, "bench_floor",
                               {"rep", "dtype", "depth_lo", "depth_hi", "bytes_per_step", "engine_ms", "floor_ms",
                                "pct_of_floor"},
                               frows);
        }
        Model& m = ctx.model(DType::F32);
        std::printf("kvscope bench: %s (weights=%s), %d threads, %s\nkernels: %s\n", o->model.c_str(),
                    m.weights_kind(), ctx.threads, ctx.hw.cpu_model.c_str(), ops::avx512::kernels_summary());
        std::string wins;
        for (auto [k, n] : bench.bw_wins) wins += fmt::format("{}{}x{}", wins.empty() ? "" : " ", n, k);
        std::printf("ceilings measured now: %.1f GFLOP/s fp32; read bandwidth %.1f GB/s at the start (best of 1-8\n"
                    "streams/thread, median), %.1f GB/s during the runs (median of %d samples, each the best of 1-8\n"
                    "streams/thread; range %.1f-%.1f; samples won x streams: %s): the roofline below uses the latter\n\n",
                    ctx.hw.gflops_all.median, ctx.hw.bw_gbs_all.median, bench.bw_during.median, bench.bw_during.reps,
                    bench.bw_during.min, bench.bw_during.max, wins.c_str());
        std::printf("%s", exp::bench_table(rows).c_str());
        if (!ds.engine.rounds.empty()) std::printf("\n%s", exp::depth_summary(ds).c_str());
        if (!bench.floor.empty()) std::printf("\n%s", exp::floor_summary(bench.floor).c_str());
        if (o->vs_torch) {
            std::printf("\nPyTorch eager (tools/torch_baseline.py, same checkpoint, prompt %d, %d new tokens):\n",
                        o->prompt_len, o->new_tokens);
            for (auto [label, dt] : {std::pair{"fp32", "float32"}, std::pair{"bf16", "bfloat16"}}) {
                nlohmann::json j = torch_baseline(m.source.path.string(), ctx.threads, dt, o->prompt_len, o->new_tokens,
                                                  std::max(1, std::min(ctx.reps, 3)));
                if (j.contains("error")) {
                    std::printf("  %s: %s\n", label, j["error"].get<std::string>().c_str());
                    continue;
                }
                double t = j["decode_tok_s_median"].get<double>();
                double ours = 0;
                for (const auto& r : rows)
                    if (r.label == fmt::format("decode {} b1", label)) ours = r.point.tok_s;
                std::printf("  decode %s b1: PyTorch %.1f tok/s, kvscope %.1f tok/s: %.2fx\n", label, t, ours, ours / t);
            }
        }
        std::fprintf(stderr, "kvscope bench: wrote %s/bench.csv%s, bench_floor.csv\n", o->out.c_str(),
                     ds.engine.rounds.empty() ? "" : ", bench_depth.csv");
    });
}

}  // namespace kvscope::cli
