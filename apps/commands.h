// Each kvscope subcommand registers its flags and its action on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

namespace kvscope::cli {

void add_info(CLI::App& app);
void add_run(CLI::App& app);
void add_make_model(CLI::App& app);

// Sets the OpenMP thread count (<= 0: one per online CPU) and returns it.
int set_threads(int n);

}  // namespace kvscope::cli
