#include <cstdio>

#include <fmt/core.h>

#include "apps/commands.h"
#include "kv/kv_codec.h"
#include "model/loader.h"

namespace kvscope::cli {

static std::string mib(double b) { return fmt::format("{:.2f} MiB", b / (1024.0 * 1024.0)); }

void add_info(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Show a model's configuration, parameter count and memory per token");
    auto model = std::make_shared<std::string>("distilgpt2");
    auto tokenizer = std::make_shared<std::string>();
    cmd->add_option("--model", *model, "Model directory, llama2.c .bin, Hugging Face name, or preset")->capture_default_str();
    cmd->add_option("--tokenizer", *tokenizer, "Tokenizer file instead of the model's own");
    cmd->callback([model, tokenizer]() {
        Model m = load_model(*model, DType::F32, /*with_weights=*/false, *tokenizer);
        const ModelConfig& c = m.cfg;
        fmt::print("model          {}\n", m.name);
        fmt::print("source         {} ({})\n", m.source.path.string(), m.source.how);
        fmt::print("weights        {}\n", m.weights_kind());
        fmt::print("architecture   {} (model_type {})\n", arch_name(c.arch), c.model_type);
        fmt::print("layers         {}\n", c.n_layer);
        fmt::print("hidden size    {}\n", c.n_embd);
        fmt::print("heads          {}\n", c.n_head);
        fmt::print("kv heads       {}{}\n", c.n_kv_head,
                   c.n_kv_head == c.n_head ? " (multi-head attention)"
                                           : fmt::format(" (grouped-query attention: {} query heads per KV head)", c.group_size()));
        fmt::print("head_dim       {}\n", c.head_dim);
        fmt::print("mlp size       {}\n", c.n_ff);
        fmt::print("vocabulary     {}\n", c.n_vocab);
        fmt::print("context        {}\n", c.n_ctx);
        if (c.arch == Arch::LLAMA) {
            fmt::print("rope           theta {}, {} pairs{}\n", c.rope_theta,
                       c.rope_layout == RopeLayout::Interleaved ? "interleaved (llama2.c)" : "rotate-half (Hugging Face)",
                       c.rope_scaling.type.empty() ? "" : fmt::format(", scaling {} x{}", c.rope_scaling.type, c.rope_scaling.factor));
            fmt::print("output head    {}\n", c.tied_embeddings ? "tied to the embedding" : "its own matrix");
        }
        fmt::print("parameters     {} ({:.1f} M)\n", c.n_params(), double(c.n_params()) / 1e6);
        fmt::print("tokenizer      {}\n", m.tokenizer ? m.tokenizer->kind() : std::string("none (use --prompt-ids)"));
        fmt::print("weight bytes   fp32 {}   fp16/bf16 {}\n", mib(double(c.n_params()) * 4), mib(double(c.n_params()) * 2));
        fmt::print("KV bytes/token (2 x n_layer x n_kv_head x head_dim x bytes = 2 x {} x {} x {} x bytes)\n", c.n_layer,
                   c.n_kv_head, c.head_dim);
        for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I8, DType::I4, DType::I2}) {
            KvFormat f = t;
            if (f.k.axis != KvAxis::None) {
                const int g = f.k.group > 0 && f.k.group < c.head_dim ? f.k.group : c.head_dim;
                if (c.head_dim % 8 != 0 || c.head_dim % g != 0) continue;  // the default group does not fit this head
                f = KvFormat(kv_codec_for(f.k, c.head_dim, "--kv-dtype"));
            }
            const auto b = int64_t(kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, f));
            fmt::print("  {:<14} {:>8} B/token   {} at full context ({} tokens){}\n", kv_format_name(f), b,
                       mib(double(b) * c.n_ctx), c.n_ctx, f.k.axis == KvAxis::None ? "" : ", fp16 scales included");
        }
        if (c.n_kv_head != c.n_head)
            fmt::print("  with n_kv_head = n_head ({}) it would be {}x larger: grouped-query attention saves {:.0f}%\n",
                       c.n_head, c.group_size(), 100.0 * (1.0 - 1.0 / c.group_size()));
    });
}

}  // namespace kvscope::cli
