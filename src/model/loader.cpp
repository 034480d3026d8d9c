#include "model/loader.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "core/paths.h"
#include "model/synthetic.h"

namespace kvscope {

namespace fs = std::filesystem;

namespace {

fs::path home_dir() {
    const char* h = std::getenv("HOME");
    return h ? fs::path(h) : fs::path("/root");
}

std::vector<fs::path> hf_hub_dirs() {
    std::vector<fs::path> v;
    if (const char* e = std::getenv("HF_HUB_CACHE")) v.emplace_back(e);
    if (const char* e = std::getenv("HUGGINGFACE_HUB_CACHE")) v.emplace_back(e);
    if (const char* e = std::getenv("HF_HOME")) v.emplace_back(fs::path(e) / "hub");
    if (const char* e = std::getenv("XDG_CACHE_HOME")) v.emplace_back(fs::path(e) / "huggingface/hub");
    v.emplace_back(home_dir() / ".cache/huggingface/hub");
    return v;
}

// models--org--name/snapshots/<rev>/: the revision refs/main points to, else the newest one.
fs::path find_in_hub(const std::string& spec, std::string* looked) {
    std::string folder = "models--" + spec;
    for (size_t p = 0; (p = folder.find('/', p)) != std::string::npos;) folder.replace(p, 1, "--");
    std::error_code ec;
    for (const fs::path& hub : hf_hub_dirs()) {
        fs::path repo = hub / folder;
        *looked += (looked->empty() ? "" : ", ") + repo.string();
        if (!fs::is_directory(repo / "snapshots", ec)) continue;
        std::string main_rev;
        if (FILE* f = std::fopen((repo / "refs/main").c_str(), "r")) {
            char buf[128] = {0};
            if (std::fgets(buf, sizeof buf, f)) main_rev = buf;
            std::fclose(f);
            while (!main_rev.empty() && (main_rev.back() == '\n' || main_rev.back() == ' ')) main_rev.pop_back();
        }
        if (!main_rev.empty() && fs::exists(repo / "snapshots" / main_rev / "config.json", ec))
            return repo / "snapshots" / main_rev;
        fs::path best;
        fs::file_time_type best_t{};
        for (const auto& e : fs::directory_iterator(repo / "snapshots", ec)) {
            if (!fs::exists(e.path() / "config.json", ec)) continue;
            auto t = fs::last_write_time(e.path(), ec);
            if (best.empty() || t > best_t) { best = e.path(); best_t = t; }
        }
        if (!best.empty()) return best;
    }
    return {};
}

}  // namespace

fs::path synthetic_cache_dir() { return data_dir() / "models"; }

ModelSource resolve_model(const std::string& spec) {
    std::error_code ec;
    if (spec.empty()) fail("--model: expected a model directory or name (e.g. distilgpt2)");
    if (fs::is_directory(spec, ec)) return {fs::path(spec), "directory"};
    std::string looked;
    fs::path hub = find_in_hub(spec, &looked);
    if (!hub.empty()) return {hub, "hugging face cache"};
    // "distilbert/distilgpt2" and "openai-community/gpt2" name presets too.
    std::string base = spec.substr(spec.find_last_of('/') == std::string::npos ? 0 : spec.find_last_of('/') + 1);
    ModelConfig cfg;
    if (spec.find("./") == std::string::npos && preset_config(base, &cfg)) {
        fs::path dir = synthetic_cache_dir() / (base + "-synthetic-seed0");
        if (fs::exists(dir / "model.safetensors", ec)) return {dir, "synthetic (cached)"};
        std::fprintf(stderr,
                     "kvscope: %s is not on this machine (looked in %s); generating synthetic weights of its exact "
                     "shapes into %s (once). Timing and memory are those of the real model; its text is not.\n",
                     spec.c_str(), looked.c_str(), dir.string().c_str());
        make_synthetic_model(cfg, base, 0, dir);
        return {dir, "synthetic (generated now)"};
    }
    fail("--model {}: not a directory, not in the Hugging Face cache (looked in {}), and not a preset ({})", spec,
         looked, preset_names());
}

Model load_model(const std::string& spec, DType dtype, bool with_weights) {
    Model m;
    m.name = spec;
    m.source = resolve_model(spec);
    const fs::path& dir = m.source.dir;
    std::error_code ec;
    if (!fs::exists(dir / "config.json", ec))
        fail("{}: missing config.json (expected a Hugging Face model directory)", (dir / "config.json").string());
    m.cfg = load_config(dir / "config.json");
    fs::path st = dir / "model.safetensors";
    if (!fs::exists(st, ec)) {
        if (fs::exists(dir / "pytorch_model.bin", ec))
            fail("{}: missing; this directory only has pytorch_model.bin, which kvscope does not read "
                 "(save it with safe_serialization=True)", st.string());
        fail("{}: missing (expected the model's weights in safetensors format)", st.string());
    }
    SafetensorsFile file = SafetensorsFile::open(st);
    m.synthetic = file.metadata().count(kSyntheticKey) > 0;
    if (with_weights) m.weights = std::make_unique<Gpt2Weights>(std::move(file), m.cfg, dtype);
    if (fs::exists(dir / "tokenizer.json", ec) || fs::exists(dir / "vocab.json", ec))
        m.tokenizer = std::make_unique<Gpt2Tokenizer>(Gpt2Tokenizer::load_dir(dir));
    return m;
}

}  // namespace kvscope
