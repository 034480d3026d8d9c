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
             "multiple of 8; g0 the whole row) and -sym or -asym, e.g. int4-g64-sym",
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
        else if (p.size() > 1 && p[0] == 'g' && p.find_first_not_of("0123456789", 1) == std::string::npos && p.size() < 6) {
            c.group = std::stoi(p.substr(1));
            if (c.group % 8 != 0) bad();
        } else bad();
    }
    return c;
}

std::string kv_codec_name(const KvCodec& c) {
    std::string n = dtype_name(c.dtype);
    if (c.axis == KvAxis::None) return n;
    if (c.group > 0) n += "-g" + std::to_string(c.group);
    return n + (c.zero_point ? "-asym" : "-sym");
}

std::string kv_format_name(const KvFormat& f) {
    const std::string k = kv_codec_name(f.k), v = kv_codec_name(f.v);
    return k == v ? k : "k=" + k + "/v=" + v;
}

KvFormat parse_kv_format(const std::string& kv, const std::string& k, const std::string& v) {
    const KvCodec both = parse_kv_codec(kv.empty() ? "fp32" : kv, "--kv-dtype");
    return {k.empty() ? both : parse_kv_codec(k, "--k-dtype"), v.empty() ? both : parse_kv_codec(v, "--v-dtype")};
}

KvCodec kv_codec_for(const KvCodec& c, int hd, const std::string& flag) {
    if (c.axis == KvAxis::None) return c;
    KvCodec f = c;
    if (f.group >= hd) f.group = 0;
    if (hd % 8 != 0) fail("{} {}: integer KV codecs need head_dim a multiple of 8 (the model has {})", flag, kv_codec_name(c), hd);
    if (f.group > 0 && hd % f.group != 0)
        fail("{} {}: head_dim {} is not a multiple of the group of {} channels", flag, kv_codec_name(c), hd, f.group);
    return f;
}

int64_t kv_row_stride(const KvCodec& c, int hd) {
    if (c.axis == KvAxis::None) return int64_t(hd) * int64_t(dtype_size(c.dtype));
    const int64_t codes = int64_t(hd) * kv_codec_bits(c) / 8;
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
    const int levels = (1 << bits) - 1;
    for (int g0 = 0; g0 < hd; g0 += G) {
        float mn = INFINITY, mx = -INFINITY, amax = 0;
        for (int i = g0; i < g0 + G; i++) {
            if (!std::isfinite(x[i])) fail("KV cache {}: a key or value is {}; integer codecs store finite values only",
                                           kv_codec_name(c), x[i]);
            mn = std::min(mn, x[i]);
            mx = std::max(mx, x[i]);
            amax = std::max(amax, std::abs(x[i]));
        }
        if (!c.zero_point) {
            const int qmax = (1 << (bits - 1)) - 1;
            const float want = amax / float(qmax);
            if (want > 65504.0f) fail("KV cache {}: |value| {} too large for an fp16 scale", kv_codec_name(c), amax);
            const uint16_t s16 = f16_up(want);
            const float s = f16_to_f32(s16);
            std::memcpy(meta, &s16, 2);
            meta += 2;
            const int offset = bits == 8 ? 0 : qmax + 1;
            for (int i = g0; i < g0 + G; i++) {
                const int q = s > 0 ? std::clamp(int(std::lrint(x[i] / s)), -qmax, qmax) : 0;
                put_code(row, bits, i, uint32_t(q + offset) & 0xFFu);
            }
        } else {
            if (mn < -65504.0f || mx > 65504.0f)
                fail("KV cache {}: value range [{}, {}] outside fp16's", kv_codec_name(c), mn, mx);
            const uint16_t m16 = f16_down(mn);
            const float m = f16_to_f32(m16);
            const float want = (mx - m) / float(levels);
            if (want > 65504.0f) fail("KV cache {}: value range [{}, {}] too wide for an fp16 scale", kv_codec_name(c), mn, mx);
            const uint16_t s16 = f16_up(want);
            const float s = f16_to_f32(s16);
            std::memcpy(meta, &s16, 2);
            std::memcpy(meta + 2, &m16, 2);
            meta += 4;
            for (int i = g0; i < g0 + G; i++) {
                const int u = s > 0 ? std::clamp(int(std::lrint((x[i] - m) / s)), 0, levels) : 0;
                put_code(row, bits, i, uint32_t(u));
            }
        }
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
        for (int i = g0; i < g0 + G; i++) {
            const uint32_t u = get_code(row, bits, i);
            if (c.zero_point) x[i] = m + s * float(u);
            else if (bits == 8) x[i] = s * float(int8_t(uint8_t(u)));
            else x[i] = s * (float(int(u)) - float(1 << (bits - 1)));
        }
    }
}

}  // namespace kvscope
