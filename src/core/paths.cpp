#include "core/paths.h"

#include <unistd.h>

#include <cstdlib>

namespace kvscope {

namespace fs = std::filesystem;

fs::path data_dir() {
    if (const char* e = std::getenv("KVSCOPE_CACHE"); e && *e) return absolute_path(e);
    if (const char* e = std::getenv("XDG_CACHE_HOME"); e && *e == '/') return fs::path(e) / "kvscope";
    const char* h = std::getenv("HOME");
    return fs::path(h && *h ? h : "/root") / ".cache/kvscope";
}

fs::path executable_dir() {
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::path() : exe.parent_path();
}

std::vector<fs::path> shipped_dirs() {
    const fs::path exe = executable_dir();
    if (exe.empty()) return {};
    return {exe.parent_path() / "share/kvscope", exe.parent_path()};
}

fs::path find_shipped(const fs::path& rel) {
    std::error_code ec;
    for (const fs::path& d : shipped_dirs())
        if (fs::exists(d / rel, ec)) return d / rel;
    return {};
}

fs::path absolute_path(const fs::path& p) {
    std::error_code ec;
    fs::path a = fs::absolute(p, ec);
    return ec ? p : a.lexically_normal();
}

fs::path find_on_path(const std::string& name) {
    if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? fs::path(name) : fs::path();
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        fs::path d = dirs.substr(start, end - start);
        if (d.empty()) d = ".";
        fs::path c = d / name;
        std::error_code ec;
        if (fs::is_regular_file(c, ec) && ::access(c.c_str(), X_OK) == 0) return c;
        start = end + 1;
    }
    return {};
}

}  // namespace kvscope
