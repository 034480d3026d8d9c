#pragma once
// 64-byte aligned heap arrays: AVX2 loads never split cache lines, and each buffer starts on
// its own line. Allocated with std::aligned_alloc and released with std::free, so the pair
// matches under AddressSanitizer (unlike aligned operator new freed by a default deleter).
#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

namespace kvscope {

inline constexpr size_t kAlign = 64;
// Buffers of at least this size (weights, the KV cache) start on a 2 MiB boundary and ask for
// transparent huge pages, as the bandwidth probe's buffer does (docs/KERNELS.md).
inline constexpr size_t kHugePage = size_t(2) << 20;

struct FreeDeleter {
    void operator()(void* p) const noexcept { std::free(p); }
};

template <typename T>
using AlignedArray = std::unique_ptr<T[], FreeDeleter>;

// n elements of T (trivially constructible types only), uninitialized. From kHugePage bytes
// up, on huge pages where the kernel's transparent_hugepage setting allows it.
template <typename T>
AlignedArray<T> make_aligned(size_t n) {
    static_assert(std::is_trivially_default_constructible_v<T>);
    const bool huge = n * sizeof(T) >= kHugePage;
    const size_t align = huge ? kHugePage : kAlign;
    size_t bytes = (n * sizeof(T) + align - 1) / align * align;
    if (bytes == 0) bytes = kAlign;
    void* p = std::aligned_alloc(align, bytes);
    if (!p) throw std::bad_alloc();
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: a refusal leaves 4 KiB pages
    return AlignedArray<T>(static_cast<T*>(p));
}

}  // namespace kvscope
