#include "arch/attend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kv/kv_evict.h"
#include "ops/attention.h"
#include "ops/read.h"

namespace kvscope {

AttnPlan attn_plan(int n_head, int n_kv_head, int head_dim) {
    AttnPlan p;
    p.n_head = n_head;
    p.n_kv_head = n_kv_head;
    p.head_dim = head_dim;
    p.group = n_head / n_kv_head;
    // MHA: two heads per task, their streams read side by side (docs/KERNELS.md, attention).
    // GQA: one KV head per task with all its query heads, so its stream is read once.
    p.kv_per_task = p.group == 1 ? 2 : 1;
    p.q_per_call = std::min(p.group * p.kv_per_task, ops::kMaxHeadGroup);
    return p;
}

int64_t AttnPlan::scores_per_thread(int max_slots) const { return int64_t(q_per_call) * max_slots; }

void attend_cached(const AttnPlan& plan, const Ubatch& ub, const KvCache& cache, const KvSeqs& seqs, int kl,
                   const float* qs, int64_t q_stride, float* outs, int64_t out_stride, float* scores_all, int max_slots) {
    const int T = ub.n_tok, hd = plan.head_dim, n_tasks = plan.n_tasks();
    const float scale = 1.0f / std::sqrt(float(hd));
    const KvFormat& fmt = cache.format();
    // K and V in one float type: the float kernels; anything else: the codec kernels.
    const bool float_dt = fmt.is_float(fmt.k.dtype);
    // A paged layout in a float type: each head's blocks (the float kernels over block tables).
    const bool blocks = cache.paged() && float_dt && !cache.windowed();
    // A window, sinks, per-channel keys or a paged quantized layout: each head's slots as runs.
    const bool windowed = !blocks && (cache.windowed() || cache.paged());
    // Eviction statistics: each token's rank from its sequence's last token in this ubatch (in
    // the calling thread's buffers, read by the team through `rank`).
    KvEvictor* ev = cache.evictor() && cache.evictor()->needs_stats() ? cache.evictor() : nullptr;
    static thread_local std::vector<int> rank_buf, seen;
    bool shared = false;
    if (ev) {
        rank_buf.resize(size_t(T));
        seen.assign(size_t(cache.shape().n_seq), 0);
        for (int t = T - 1; t >= 0; t--) {
            rank_buf[size_t(t)] = seen[size_t(ub.seq[t])]++;
            shared |= rank_buf[size_t(t)] > 0;
        }
    }
    const int* rank = rank_buf.data();
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int t = 0; t < T; t++) {
        for (int task = 0; task < n_tasks; task++) {
            const int s = ub.seq[t], slot = ub.slot[t];
            const int pad = seqs.pad(s);
            const int lo = slot < pad ? slot : pad;  // a padding token sees only itself
            const int kv0 = task * plan.kv_per_task, kv1 = std::min(plan.n_kv_head, kv0 + plan.kv_per_task);
            const int h0 = kv0 * plan.group, h1 = kv1 * plan.group;
            float* scores = scores_all + int64_t(omp_get_thread_num()) * plan.scores_per_thread(max_slots);
            for (int c = h0; c < h1; c += plan.q_per_call) {
                const int n = std::min(plan.q_per_call, h1 - c);
                const float* q[ops::kMaxHeadGroup];
                const void *k[ops::kMaxHeadGroup], *v[ops::kMaxHeadGroup];
                float* out[ops::kMaxHeadGroup];
                thread_local KvRuns kr[ops::kMaxHeadGroup], vr[ops::kMaxHeadGroup];
                thread_local std::vector<const uint8_t*> kb[ops::kMaxHeadGroup], vb[ops::kMaxHeadGroup];
                const uint8_t* const* kbp[ops::kMaxHeadGroup];
                const uint8_t* const* vbp[ops::kMaxHeadGroup];
                const KvRuns *krp[ops::kMaxHeadGroup], *vrp[ops::kMaxHeadGroup];
                for (int x = 0; x < n; x++) {
                    const int h = c + x, kvh = h / plan.group;
                    q[x] = qs + int64_t(t) * q_stride + int64_t(h) * hd;
                    if (blocks) {
                        if (x == 0 || kvh != (h - 1) / plan.group) {
                            cache.block_rows(0, kl, s, kvh, slot + 1, &kb[x]);
                            cache.block_rows(1, kl, s, kvh, slot + 1, &vb[x]);
                            kbp[x] = kb[x].data(), vbp[x] = vb[x].data();
                        } else {
                            kbp[x] = kbp[x - 1], vbp[x] = vbp[x - 1];
                        }
                    } else if (!windowed) {
                        k[x] = cache.k(kl, s, kvh);
                        v[x] = cache.v(kl, s, kvh);
                    }
                    out[x] = outs + int64_t(t) * out_stride + int64_t(h) * hd;
                    if (windowed) {
                        if (x == 0 || kvh != (h - 1) / plan.group) {
                            cache.runs(0, kl, s, kvh, pad, lo, slot + 1, &kr[x]);
                            cache.runs(1, kl, s, kvh, pad, lo, slot + 1, &vr[x]);
                            krp[x] = &kr[x], vrp[x] = &vr[x];
                        } else {
                            krp[x] = krp[x - 1], vrp[x] = vrp[x - 1];
                        }
                    }
                }
                if (blocks)
                    ops::attend_heads_blocks(n, q, kbp, vbp, cache.shape().block_tokens, fmt.k.dtype, hd, lo, slot + 1, scale,
                                             scores, out);
                else if (windowed) ops::attend_heads_runs(n, q, krp, vrp, hd, lo, slot + 1, scale, scores, out);
                else if (float_dt) ops::attend_heads(n, q, k, v, fmt.k.dtype, hd, lo, slot + 1, scale, scores, out);
                else ops::attend_heads_codec(n, q, k, v, fmt.k, fmt.v, hd, lo, slot + 1, scale, scores, out);
                // The kernel leaves each head's exp(score - max) in its scores row: report them
                // per KV head (the cache is not read again).
                for (int x0 = 0; ev && x0 < n;) {
                    const int kvh = (c + x0) / plan.group;
                    int x1 = x0;
                    const float* p[ops::kMaxHeadGroup];
                    while (x1 < n && (c + x1) / plan.group == kvh) {
                        p[x1 - x0] = scores + int64_t(x1) * (slot + 1);
                        x1++;
                    }
                    ev->observe(kl, s, kvh, rank[t], p, x1 - x0, lo, slot + 1, shared);
                    x0 = x1;
                }
            }
        }
    }
}

uint32_t read_weight(const WeightView& w) {
    uint32_t total = 0;
#pragma omp parallel reduction(+ : total)
    total += ops::read_share(w.data, w.bytes(), omp_get_thread_num(), omp_get_num_threads());
    return total;
}

uint32_t read_kv(const AttnPlan& plan, const KvCache& cache, int kl, int seq, int keys) {
    const KvShape& ks = cache.shape();
    if (keys < 1 || keys > ks.n_slots) fail("read_step: {} keys; the cache holds 1 to {} per sequence", keys, ks.n_slots);
    const int64_t k_bytes = int64_t(keys) * cache.k_stride(), v_bytes = int64_t(keys) * cache.v_stride();
    uint32_t total = 0;
    if (cache.paged()) {  // block by block, as attention reads it
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total)
        for (int task = 0; task < plan.n_tasks(); task++) {
            thread_local KvRuns runs;
            const int h1 = std::min(plan.n_kv_head, (task + 1) * plan.kv_per_task);
            for (int side = 0; side < 2; side++)
                for (int h = task * plan.kv_per_task; h < h1; h++) {
                    cache.runs(side, kl, seq, h, 0, 0, keys, &runs);
                    for (int r = 0; r < runs.n; r++) {
                        const KvRun& run = runs.r[size_t(r)];
                        total += ops::read_words(run.rows, int64_t(run.j1 - run.j0) * run.stride);
                    }
                }
        }
        return total;
    }
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total)
    for (int task = 0; task < plan.n_tasks(); task++) {
        const int h1 = std::min(plan.n_kv_head, (task + 1) * plan.kv_per_task);
        for (int h = task * plan.kv_per_task; h < h1; h++) total += ops::read_words(cache.k(kl, seq, h), k_bytes);
        for (int h = task * plan.kv_per_task; h < h1; h++) total += ops::read_words(cache.v(kl, seq, h), v_bytes);
    }
    return total;
}

}  // namespace kvscope
