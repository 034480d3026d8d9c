#include "core/fs.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace kvscope {

AtomicFile::AtomicFile(const std::filesystem::path& target) : target_(target) {
    std::filesystem::path dir = target.parent_path();
    if (!dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
    }
    tmp_ = target;
    tmp_ += ".tmp." + std::to_string(::getpid());
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail("{}: cannot create ({})", target.string(), std::strerror(errno));
}

AtomicFile::~AtomicFile() {
    if (f_) std::fclose(f_);
    if (!committed_) {
        std::error_code ec;
        std::filesystem::remove(tmp_, ec);
    }
}

void AtomicFile::write(const void* data, size_t n) {
    if (n && std::fwrite(data, 1, n, f_) != n) fail("{}: write failed ({})", target_.string(), std::strerror(errno));
}

void AtomicFile::commit() {
    if (std::fflush(f_) != 0 || std::fclose(f_) != 0) {
        f_ = nullptr;
        fail("{}: write failed ({})", target_.string(), std::strerror(errno));
    }
    f_ = nullptr;
    std::error_code ec;
    std::filesystem::rename(tmp_, target_, ec);
    if (ec) fail("{}: cannot rename into place ({})", target_.string(), ec.message());
    committed_ = true;
}

void ensure_output_dir(const std::filesystem::path& dir, const std::string& flag) {
    if (dir.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir, ec))
        fail("{} {}: cannot create the folder ({})", flag, dir.string(), ec ? ec.message() : "not a folder");
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
        fail("{} {}: the folder is not writable ({})", flag, dir.string(), std::strerror(errno));
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) fail("{}: cannot open", p.string());
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void write_file_atomic(const std::filesystem::path& p, const std::string& content) {
    AtomicFile f(p);
    f.write(content);
    f.commit();
}

}  // namespace kvscope
