#include "kv/kv_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace kvscope {

namespace {

// The fp16 values nearest x from below and from above (x finite, within fp16's range).
uint16_t f16_down(float x) {
    uint16_t h = f32_to_f16(x);
    if (f16_to_f32(h) > x) h = (h & 0x8000) ? uint16_t(h + 1) : (h == 0 ? uint16_t(0x8001) : uint16_t(h - 1));
    return h;
}
uint16_t f16_up(float x) {
    uint16_t h = f32_to_f16(x);
    if (f16_to_f32(h) < x) h = (h & 0x8000) ? (h == 0x8000 ? uint16_t(1) : uint16_t(h - 1)) : uint16_t(h + 1);
    return h;
}

int group_of(const KvCodec& c, int hd) { return c.group > 0 && c.group < hd ? c.group : hd; }

void put_code(uint8_t* codes, int bits, int i, uint32_t u) {
    if (bits == 8) {
        codes[i] = uint8_t(u);
        return;
    }
    const int bit = bits * i;
    codes[bit / 8] = uint8_t(codes[bit / 8] | (u << (bit % 8)));
}

uint32_t get_code(const uint8_t* codes, int bits, int i) {
    if (bits == 8) return codes[i];
    const int bit = bits * i;
    return (codes[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

// The scale (and minimum) of a set of n values `stride` apart, both fp16, and each value's code.
struct Fit {
    uint16_t s16 = 0, m16 = 0;
    float s = 0, m = 0;
    int bits = 8, qmax = 127, levels = 255;
    bool zp = false;
    uint32_t code(float x) const {
        if (zp) return uint32_t(s > 0 ? std::clamp(int(std::lrint((x - m) / s)), 0, levels) : 0);
        const int q = s > 0 ? std::clamp(int(std::lrint(x / s)), -qmax, qmax) : 0;
        return uint32_t(q + (bits == 8 ? 0 : qmax + 1)) & 0xFFu;
    }
};

Fit fit(const KvCodec& c, const float* x, int n, int64_t stride) {
    Fit f;
    f.bits = kv_codec_bits(c);
    f.qmax = (1 << (f.bits - 1)) - 1;
    f.levels = (1 << f.bits) - 1;
    f.zp = c.zero_point;
    float mn = INFINITY, mx = -INFINITY, amax = 0;
    for (int i = 0; i < n; i++) {
        const float v = x[i * stride];
        if (!std::isfinite(v))
            fail("KV cache {}: a key or value is {}; integer codecs store finite values only", kv_codec_name(c), v);
        mn = std::min(mn, v);
        mx = std::max(mx, v);
        amax = std::max(amax, std::abs(v));
    }
    if (!f.zp) {
        const float want = amax / float(f.qmax);
        if (want > 65504.0f) fail("KV cache {}: |value| {} too large for an fp16 scale", kv_codec_name(c), amax);
        f.s16 = f16_up(want);
    } else {
        if (mn < -65504.0f || mx > 65504.0f) fail("KV cache {}: value range [{}, {}] outside fp16's", kv_codec_name(c), mn, mx);
        f.m16 = f16_down(mn);
        f.m = f16_to_f32(f.m16);
        const float want = (mx - f.m) / float(f.levels);
        if (want > 65504.0f) fail("KV cache {}: value range [{}, {}] too wide for an fp16 scale", kv_codec_name(c), mn, mx);
        f.s16 = f16_up(want);
    }
    f.s = f16_to_f32(f.s16);
    return f;
}

// x of code u under scale s and minimum m (or the symmetric offset).
float decode_code(const KvCodec& c, int bits, uint32_t u, float s, float m) {
    if (c.zero_point) return m + s * float(u);
    if (bits == 8) return s * float(int8_t(uint8_t(u)));
    return s * (float(int(u)) - float(1 << (bits - 1)));
}

}  // namespace

int kv_codec_bits(const KvCodec& c) {
    switch (c.dtype) {
        case DType::I8: return 8;
        case DType::I4: return 4;
        case DType::I2: return 2;
        default: return 8 * int(dtype_size(c.dtype));
    }
}

KvCodec parse_kv_codec(const std::string& s, const std::string& flag) {
    auto bad = [&] {
        fail("{} {}: expected fp32, fp16, bf16, int8, int4 or int2, optionally with -gN (channels per scale, a "
             "multiple of 8; g0 the whole row) or -cN (per channel over N tokens, 8 to 1024) and -sym or -asym, "
             "e.g. int4-g64-sym, int2-c32-asym, int4-kivi",
             flag, s);
    };
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        const size_t dash = s.find('-', start);
        parts.push_back(s.substr(start, dash == std::string::npos ? std::string::npos : dash - start));
        if (dash == std::string::npos) break;
        start = dash + 1;
    }
    DType dt;
    if (!parse_dtype(parts[0], &dt) || dt == DType::F8) bad();
    KvCodec c = KvFormat(dt).k;  // the dtype's default codec
    if (c.axis == KvAxis::None) {
        if (parts.size() > 1) bad();
        return c;
    }
    for (size_t i = 1; i < parts.size(); i++) {
        const std::string& p = parts[i];
        if (p == "sym") c.zero_point = false;
        else if (p == "asym") c.zero_point = true;
        else if (p.size() > 1 && (p[0] == 'g' || p[0] == 'c') && p.find_first_not_of("0123456789", 1) == std::string::npos &&
                 p.size() < 6) {
            c.group = std::stoi(p.substr(1));
            c.axis = p[0] == 'c' ? KvAxis::Channel : KvAxis::Token;
            if (c.group % 8 != 0 || (c.axis == KvAxis::Channel && (c.group < 8 || c.group > 1024))) bad();
        } else if (p == "kivi") {  // keys per channel in blocks of 32 tokens, asymmetric (values: parse_kv_format)
            c.axis = KvAxis::Channel;
            c.group = 32;
            c.zero_point = true;
        } else bad();
    }
    return c;
}

std::string kv_codec_name(const KvCodec& c) {
    std::string n = dtype_name(c.dtype);
    if (c.axis == KvAxis::None) return n;
    if (c.group > 0) n += (c.axis == KvAxis::Channel ? "-c" : "-g") + std::to_string(c.group);
    return n + (c.zero_point ? "-asym" : "-sym");
}

std::string kv_format_name(const KvFormat& f) {
    const std::string k = kv_codec_name(f.k), v = kv_codec_name(f.v);
    std::string n = k == v ? k : "k=" + k + "/v=" + v;
    if (f.residual > 0) n += "+r" + std::to_string(f.residual);
    if (f.sinks > 0) n += "+s" + std::to_string(f.sinks);
    return n;
}

namespace {

// The value side of a codec given for both: per-channel is for keys, so a "-cN" or "-kivi"
// codec stores values per token in groups of 32 channels (KIVI's values).
KvCodec value_side(const KvCodec& c) {
    if (c.axis != KvAxis::Channel) return c;
    KvCodec v = c;
    v.axis = KvAxis::Token;
    v.group = 32;
    return v;
}

KvFormat finish_format(KvFormat f, int residual, int sinks, const std::string& flag_r, const std::string& flag_s) {
    if (f.v.axis == KvAxis::Channel)
        fail("--v-dtype {}: values are quantized per token (-gN); per-channel (-cN) is for keys", kv_codec_name(f.v));
    if (residual < 0 || residual > 65536) fail("{} {}: expected 0 to 65536 tokens", flag_r, residual);
    if (sinks < 0 || sinks > 65536) fail("{} {}: expected 0 to 65536 tokens", flag_s, sinks);
    if ((residual > 0 || sinks > 0) && f.k.axis == KvAxis::None && f.v.axis == KvAxis::None)
        fail("{} {} / {} {}: a full-precision window or sinks need an integer K or V codec (int8, int4, int2)", flag_r,
             residual, flag_s, sinks);
    f.residual = residual;
    f.sinks = sinks;
    return f;
}

}  // namespace

KvFormat parse_kv_format(const std::string& kv, const std::string& k, const std::string& v, int residual, int sinks) {
    const KvCodec both = parse_kv_codec(kv.empty() ? "fp32" : kv, "--kv-dtype");
    KvFormat f(k.empty() ? both : parse_kv_codec(k, "--k-dtype"), v.empty() ? value_side(both) : parse_kv_codec(v, "--v-dtype"));
    return finish_format(f, residual, sinks, "--kv-residual", "--kv-sinks");
}

KvFormat parse_kv_format_spec(const std::string& spec, const std::string& flag) {
    std::string s = spec;
    int residual = 0, sinks = 0;
    for (size_t plus; (plus = s.rfind('+')) != std::string::npos; s.resize(plus)) {
        const std::string p = s.substr(plus + 1);
        if (p.size() < 2 || p.size() > 6 || (p[0] != 'r' && p[0] != 's') ||
            p.find_first_not_of("0123456789", 1) != std::string::npos)
            fail("{} {}: expected <codec>[/<codec>][+rN][+sN], e.g. int4-kivi+r128+s4", flag, spec);
        (p[0] == 'r' ? residual : sinks) = std::stoi(p.substr(1));
    }
    const size_t slash = s.find('/');  // K/V: keys and values stored apart, e.g. int8/int4
    KvFormat f;
    if (slash == std::string::npos) {
        const KvCodec c = parse_kv_codec(s, flag);
        f = KvFormat(c, value_side(c));
    } else {
        f = KvFormat(parse_kv_codec(s.substr(0, slash), flag), parse_kv_codec(s.substr(slash + 1), flag));
    }
    return finish_format(f, residual, sinks, flag + " " + spec + ": +r", flag + " " + spec + ": +s");
}

KvCodec kv_codec_for(const KvCodec& c, int hd, const std::string& flag) {
    if (c.axis == KvAxis::None) return c;
    KvCodec f = c;
    if (c.axis == KvAxis::Channel) {
        if (hd % 8 != 0) fail("{} {}: integer KV codecs need head_dim a multiple of 8 (the model has {})", flag, kv_codec_name(c), hd);
        return f;
    }
    if (f.group >= hd) f.group = 0;
    if (hd % 8 != 0) fail("{} {}: integer KV codecs need head_dim a multiple of 8 (the model has {})", flag, kv_codec_name(c), hd);
    if (f.group > 0 && hd % f.group != 0)
        fail("{} {}: head_dim {} is not a multiple of the group of {} channels", flag, kv_codec_name(c), hd, f.group);
    return f;
}

int64_t kv_row_stride(const KvCodec& c, int hd) {
    if (c.axis == KvAxis::None) return int64_t(hd) * int64_t(dtype_size(c.dtype));
    const int64_t codes = int64_t(hd) * kv_codec_bits(c) / 8;
    if (c.axis == KvAxis::Channel) return codes;
    const int64_t groups = (hd + group_of(c, hd) - 1) / group_of(c, hd);  // the planner may ask for a partial last group
    return codes + groups * (c.zero_point ? 2 : 1) * KvCodec::kScaleBytes;
}

void kv_encode_row(const KvCodec& c, int hd, const float* x, uint8_t* row) {
    switch (c.dtype) {
        case DType::F32: std::memcpy(row, x, size_t(hd) * 4); return;
        case DType::F16:
            for (int i = 0; i < hd; i++) reinterpret_cast<uint16_t*>(row)[i] = f32_to_f16(x[i]);
            return;
        case DType::BF16:
            for (int i = 0; i < hd; i++) reinterpret_cast<uint16_t*>(row)[i] = f32_to_bf16(x[i]);
            return;
        default: break;
    }
    const int bits = kv_codec_bits(c), G = group_of(c, hd);
    const int64_t code_bytes = int64_t(hd) * bits / 8;
    std::memset(row, 0, size_t(code_bytes));
    uint8_t* meta = row + code_bytes;
    for (int g0 = 0; g0 < hd; g0 += G) {
        const Fit f = fit(c, x + g0, G, 1);
        std::memcpy(meta, &f.s16, 2);
        if (c.zero_point) std::memcpy(meta + 2, &f.m16, 2);
        meta += c.zero_point ? 4 : 2;
        for (int i = g0; i < g0 + G; i++) put_code(row, bits, i, f.code(x[i]));
    }
}

void kv_decode_row(const KvCodec& c, int hd, const uint8_t* row, float* x) {
    switch (c.dtype) {
        case DType::F32: std::memcpy(x, row, size_t(hd) * 4); return;
        case DType::F16:
            for (int i = 0; i < hd; i++) x[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
            return;
        case DType::BF16:
            for (int i = 0; i < hd; i++) x[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
            return;
        default: break;
    }
    const int bits = kv_codec_bits(c), G = group_of(c, hd);
    const uint8_t* meta = row + int64_t(hd) * bits / 8;
    for (int g0 = 0; g0 < hd; g0 += G) {
        uint16_t s16, m16 = 0;
        std::memcpy(&s16, meta, 2);
        if (c.zero_point) std::memcpy(&m16, meta + 2, 2);
        meta += c.zero_point ? 4 : 2;
        const float s = f16_to_f32(s16), m = f16_to_f32(m16);
        for (int i = g0; i < g0 + G; i++) x[i] = decode_code(c, bits, get_code(row, bits, i), s, m);
    }
}

int64_t kv_channel_blocks(const KvCodec& c, int n_slots) {
    return c.axis == KvAxis::Channel ? (n_slots + c.group - 1) / c.group : 0;
}

int64_t kv_channel_meta_bytes(const KvCodec& c, int hd) {
    return c.axis == KvAxis::Channel ? int64_t(hd) * KvCodec::kScaleBytes * (c.zero_point ? 2 : 1) : 0;
}

void kv_encode_block(const KvCodec& c, int hd, const float* x, int64_t x_stride, uint8_t* rows, int64_t row_stride,
                     uint8_t* meta) {
    const int bits = kv_codec_bits(c), T = c.group;
    for (int r = 0; r < T; r++) std::memset(rows + r * row_stride, 0, size_t(int64_t(hd) * bits / 8));
    auto* scales = reinterpret_cast<uint16_t*>(meta);
    for (int i = 0; i < hd; i++) {
        const Fit f = fit(c, x + i, T, x_stride);
        scales[i] = f.s16;
        if (c.zero_point) scales[hd + i] = f.m16;
        for (int r = 0; r < T; r++) put_code(rows + r * row_stride, bits, i, f.code(x[r * x_stride + i]));
    }
}

void kv_decode_block_row(const KvCodec& c, int hd, const uint8_t* row, const uint8_t* meta, float* x) {
    const int bits = kv_codec_bits(c);
    const auto* scales = reinterpret_cast<const uint16_t*>(meta);
    for (int i = 0; i < hd; i++) {
        const float s = f16_to_f32(scales[i]), m = c.zero_point ? f16_to_f32(scales[hd + i]) : 0.0f;
        x[i] = decode_code(c, bits, get_code(row, bits, i), s, m);
    }
}

}  // namespace kvscope
