// libFuzzer target: llama2c_checkpoint on arbitrary bytes (a llama2.c .bin: the legacy 7-int
// header or the versioned "ak42" one, then the arrays). Every input must parse or throw
// kvscope::Error; a parsed checkpoint's tensors must lie inside the input (or in buffers it
// owns, for dequantized q8_0) with byte counts that match their shapes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include "core/error.h"
#include "model/llama2c.h"

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_llama2c: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        kvscope::ModelConfig c;
        const kvscope::Checkpoint ck = kvscope::llama2c_checkpoint(data, size, "fuzz.bin", &c);
        if (c.n_head % c.n_kv_head != 0 || c.head_dim * c.n_head != c.n_embd) bug("accepted inconsistent heads");
        const kvscope::StTensor* e = ck.find("model.embed_tokens.weight");
        if (!e) bug("no embedding tensor");
        for (const char* name : {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.mlp.down_proj.weight"}) {
            const kvscope::StTensor* t = ck.find(name);
            if (!t) bug("a tensor of layer 0 is missing");
            if (uint64_t(t->numel()) * 4 != t->nbytes) bug("nbytes does not match the shape");
            volatile uint8_t sink = t->data[0];  // ASan flags a read outside the input or its buffer
            sink = t->data[t->nbytes - 1];
            (void)sink;
        }
    } catch (const kvscope::Error&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_llama2c: unexpected exception %s: %s\n", typeid(e).name(), e.what());
        std::abort();
    }
    return 0;
}
