#include "model/loader.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "core/paths.h"
#include "model/checkpoint.h"
#include "model/llama2c.h"
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

constexpr const char* kPresetOnly = "preset (config only)";

std::string gib(double bytes) { return fmt::format("{:.1f} GiB", bytes / (1024.0 * 1024.0 * 1024.0)); }

}  // namespace

fs::path synthetic_cache_dir() { return data_dir() / "models"; }

ModelSource resolve_model(const std::string& spec, bool generate) {
    std::error_code ec;
    if (spec.empty()) fail("--model: expected a model directory, a llama2.c .bin file or a name (e.g. distilgpt2)");
    if (fs::is_directory(spec, ec)) return {fs::path(spec), "directory", false};
    if (fs::is_regular_file(spec, ec)) {
        if (!looks_like_llama2c(spec))
            fail("--model {}: a file, but not a llama2.c checkpoint (give a Hugging Face model directory or a .bin "
                 "written by llama2.c)", spec);
        return {fs::path(spec), "llama2.c checkpoint", true};
    }
    std::string looked;
    fs::path hub = find_in_hub(spec, &looked);
    if (!hub.empty()) return {hub, "hugging face cache", false};
    // "distilbert/distilgpt2" and "openai-community/gpt2" name presets too.
    std::string base = spec.substr(spec.find_last_of('/') == std::string::npos ? 0 : spec.find_last_of('/') + 1);
    ModelConfig cfg;
    if (spec.find("./") == std::string::npos && preset_config(base, &cfg)) {
        fs::path dir = synthetic_cache_dir() / (base + "-synthetic-seed0");
        if (fs::exists(dir / "config.json", ec)) return {dir, "synthetic (cached)", false};
        if (!generate || preset_is_plan_only(base)) return {dir, kPresetOnly, false};
        std::fprintf(stderr,
                     "kvscope: %s is not on this machine (looked in %s); generating synthetic weights of its exact "
                     "shapes into %s (once). Timing and memory are those of the real model; its text is not.\n",
                     spec.c_str(), looked.c_str(), dir.string().c_str());
        make_synthetic_model(cfg, base, 0, dir);
        return {dir, "synthetic (generated now)", false};
    }
    fail("--model {}: not a directory or file, not in the Hugging Face cache (looked in {}), and not a preset ({})", spec,
         looked, preset_names());
}

Model load_model(const std::string& spec, DType dtype, bool with_weights, const std::string& tokenizer) {
    Model m;
    m.name = spec;
    m.source = resolve_model(spec, with_weights);
    std::error_code ec;
    Checkpoint ck;
    if (m.source.how == kPresetOnly) {
        std::string base = spec.substr(spec.find_last_of('/') == std::string::npos ? 0 : spec.find_last_of('/') + 1);
        preset_config(base, &m.cfg);
        m.synthetic = true;
        if (with_weights) {
            const double p = double(m.cfg.n_params());
            fail("--model {}: for kvscope info and plan only: its weights need {} in bf16 ({} in fp32) and this "
                 "machine runs models up to a few GiB (try kvscope plan --model {})",
                 spec, gib(p * 2), gib(p * 4), spec);
        }
        return m;
    }
    if (m.source.llama2c) {
        ck = open_llama2c(m.source.path, &m.cfg);
    } else {
        const fs::path& dir = m.source.path;
        if (!fs::exists(dir / "config.json", ec))
            fail("{}: missing config.json (expected a Hugging Face model directory)", (dir / "config.json").string());
        m.cfg = load_config(dir / "config.json");
        ck = Checkpoint::open_hf_dir(dir);
        m.synthetic = ck.metadata().count(kSyntheticKey) > 0;
    }
    std::string why;
    if (with_weights && !runnable(m.cfg, &why)) fail("--model {}: {}", spec, why);
    if (with_weights) m.weights = load_weights(std::move(ck), m.cfg, dtype);
    if (!tokenizer.empty()) m.tokenizer = load_tokenizer(absolute_path(tokenizer), m.cfg.n_vocab);
    else m.tokenizer = find_tokenizer(m.source.folder(), m.cfg.n_vocab);
    if (m.tokenizer && m.tokenizer->vocab_size() > m.cfg.n_vocab)
        fail("{}: the tokenizer ({}) has {} tokens but the model's vocabulary has {} (a tokenizer for another model?)",
             tokenizer.empty() ? m.source.folder().string() : tokenizer, m.tokenizer->kind(), m.tokenizer->vocab_size(),
             m.cfg.n_vocab);
    return m;
}

}  // namespace kvscope
