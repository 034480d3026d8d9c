#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace kvscope {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path.string()) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open ({})", path_, std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("{}: not a regular file", path_);
    }
    size_ = uint64_t(st.st_size);
    if (size_ > 0) {
        void* m = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            ::close(fd);
            fail("{}: mmap failed ({})", path_, std::strerror(errno));
        }
        data_ = static_cast<uint8_t*>(m);
    }
    ::close(fd);
}

MappedFile::~MappedFile() {
    if (data_) munmap(data_, size_);
}

void MappedFile::release(const uint8_t* p, uint64_t n) const {
    if (!data_ || p < data_ || p + n > data_ + size_) return;
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    uintptr_t b = (uintptr_t(p) + page - 1) & ~(page - 1);
    uintptr_t e = (uintptr_t(p) + n) & ~(page - 1);
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace kvscope
