#include <cstdio>

#include "apps/commands.h"
#include "core/error.h"
#include "model/config.h"
#include "model/synthetic.h"

namespace kvscope::cli {

void add_make_model(CLI::App& app) {
    auto* cmd = app.add_subcommand("make-model", "Write a Hugging Face model directory with seeded random weights");
    struct Opts { std::string preset, config, out; uint64_t seed = 0; };
    auto o = std::make_shared<Opts>();
    cmd->add_option("--preset", o->preset, std::string("Model shape: ") + preset_names());
    cmd->add_option("--config", o->config, "Or a Hugging Face config.json giving the shape");
    cmd->add_option("--seed", o->seed, "Seed of the random weights")->capture_default_str();
    cmd->add_option("--out", o->out, "Directory to create")->required();
    cmd->callback([o]() {
        ModelConfig cfg;
        std::string name = o->preset;
        if (!o->config.empty()) {
            cfg = load_config(o->config);
            if (name.empty()) name = "custom";
        } else if (o->preset.empty()) {
            fail("make-model: give --preset ({}) or --config FILE", preset_names());
        } else if (!preset_config(o->preset, &cfg)) {
            fail("--preset {}: unknown (expected one of {})", o->preset, preset_names());
        }
        make_synthetic_model(cfg, name, o->seed, o->out);
        std::printf("wrote %s: %s shapes, %lld parameters, seed %llu, weights=synthetic\n", o->out.c_str(),
                    name.c_str(), (long long)cfg.n_params(), (unsigned long long)o->seed);
    });
}

}  // namespace kvscope::cli
