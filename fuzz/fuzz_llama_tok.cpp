// libFuzzer target: the Llama tokenizers' file parsers on arbitrary bytes, then encoding and
// decoding with what was accepted. The first byte picks the format: even, a llama2.c
// tokenizer.bin (vocabulary size 3 + the second byte); odd, a tokenizer.json with byte
// fallback. Every input must parse or throw kvscope::Error; accepted tokenizers encode a fixed
// set of texts to ids inside their vocabulary and decode them without failing.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <typeinfo>

#include "core/error.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/llama2c_tok.h"

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_llama_tok: %s\n", what);
    std::abort();
}

void exercise(const kvscope::Tokenizer& t) {
    for (std::string_view text : {std::string_view("Once upon a time"), std::string_view("h\xC3\xA9llo \xE2\x98\x83 \xF0\x9F\x9A\x80"),
                                  std::string_view("  "), std::string_view("\xFF\xFE bad utf8 \xC3")}) {
        std::vector<int32_t> ids;
        try {
            ids = t.encode_prompt(text);
        } catch (const kvscope::Error&) {
            continue;  // a vocabulary that cannot encode a byte says so
        }
        for (int32_t id : ids)
            if (id < 0 || id >= t.vocab_size()) bug("encoded an id outside the vocabulary");
        (void)t.decode(ids);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    try {
        if (data[0] % 2 == 0) {
            exercise(kvscope::Llama2cTokenizer::parse(data + 2, size - 2, 3 + data[1], "fuzz/tok.bin"));
        } else {
            exercise(kvscope::HfBpeTokenizer::parse_bytes(
                std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), "fuzz/tokenizer.json"));
        }
    } catch (const kvscope::Error&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_llama_tok: unexpected exception %s: %s\n", typeid(e).name(), e.what());
        std::abort();
    }
    return 0;
}
