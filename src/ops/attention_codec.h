// Internal to the codec attention (attention_codec.cpp and the kernels it calls): a run of KV
// rows as the kernels see it, and the kernels of each instruction set.
//
// A kernel takes the M query heads that share one KV head (a GQA group, or one head) and reads
// each row once for all of them: the codes of a row are widened and scaled in registers, then
// multiplied into every head's sums. Kernels hold a row's channels in their own order (below):
// the caller gives them q in that order and reads their value sums back through it.
#pragma once

#include <cstdint>

#include "kv/kv_layout.h"

namespace kvscope::ops::codec {

enum class Kind : uint8_t { F32, F16, BF16, I8S, I8A, I4, I2 };

// How a row's values come from what is stored:
//   Plain:   floats as they are, or bare codes (a per-channel key block, whose scales the caller
//            folds into q);
//   Row:     one symmetric scale for the whole row (int8's default), applied once per key to
//            the dot product and to the weight instead of to every code;
//   Lane:    a scale and a minimum per group of channels, applied to each widened vector;
//   LaneSym: the same with symmetric codes: the minimum is -offset x scale.
enum class Mode : uint8_t { Plain, Row, Lane, LaneSym };

struct Rows {
    const uint8_t* rows = nullptr;  // the first row
    int64_t stride = 0;             // bytes from one row to the next
    int n = 0;                      // rows
    Kind kind = Kind::F32;
    Mode mode = Mode::Plain;
    int hd = 0;
    int G = 0;                      // channels per group (Lane, Row)
    bool zp = false;                // a minimum per group stored after each scale
    float offset = 0;               // symmetric int4/int2 store code + offset
    int64_t code_bytes = 0;         // the group scales start here in a row
};

// A kernel's order of a row's channels: units of P x L channels (L lanes, P vectors per unit),
// lane l of vector k holding channel l * P + k of its unit. int4 and int2 split each byte's
// codes with shifts and masks, so their codes come out interleaved (P = 2 and 4).
struct Order {
    int L = 8, P = 1;
    bool identity() const { return P == 1; }
    int index(int c) const {  // where natural channel c sits
        const int u = c / (P * L), w = c % (P * L);
        return u * P * L + (w % P) * L + w / P;
    }
};

// The heads of one kernel call: m (1 to 8) queries and, per head, its score row (or weights)
// at the run's first row, and its value sums.
struct Heads {
    int m = 0;
    const float* q[8] = {};   // scores: in the kernel's order
    const float* cst = nullptr;  // scores: per head, added to each dot product (nullptr: 0)
    float* s[8] = {};         // scores: out; values: the softmax weights
    float* acc[8] = {};       // values: in the kernel's order, accumulated into
};

// Fast kernels for head_dim a multiple of 4 x L and groups dividing 4 x L channels or a
// multiple of them; `covers` says whether a run qualifies.
namespace avx2 {
bool covers(const Rows& r);
Order order(Kind k);
void scores(const Rows& r, const Heads& h, float scale);
void values(const Rows& r, const Heads& h);
// Any head_dim and group (multiples of 8), natural order, 8 channels at a time.
void scores_any(const Rows& r, const Heads& h, float scale);
void values_any(const Rows& r, const Heads& h);
}  // namespace avx2

namespace avx512 {
bool covers(const Rows& r);
Order order(Kind k);
void scores(const Rows& r, const Heads& h, float scale);
void values(const Rows& r, const Heads& h);
}  // namespace avx512

}  // namespace kvscope::ops::codec
