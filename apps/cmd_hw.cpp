#include <cstdio>

#include "analysis/hw.h"
#include "apps/commands.h"
#include "ops/gemv_avx512.h"

namespace kvscope::cli {

void add_hw(CLI::App& app) {
    auto* cmd = app.add_subcommand("hw", "Describe this machine and measure its bandwidth and FLOP/s ceilings");
    struct Opts { bool fresh = false, quick = false, json = false; int threads = 0; };
    auto o = std::make_shared<Opts>();
    cmd->add_flag("--fresh", o->fresh, "Measure again instead of reusing the cached figures");
    cmd->add_flag("--quick", o->quick, "Small buffers and few repetitions (smoke test)");
    cmd->add_flag("--json", o->json, "Print JSON");
    cmd->add_option("--threads", o->threads, "Threads for the all-thread figures (0 = one per CPU)")->capture_default_str();
    cmd->callback([o]() {
        int t = set_threads(o->threads);
        analysis::HwInfo hw = analysis::load_or_probe(analysis::default_cache_file(), t, o->fresh, o->quick);
        if (o->json) std::printf("%s\n", analysis::to_json(hw).dump(2).c_str());
        else std::printf("%s%-18s%s\n\ncached in %s (use --fresh to measure again)\n",
                         analysis::format_table(hw).c_str(), "kvscope kernels", ops::avx512::kernels_summary(),
                         analysis::default_cache_file().c_str());
    });
}

}  // namespace kvscope::cli
