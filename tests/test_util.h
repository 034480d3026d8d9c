// Helpers shared by the tests: temporary directories, running the kvscope binary, tiny models.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "model/config.h"
#include "model/synthetic.h"

namespace kvscope::test {

inline std::filesystem::path temp_dir(const std::string& name) {
    auto p = std::filesystem::temp_directory_path() /
             ("kvscope-test-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p;
}

struct CmdResult {
    int status = -1;
    std::string out, err;
};

// Runs a shell command line; stdout and stderr captured separately.
inline CmdResult run_cmd(const std::string& cmd) {
    static int counter = 0;
    auto dir = std::filesystem::temp_directory_path();
    std::string base = "kvscope-cmd-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    auto out = dir / (base + ".out"), err = dir / (base + ".err");
    int rc = std::system((cmd + " >" + out.string() + " 2>" + err.string() + " </dev/null").c_str());
    CmdResult r;
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
    auto slurp = [](const std::filesystem::path& p) {
        std::ifstream f(p);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    };
    r.out = slurp(out);
    r.err = slurp(err);
    std::filesystem::remove(out);
    std::filesystem::remove(err);
    return r;
}

inline std::string kvscope_bin() { return KVSCOPE_BINARY; }
inline std::string source_dir() { return KVSCOPE_SOURCE_DIR; }
inline std::string shared_dir() { return KVSCOPE_SHARED_DIR; }

// A small GPT-2 config for fast tests: 2 layers, 64 wide, 4 heads, vocab 96, context 128.
inline ModelConfig tiny_config(int n_vocab = 96, int n_ctx = 128) {
    ModelConfig c;
    c.n_layer = 2;
    c.n_embd = 64;
    c.n_head = 4;
    c.n_vocab = n_vocab;
    c.n_ctx = n_ctx;
    c.bos_id = c.eos_id = n_vocab - 1;
    c.finalize("tiny");
    return c;
}

// Writes (once per process) a synthetic model directory and returns it.
inline std::filesystem::path tiny_model_dir(const std::string& tag, const ModelConfig& c, uint64_t seed = 7) {
    auto dir = std::filesystem::temp_directory_path() / ("kvscope-model-" + tag + "-" + std::to_string(::getpid()));
    if (!std::filesystem::exists(dir / "model.safetensors")) make_synthetic_model(c, tag, seed, dir);
    return dir;
}

}  // namespace kvscope::test
