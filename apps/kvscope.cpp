// kvscope: the command line. Every failure the user can cause ends as one line on stderr
// ("kvscope: error: ...") and exit status 1; CLI11's own flag errors exit with its codes.
#include <omp.h>
#include <unistd.h>

#include <cstdio>

#include "apps/commands.h"
#include "core/error.h"

namespace kvscope::cli {

int set_threads(int n) {
    if (n <= 0) n = int(sysconf(_SC_NPROCESSORS_ONLN));
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    return n;
}

}  // namespace kvscope::cli

int main(int argc, char** argv) {
    CLI::App app{"kvscope: a C++ inference engine and experiment toolkit for the KV cache of transformer LMs"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("kvscope ") + KVSCOPE_GIT_COMMIT);
    kvscope::cli::add_info(app);
    kvscope::cli::add_run(app);
    kvscope::cli::add_make_model(app);
    kvscope::cli::add_report(app);
    kvscope::cli::add_hw(app);
    kvscope::cli::add_exp(app);
    kvscope::cli::add_bench(app);
    kvscope::cli::add_study(app);
    kvscope::cli::add_data(app);
    kvscope::cli::add_plan(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const kvscope::Error& e) {
        std::fprintf(stderr, "kvscope: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "kvscope: error: out of memory (try a smaller --batch-size or context)\n");
        return 1;
    }
    return 0;
}
