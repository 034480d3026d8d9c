#include <fmt/core.h>

#include "apps/commands.h"
#include "report/report.h"

namespace kvscope::cli {

void add_report(CLI::App& app) {
    auto* cmd = app.add_subcommand("report", "Plots (gnuplot PNG + SVG), report.html, report.md and findings.json from a results directory");
    auto dir = std::make_shared<std::string>("results");
    cmd->add_option("--results", *dir, "Directory holding the experiments' CSVs and JSON sidecars")->capture_default_str();
    cmd->callback([dir]() {
        report::ReportSummary s = report::make_report(*dir);
        fmt::print("report   {}\n         {}\n", s.html.string(), s.markdown.string());
        fmt::print("findings {} ({} sentences, every number traced to its CSV cell)\n", s.findings.string(), s.n_findings);
        fmt::print("plots    {} in {}/plots ({} redrawn, {} up to date)\n", s.plots, *dir, s.plots_redrawn, s.plots - s.plots_redrawn);
        for (const std::string& k : s.skipped) fmt::print("skipped  {}\n", k);
    });
}

}  // namespace kvscope::cli
