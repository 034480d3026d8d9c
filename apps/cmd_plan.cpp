// kvscope plan: a model's weights and KV cache on paper, for any config (no weights needed),
// what fits a device's memory, and its roofline decode and prefill speed there.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "analysis/plan.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/loader.h"
#include "report/csv.h"

namespace kvscope::cli {

void add_plan(CLI::App& app) {
    auto* cmd = app.add_subcommand("plan", "A model's memory and roofline speed on any device, from its config alone");
    struct Opts {
        std::string model, config, device = "H100", memory, bandwidth, flops, weights = "bf16", kv = "fp16", csv;
        int tp = 1, batch = 1, context = 0, prompt = 0;
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("--model", o->model, "Model directory, llama2.c .bin, Hugging Face name, or preset (e.g. llama-3-70b)");
    cmd->add_option("--config", o->config, "Or a Hugging Face config.json (GPT-2, Llama, Mistral, Qwen2, Gemma-style)");
    cmd->add_option("--device", o->device, std::string("Named device: ") + analysis::device_names())->capture_default_str();
    cmd->add_option("--memory", o->memory, "Memory per device for weights + KV, e.g. 80GiB (default: the device's)");
    cmd->add_option("--bandwidth", o->bandwidth, "Memory bandwidth, e.g. 3.35TB/s (overrides the device's)");
    cmd->add_option("--flops", o->flops, "Peak FLOP/s at the weights' precision, e.g. 989TFLOPS (overrides the device's)");
    cmd->add_option("--tp", o->tp, "Tensor parallelism: devices the heads and the cache are split over")->capture_default_str();
    cmd->add_option("--weights", o->weights, "Weight format: fp32, bf16, fp16, int8, int4")->capture_default_str();
    cmd->add_option("--kv", o->kv, "KV cache format: fp32, fp16, fp8, int8, int4")->capture_default_str();
    cmd->add_option("--batch", o->batch, "Sequences decoded together")->capture_default_str();
    cmd->add_option("--context", o->context, "Tokens per sequence (0: the model's window)")->capture_default_str();
    cmd->add_option("--prompt", o->prompt, "Prefill length (0: --context)")->capture_default_str();
    cmd->add_flag("--json", o->json, "Print JSON instead of the table");
    cmd->add_option("--csv", o->csv, "Append the configuration's row to this CSV");
    cmd->callback([o]() {
        analysis::PlanInput in;
        if (!o->config.empty() == !o->model.empty()) fail("plan: give --model or --config (one of them)");
        in.cfg = o->config.empty() ? load_model(o->model, DType::F32, /*with_weights=*/false).cfg : load_config(o->config);
        if (!analysis::named_device(o->device, &in.device))
            fail("--device {}: unknown (expected {})", o->device, analysis::device_names());
        if (!o->bandwidth.empty()) in.device.bandwidth = analysis::parse_rate(o->bandwidth, "--bandwidth");
        if (!o->flops.empty()) in.device.flops = analysis::parse_flops(o->flops, "--flops");
        if (!o->bandwidth.empty() || !o->flops.empty()) in.device.source += " with figures given on the command line";
        if (!o->memory.empty()) in.memory = analysis::parse_bytes(o->memory, "--memory");
        in.weights = o->weights;
        in.kv = o->kv;
        in.tp = o->tp;
        in.batch = o->batch;
        in.context = o->context;
        in.prompt = o->prompt;
        if (o->context < 0 || o->context > in.cfg.n_ctx)
            fail("--context {}: expected 1..{} (the model's window)", o->context, in.cfg.n_ctx);
        if (o->prompt < 0) fail("--prompt {}: expected 0 or more", o->prompt);
        const analysis::PlanResult r = analysis::plan(in);
        if (!o->csv.empty()) {
            ensure_output_dir(std::filesystem::path(o->csv).parent_path(), "--csv " + o->csv + ":");
            append_csv_row(o->csv, analysis::plan_csv_header(), analysis::plan_csv_row(in, r), "--csv");
        }
        if (o->json) fmt::print("{}\n", analysis::plan_json(in, r).dump(2));
        else fmt::print("{}", analysis::plan_table(in, r));
    });
}

}  // namespace kvscope::cli
