// Files written by kvscope appear whole or not at all: data goes to a temporary file in the
// same directory, which is renamed over the target only on commit().
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

namespace kvscope {

class AtomicFile {
public:
    explicit AtomicFile(const std::filesystem::path& target);
    ~AtomicFile();  // removes the temporary file unless committed
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    void write(const void* data, size_t n);
    void write(const std::string& s) { write(s.data(), s.size()); }
    void commit();

private:
    std::filesystem::path target_, tmp_;
    std::FILE* f_ = nullptr;
    bool committed_ = false;
};

// Creates folder `dir` (and its parents) for output, or fails in one line naming `flag` and
// the folder: it cannot be made (a path component is a file, no permission) or not written.
void ensure_output_dir(const std::filesystem::path& dir, const std::string& flag);

// Whole-file helpers; throw kvscope::Error naming the file.
std::string read_file(const std::filesystem::path& p);
void write_file_atomic(const std::filesystem::path& p, const std::string& content);

}  // namespace kvscope
