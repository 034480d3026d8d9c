// A whole file mapped read-only (private), released page by page once its contents were
// copied elsewhere, so resident memory does not count them twice.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace kvscope {

class MappedFile {
public:
    // Throws kvscope::Error naming the file when it cannot be opened or mapped.
    explicit MappedFile(const std::filesystem::path& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Drops the whole pages inside [p, p + n) (re-read from the file if touched again).
    void release(const uint8_t* p, uint64_t n) const;

private:
    std::string path_;
    uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

}  // namespace kvscope
