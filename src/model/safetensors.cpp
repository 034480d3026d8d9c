#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace kvscope {

namespace {

struct DTypeName { const char* name; StDType t; int size; };
constexpr DTypeName kDTypes[] = {
    {"F64", StDType::F64, 8}, {"F32", StDType::F32, 4}, {"F16", StDType::F16, 2},
    {"BF16", StDType::BF16, 2}, {"I64", StDType::I64, 8}, {"I32", StDType::I32, 4},
    {"I16", StDType::I16, 2}, {"I8", StDType::I8, 1}, {"U8", StDType::U8, 1}, {"BOOL", StDType::BOOL, 1},
};

// A header larger than this is certainly corrupt (real ones are a few hundred KiB).
constexpr uint64_t kMaxHeader = 100ull << 20;

}  // namespace

const char* st_dtype_name(StDType t) {
    for (const auto& d : kDTypes) if (d.t == t) return d.name;
    return "?";
}

int st_dtype_size(StDType t) {
    for (const auto& d : kDTypes) if (d.t == t) return d.size;
    return 0;
}

int64_t StTensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* bytes, uint64_t size, const std::string& where) {
    SafetensorsFile f;
    f.path_ = where;
    if (size < 8) fail("{}: truncated safetensors file ({} bytes, expected at least 8)", where, size);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= uint64_t(bytes[i]) << (8 * i);
    if (hlen > size - 8)
        fail("{}: safetensors header length {} runs past the end of the file ({} bytes)", where, hlen, size);
    if (hlen > kMaxHeader) fail("{}: safetensors header length {} is implausibly large", where, hlen);
    nlohmann::json h;
    try {
        h = nlohmann::json::parse(bytes + 8, bytes + 8 + hlen);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: safetensors header is not valid JSON ({})", where, e.what());
    }
    if (!h.is_object()) fail("{}: safetensors header must be a JSON object", where);
    const uint8_t* data = bytes + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    for (auto it = h.begin(); it != h.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (it.value().is_object())
                for (auto m = it.value().begin(); m != it.value().end(); ++m)
                    if (m.value().is_string()) f.metadata_[m.key()] = m.value().get<std::string>();
            continue;
        }
        const std::string& name = it.key();
        const auto& e = it.value();
        if (!e.is_object()) fail("{}: tensor \"{}\": expected an object with dtype, shape, data_offsets", where, name);
        auto dt = e.find("dtype");
        auto sh = e.find("shape");
        auto off = e.find("data_offsets");
        if (dt == e.end() || !dt->is_string() || sh == e.end() || !sh->is_array() || off == e.end() ||
            !off->is_array() || off->size() != 2)
            fail("{}: tensor \"{}\": expected dtype (string), shape (array), data_offsets ([begin, end])", where, name);
        StTensor t;
        t.name = name;
        std::string dts = dt->get<std::string>();
        int esize = 0;
        for (const auto& d : kDTypes) {
            if (dts == d.name) { t.dtype = d.t; esize = d.size; }
        }
        if (esize == 0) fail("{}: tensor \"{}\": unknown dtype \"{}\" (expected F32, F16, BF16, ...)", where, name, dts);
        uint64_t numel = 1;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
                fail("{}: tensor \"{}\": shape entries must be non-negative integers", where, name);
            uint64_t v = d.get<uint64_t>();
            // numel * esize stays <= 2^62 (no wrap-around), and every dimension fits int64_t.
            if (v > (uint64_t(1) << 62) || (v != 0 && numel > (uint64_t(1) << 62) / uint64_t(esize) / v))
                fail("{}: tensor \"{}\": shape overflows", where, name);
            numel *= v;
            t.shape.push_back(int64_t(v));
        }
        const auto& b = (*off)[0];
        const auto& en = (*off)[1];
        if (!b.is_number_unsigned() || !en.is_number_unsigned())
            fail("{}: tensor \"{}\": data_offsets must be non-negative integers", where, name);
        uint64_t begin = b.get<uint64_t>(), end = en.get<uint64_t>();
        if (begin > end || end > data_size)
            fail("{}: tensor \"{}\": data_offsets [{}, {}] outside the data section ({} bytes): file truncated?",
                 where, name, begin, end, data_size);
        if (end - begin != numel * uint64_t(esize))
            fail("{}: tensor \"{}\": {} bytes stored but shape x {} needs {}", where, name, end - begin, dts,
                 numel * uint64_t(esize));
        t.data = data + begin;
        t.nbytes = end - begin;
        f.tensors_.emplace(name, std::move(t));
    }
    return f;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open ({})", path.string(), std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("{}: not a regular file", path.string());
    }
    uint64_t size = uint64_t(st.st_size);
    void* map = nullptr;
    if (size > 0) {
        map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            ::close(fd);
            fail("{}: mmap failed ({})", path.string(), std::strerror(errno));
        }
    }
    ::close(fd);
    static const uint8_t empty = 0;
    SafetensorsFile f;
    try {
        f = parse(map ? static_cast<const uint8_t*>(map) : &empty, size, path.string());
    } catch (...) {
        if (map) munmap(map, size);
        throw;
    }
    f.map_ = map;
    f.size_ = size;
    return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
    if (this != &o) {
        if (map_) munmap(map_, size_);
        path_ = std::move(o.path_);
        tensors_ = std::move(o.tensors_);
        metadata_ = std::move(o.metadata_);
        map_ = o.map_;
        size_ = o.size_;
        o.map_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) munmap(map_, size_);
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

void SafetensorsFile::release(const uint8_t* p, uint64_t n) const {
    if (!map_) return;
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    uintptr_t b = (uintptr_t(p) + page - 1) & ~(page - 1);
    uintptr_t e = (uintptr_t(p) + n) & ~(page - 1);
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

void write_safetensors(const std::filesystem::path& path, const std::vector<StWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    nlohmann::json h = nlohmann::json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    uint64_t off = 0;
    std::vector<uint64_t> sizes;
    for (const auto& t : tensors) {
        uint64_t n = 1;
        for (int64_t d : t.shape) n *= uint64_t(d);
        uint64_t bytes = n * uint64_t(st_dtype_size(t.dtype));
        h[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + bytes}}};
        sizes.push_back(bytes);
        off += bytes;
    }
    std::string hs = h.dump();
    while ((hs.size() + 8) % 8 != 0) hs.push_back(' ');  // keep tensor data 8-byte aligned
    AtomicFile out(path);
    uint64_t hlen = hs.size();
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = uint8_t(hlen >> (8 * i));
    out.write(lenbuf, 8);
    out.write(hs.data(), hs.size());
    for (size_t i = 0; i < tensors.size(); i++) out.write(tensors[i].data, sizes[i]);
    out.commit();
}

}  // namespace kvscope
