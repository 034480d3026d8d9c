#include <cstdio>

#include <fmt/core.h>

#include "apps/commands.h"
#include "kv/kv_layout.h"
#include "model/loader.h"

namespace kvscope::cli {

static std::string mib(double b) { return fmt::format("{:.2f} MiB", b / (1024.0 * 1024.0)); }

void add_info(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Show a model's configuration, parameter count and memory per token");
    auto model = std::make_shared<std::string>("distilgpt2");
    cmd->add_option("--model", *model, "Model directory, Hugging Face name, or preset")->capture_default_str();
    cmd->callback([model]() {
        Model m = load_model(*model, DType::F32, /*with_weights=*/false);
        const ModelConfig& c = m.cfg;
        fmt::print("model          {}\n", m.name);
        fmt::print("directory      {} ({})\n", m.source.dir.string(), m.source.how);
        fmt::print("weights        {}\n", m.weights_kind());
        fmt::print("architecture   {}\n", c.model_type);
        fmt::print("layers         {}\n", c.n_layer);
        fmt::print("hidden size    {}\n", c.n_embd);
        fmt::print("heads          {}\n", c.n_head);
        fmt::print("kv heads       {}\n", c.n_kv_head);
        fmt::print("head_dim       {}\n", c.head_dim);
        fmt::print("mlp size       {}\n", c.n_ff);
        fmt::print("vocabulary     {}\n", c.n_vocab);
        fmt::print("context        {}\n", c.n_ctx);
        fmt::print("parameters     {} ({:.1f} M)\n", c.n_params(), double(c.n_params()) / 1e6);
        fmt::print("tokenizer      {}\n", m.tokenizer ? "GPT-2 byte-level BPE" : "none (use --prompt-ids)");
        fmt::print("weight bytes   fp32 {}   fp16/bf16 {}\n", mib(double(c.n_params()) * 4), mib(double(c.n_params()) * 2));
        fmt::print("KV bytes/token (2 x n_layer x n_kv_head x head_dim x bytes)\n");
        for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I8}) {
            int64_t b = kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, t);
            fmt::print("  {:<5} {:>8} B/token   {} at full context ({} tokens)\n", dtype_name(t), b,
                       mib(double(b) * c.n_ctx), c.n_ctx);
        }
    });
}

}  // namespace kvscope::cli
