// `kvscope report`: from a results directory (the CSVs and JSON sidecars of docs/SCHEMA.md)
// to DIR/plots/ (gnuplot PNG + SVG), DIR/report.html (self-contained), DIR/report.md and
// DIR/findings.json (every number the findings quote, with the CSV cell it came from).
// docs/REPORT.md describes the outputs.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kvscope::report {

struct ReportSummary {
    std::filesystem::path html, markdown, findings;
    int plots = 0, plots_redrawn = 0, n_findings = 0;
    std::vector<std::string> skipped;  // "batch: batch.csv is absent (batch_throughput, ...)"
};

// Reads and checks every input first, then draws the plots, then replaces report.md,
// report.html and findings.json. Any failure throws kvscope::Error (one line naming the file)
// before a report file is touched: an earlier report stays as it was.
ReportSummary make_report(const std::filesystem::path& results_dir);

// The same, for callers that only need the files (kvscope study).
void write_report(const std::filesystem::path& results_dir);

}  // namespace kvscope::report
