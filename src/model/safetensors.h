// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then raw little-endian tensor bytes. The file is
// mmapped read-only; tensors are views into the mapping (no copy).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace kvscope {

enum class StDType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };
const char* st_dtype_name(StDType t);
int st_dtype_size(StDType t);

struct StTensor {
    std::string name;
    StDType dtype = StDType::F32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;  // inside the mapping; not necessarily aligned
    uint64_t nbytes = 0;
    int64_t numel() const;
};

class SafetensorsFile {
public:
    // Maps and validates the whole header; throws kvscope::Error naming the file on any
    // inconsistency (truncation, header past the end, bad JSON, unknown dtype, offsets
    // outside the data section, size that does not match the shape).
    static SafetensorsFile open(const std::filesystem::path& path);
    // Parses an in-memory buffer (no mapping); used by the fuzzer and tests.
    static SafetensorsFile parse(const uint8_t* bytes, uint64_t size, const std::string& where);

    SafetensorsFile() = default;
    SafetensorsFile(SafetensorsFile&& o) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;
    ~SafetensorsFile();

    const StTensor* find(const std::string& name) const;
    // Drops the mapped pages of a tensor that was converted into another buffer, so RSS does
    // not count both copies (they are re-read from the file if ever touched again).
    void release(const StTensor& t) const { release(t.data, t.nbytes); }
    void release(const uint8_t* p, uint64_t n) const;  // the whole pages inside [p, p + n)
    const std::map<std::string, StTensor>& tensors() const { return tensors_; }
    const std::string& path() const { return path_; }
    // String entries of the header's "__metadata__" (non-string values are skipped).
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    uint64_t file_size() const { return size_; }

private:
    std::string path_;
    void* map_ = nullptr;
    uint64_t size_ = 0;
    std::map<std::string, StTensor> tensors_;
    std::map<std::string, std::string> metadata_;
};

// Writes tensors (F32/F16/BF16 raw bytes) as a safetensors file, via a temporary file renamed
// into place so a crash never leaves half a file.
struct StWriteTensor {
    std::string name;
    StDType dtype;
    std::vector<int64_t> shape;
    const void* data;
};
void write_safetensors(const std::filesystem::path& path, const std::vector<StWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace kvscope
