#pragma once
// 64-byte aligned heap arrays: AVX2 loads never split cache lines, and each buffer starts on
// its own line. Allocated with std::aligned_alloc and released with std::free, so the pair
// matches under AddressSanitizer (unlike aligned operator new freed by a default deleter).
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

namespace kvscope {

inline constexpr size_t kAlign = 64;

struct FreeDeleter {
    void operator()(void* p) const noexcept { std::free(p); }
};

template <typename T>
using AlignedArray = std::unique_ptr<T[], FreeDeleter>;

// n elements of T (trivially constructible types only), uninitialized.
template <typename T>
AlignedArray<T> make_aligned(size_t n) {
    static_assert(std::is_trivially_default_constructible_v<T>);
    size_t bytes = (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
    if (bytes == 0) bytes = kAlign;
    void* p = std::aligned_alloc(kAlign, bytes);
    if (!p) throw std::bad_alloc();
    return AlignedArray<T>(static_cast<T*>(p));
}

}  // namespace kvscope
