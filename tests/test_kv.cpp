// The KV cache: exact bookkeeping, exact byte accounting, storage round trips.
#include <gtest/gtest.h>

#include <random>

#include "kv/kv_cache.h"
#include "kv/kv_seqs.h"

using namespace kvscope;

TEST(KvSeqs, AppendTracksSlotsAndPositionsExactly) {
    KvSeqs s(2, 10);
    EXPECT_TRUE(s.append(0, 4));
    EXPECT_EQ(s.used(0), 4);
    EXPECT_EQ(s.next_slot(0), 4);
    EXPECT_EQ(s.next_pos(0), 4);
    EXPECT_EQ(s.used(1), 0);
    EXPECT_TRUE(s.append(0, 6));
    EXPECT_EQ(s.free(0), 0);
    EXPECT_FALSE(s.append(0, 1));  // full: refused, nothing changed
    EXPECT_EQ(s.used(0), 10);
    EXPECT_FALSE(s.append(2, 1));  // no such sequence
    EXPECT_FALSE(s.append(1, -1));
}

TEST(KvSeqs, PaddingShiftsPositionsNotSlots) {
    KvSeqs s(2, 16);
    EXPECT_TRUE(s.set_padding(1, 3));
    EXPECT_EQ(s.pad(1), 3);
    EXPECT_EQ(s.next_slot(1), 3);
    EXPECT_EQ(s.next_pos(1), 0);
    EXPECT_TRUE(s.append(1, 5));
    EXPECT_EQ(s.next_slot(1), 8);
    EXPECT_EQ(s.next_pos(1), 5);
    EXPECT_FALSE(s.set_padding(1, 1));  // only on an empty sequence
    s.clear(1);
    EXPECT_EQ(s.used(1), 0);
    EXPECT_EQ(s.pad(1), 0);
}

TEST(KvCache, AllocatedBytesEqualTheTextbookFormulaForEveryDtypeBatchAndLength) {
    for (DType t : {DType::F32, DType::F16, DType::BF16})
        for (int batch : {1, 2, 4, 16})
            for (int len : {1, 32, 100, 1024}) {
                KvShape sh{6, batch, 12, len, 64, t};
                KvCache c(sh);
                // 2 x batch x S x n_layer x n_kv_head x head_dim x bytes
                int64_t formula = int64_t(2) * batch * len * 6 * 12 * 64 * int64_t(dtype_size(t));
                EXPECT_EQ(c.bytes_allocated(), formula) << dtype_name(t) << " b" << batch << " L" << len;
                EXPECT_EQ(kv_cache_bytes(sh), formula);
            }
    // distilgpt2: 18432 bytes per token in fp16, 36864 in fp32.
    EXPECT_EQ(kv_bytes_per_token(6, 12, 64, DType::F16), 18432);
    EXPECT_EQ(kv_bytes_per_token(6, 12, 64, DType::F32), 36864);
}

TEST(KvCache, WriteStoresEachHeadContiguouslyInItsDtype) {
    for (DType t : {DType::F32, DType::F16, DType::BF16}) {
        KvShape sh{2, 3, 2, 5, 8, t};
        KvCache c(sh);
        std::mt19937 rng(1);
        std::normal_distribution<float> nd;
        std::vector<float> k(16), v(16);
        for (auto& x : k) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        c.write(1, 2, 3, 0, k.data(), v.data());
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 8; i++) {
                float gk, gv;
                int64_t idx = 3 * 8 + i;
                if (t == DType::F32) {
                    gk = static_cast<const float*>(c.k(1, 2, h))[idx];
                    gv = static_cast<const float*>(c.v(1, 2, h))[idx];
                } else if (t == DType::F16) {
                    gk = f16_to_f32(static_cast<const uint16_t*>(c.k(1, 2, h))[idx]);
                    gv = f16_to_f32(static_cast<const uint16_t*>(c.v(1, 2, h))[idx]);
                } else {
                    gk = bf16_to_f32(static_cast<const uint16_t*>(c.k(1, 2, h))[idx]);
                    gv = bf16_to_f32(static_cast<const uint16_t*>(c.v(1, 2, h))[idx]);
                }
                float tol = t == DType::F32 ? 0.0f : t == DType::F16 ? 1e-3f : 8e-3f;
                EXPECT_NEAR(gk, k[size_t(h * 8 + i)], tol * std::abs(k[size_t(h * 8 + i)]) + 1e-6f);
                EXPECT_NEAR(gv, v[size_t(h * 8 + i)], tol * std::abs(v[size_t(h * 8 + i)]) + 1e-6f);
            }
        // Untouched neighbours stay zero.
        EXPECT_EQ(static_cast<const uint8_t*>(c.k(1, 2, 0))[0], 0);
    }
}

TEST(KvCache, RejectsStorageItCannotStore) {
    KvShape sh{1, 1, 1, 4, 8, DType::F8};
    EXPECT_THROW(KvCache c(sh), std::runtime_error);
    KvShape odd{1, 1, 1, 4, 12, DType::I8};  // integer codecs need head_dim a multiple of 8
    EXPECT_THROW(KvCache c(odd), std::runtime_error);
}
