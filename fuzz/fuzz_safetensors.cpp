// libFuzzer target: SafetensorsFile::parse on arbitrary bytes (the whole file: 8-byte header
// length, JSON header, data section). Every input must parse or throw kvscope::Error; a parsed
// file must only describe bytes inside the input, with sizes that match the shapes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include "core/error.h"
#include "model/safetensors.h"

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_safetensors: %s\n", what);
    std::abort();
}

void check(const kvscope::SafetensorsFile& f, const uint8_t* data, size_t size) {
    for (const auto& [name, t] : f.tensors()) {
        if (name != t.name) bug("tensor name differs from its key");
        if (f.find(name) != &t) bug("find() does not return the tensor");
        const int esize = kvscope::st_dtype_size(t.dtype);
        if (esize <= 0) bug("tensor with an unknown dtype");
        uint64_t numel = 1;
        for (int64_t d : t.shape) {
            if (d < 0) bug("negative dimension accepted");
            numel *= uint64_t(d);  // bounded by the parser; checked against nbytes below
        }
        if (t.numel() < 0 || uint64_t(t.numel()) != numel) bug("numel() disagrees with the shape");
        if (numel > t.nbytes || numel * uint64_t(esize) != t.nbytes)
            bug("nbytes does not match shape x dtype size");
        if (t.nbytes > 0) {
            if (t.data < data + 8 || t.data > data + size || t.nbytes > size_t(data + size - t.data))
                bug("tensor data outside the input");
            // Touch the first and last byte: ASan flags any read outside the input buffer.
            volatile uint8_t sink = t.data[0];
            sink = t.data[t.nbytes - 1];
            (void)sink;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const kvscope::SafetensorsFile f = kvscope::SafetensorsFile::parse(data, size, "fuzz.safetensors");
        check(f, data, size);
    } catch (const kvscope::Error&) {
        // Rejected with the project's error type: expected for bad input.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_safetensors: unexpected exception %s: %s\n", typeid(e).name(), e.what());
        std::abort();
    }
    return 0;
}
