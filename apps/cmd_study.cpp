// kvscope study: the main job. Measures the machine, runs every experiment on the model and
// writes the report; ends by printing where the report is.
#include <chrono>
#include <cstdio>

#include "analysis/hw.h"
#include "apps/commands.h"
#include "core/fs.h"
#include "experiments/experiments.h"
#include "report/report.h"

namespace kvscope::cli {

void add_study(CLI::App& app) {
    auto* cmd = app.add_subcommand("study", "The main job: hw, every experiment and the report on one model");
    auto o = std::make_shared<ExpOpts>();
    add_exp_options(cmd, *o);
    cmd->callback([o]() {
        const auto t0 = std::chrono::steady_clock::now();
        ensure_output_dir(o->out, "--out");
        std::fprintf(stderr, "kvscope study: model %s, results in %s/%s\n", o->model.c_str(), o->out.c_str(),
                     o->quick ? " (--quick: smoke-sized grids)" : "");
        run_exps(*o, exp::experiment_names(), "kvscope study");
        std::fprintf(stderr, "kvscope study: writing the report...\n");
        report::write_report(o->out);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("kvscope study: done in %.0f s\n  report: %s/report.html\n  markdown: %s/report.md\n  data: %s/*.csv\n", s,
                    o->out.c_str(), o->out.c_str(), o->out.c_str());
    });
}

}  // namespace kvscope::cli
