#include "kv/kv_evict.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace kvscope {

const char* kv_policy_name(KvPolicy p) {
    switch (p) {
        case KvPolicy::Full: return "full";
        case KvPolicy::Window: return "window";
        case KvPolicy::Sinks: return "sinks";
        case KvPolicy::H2O: return "h2o";
        case KvPolicy::SnapKV: return "snapkv";
        case KvPolicy::TOVA: return "tova";
    }
    return "?";
}

KvPolicy parse_kv_policy(const std::string& s, const std::string& flag) {
    for (KvPolicy p : {KvPolicy::Full, KvPolicy::Window, KvPolicy::Sinks, KvPolicy::H2O, KvPolicy::SnapKV, KvPolicy::TOVA})
        if (s == kv_policy_name(p)) return p;
    fail("{} '{}': expected full, window, sinks, h2o, snapkv or tova", flag, s);
}

void KvPolicyConfig::validate() const {
    if (!bounded()) return;
    if (budget < 2) fail("--kv-budget {}: expected at least 2 tokens for --kv-policy {}", budget, kv_policy_name(kind));
    if (kind == KvPolicy::Sinks && (sinks < 0 || sinks >= budget))
        fail("--evict-sinks {}: expected 0 to {} (fewer than --kv-budget)", sinks, budget - 1);
    if (kind == KvPolicy::H2O && recent_kept() >= budget)
        fail("--evict-recent {}: expected fewer than --kv-budget {}", recent_kept(), budget);
    if (kind == KvPolicy::SnapKV && (window < 1 || window >= budget))
        fail("--snapkv-window {}: expected 1 to {} (fewer than --kv-budget)", window, budget - 1);
    if (kind == KvPolicy::SnapKV && (pool < 1 || pool % 2 == 0)) fail("--snapkv-pool {}: expected an odd width >= 1", pool);
}

std::string kv_policy_label(const KvPolicyConfig& p) {
    switch (p.kind) {
        case KvPolicy::Full: return "full";
        case KvPolicy::Sinks: return fmt::format("sinks({})+{}", p.sinks, p.budget - p.sinks);
        case KvPolicy::H2O: return fmt::format("h2o {} (recent {})", p.budget, p.recent_kept());
        case KvPolicy::SnapKV: return fmt::format("snapkv {} (window {}, pool {})", p.budget, p.window, p.pool);
        default: return fmt::format("{} {}", kv_policy_name(p.kind), p.budget);
    }
}

int parse_kv_budget(const std::string& s, int n_ctx, const std::string& flag) {
    double v = 0;
    size_t used = 0;
    try {
        v = std::stod(s, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    const bool fraction = s.find('.') != std::string::npos;
    if (used != s.size() || s.empty() || !(v > 0) || (fraction && v > 1) || (!fraction && v != std::floor(v)) || v > 1e9)
        fail("{} '{}': expected a number of tokens (e.g. 256) or a fraction of the context window (e.g. 0.25)", flag, s);
    return fraction ? std::max(1, int(std::lround(v * n_ctx))) : int(v);
}

KvEvictor::KvEvictor(const KvPolicyConfig& p, int n_layer, int n_seq, int n_kv_head, int n_group, int capacity)
    : p_(p), n_layer_(n_layer), n_seq_(n_seq), n_kv_(n_kv_head), n_group_(n_group), cap_(capacity) {
    p.validate();
    const size_t streams = size_t(n_layer) * size_t(n_seq) * size_t(n_kv_head), cells = streams * size_t(capacity);
    pos_.assign(cells, -1);
    if (p.kind == KvPolicy::H2O) acc_.assign(cells, 0.0f);
    if (p.kind == KvPolicy::TOVA) cur_.assign(cells, 0.0f);
    if (p.kind == KvPolicy::SnapKV) {
        obs_.assign(cells * size_t(p.window), 0.0f);
        obs_pos_.assign(size_t(n_seq) * size_t(p.window), -1);
    }
    newest_.assign(size_t(n_seq), -1);
    score_.resize(size_t(capacity));
    pooled_.resize(size_t(capacity));
    order_.resize(size_t(capacity));
    victims_.reserve(size_t(capacity));
}

bool KvEvictor::needs_stats() const {
    return p_.kind == KvPolicy::H2O || p_.kind == KvPolicy::TOVA || p_.kind == KvPolicy::SnapKV;
}

void KvEvictor::clear(int seq) {
    for (int il = 0; il < n_layer_; il++)
        for (int h = 0; h < n_kv_; h++) std::fill_n(&pos_[stream(il, seq, h) * size_t(cap_)], cap_, -1);
    newest_[size_t(seq)] = -1;
    if (!obs_pos_.empty()) std::fill_n(&obs_pos_[size_t(seq) * size_t(p_.window)], p_.window, -1);
}

void KvEvictor::on_write(int seq, int slot, int pos) {
    if (slot < 0 || slot >= cap_) fail("internal: KV slot {} outside the evicting cache's {} slots", slot, cap_);
    // The token's own statistics start from zero; it is also the newest query, so TOVA's row
    // and its SnapKV ring row are cleared for observe() to fill.
    const int W = obs_pos_.empty() ? 0 : p_.window;
    for (int il = 0; il < n_layer_; il++)
        for (int h = 0; h < n_kv_; h++) {
            const size_t s = stream(il, seq, h), at = s * size_t(cap_) + size_t(slot);
            pos_[at] = pos;
            if (!acc_.empty()) acc_[at] = 0.0f;
            if (!cur_.empty()) std::fill_n(col(cur_, s), cap_, 0.0f);
            if (W) {
                float* o = col(obs_, s, W);
                for (int r = 0; r < W; r++) o[size_t(r) * size_t(cap_) + size_t(slot)] = 0.0f;
                std::fill_n(o + size_t(pos % W) * size_t(cap_), cap_, 0.0f);
            }
        }
    newest_[size_t(seq)] = std::max(newest_[size_t(seq)], pos);
    if (W) obs_pos_[size_t(seq) * size_t(W) + size_t(pos % W)] = pos;
}

void KvEvictor::observe(int il, int seq, int h, int rank_from_end, const float* const* p, int n, int lo, int hi, bool shared) {
    if (!needs_stats()) return;
    if (p_.kind == KvPolicy::TOVA && rank_from_end != 0) return;
    if (p_.kind == KvPolicy::SnapKV && rank_from_end >= p_.window) return;
    float inv[16];
    for (int x = 0; x < n; x++) {
        float sum = 0;
        for (int j = lo; j < hi; j++) sum += p[x][j];
        inv[x] = sum > 0 ? 1.0f / sum : 0.0f;
    }
    auto prob = [&](int j) {
        float v = 0;
        for (int x = 0; x < n; x++) v += p[x][j] * inv[x];
        return v;
    };
    // Sums: a KV head's query heads may come in several calls. Only H2O's row is shared by the
    // tokens of one forward; TOVA's is the last token's and SnapKV's rows are one per query.
    const size_t s = stream(il, seq, h);
    float* row = p_.kind == KvPolicy::H2O    ? col(acc_, s)
                 : p_.kind == KvPolicy::TOVA ? col(cur_, s)
                                             : col(obs_, s, p_.window) + size_t(pos_[s * size_t(cap_) + size_t(hi - 1)] % p_.window) * size_t(cap_);
    const bool atomic = shared && p_.kind == KvPolicy::H2O;
    for (int j = lo; j < hi; j++) {
        if (atomic) std::atomic_ref<float>(row[j]).fetch_add(prob(j), std::memory_order_relaxed);
        else row[j] += prob(j);
    }
}

void KvEvictor::choose(int il, int seq, int h_first, int h_last, int n, int k, std::vector<int>* victims) {
    const int* pos = positions(il, seq, h_first);
    const int newest = newest_[size_t(seq)];
    // Protected slots are never candidates; the rest are ranked by score (lowest evicted first,
    // older first on ties).
    int n_cand = 0;
    for (int j = 0; j < n; j++) {
        bool keep = false;
        switch (p_.kind) {
            case KvPolicy::Sinks: keep = pos[j] < p_.sinks; break;
            case KvPolicy::H2O: keep = pos[j] > newest - p_.recent_kept(); break;
            case KvPolicy::SnapKV: keep = pos[j] > newest - p_.window; break;
            default: break;
        }
        if (!keep) order_[size_t(n_cand++)] = j;
    }
    auto sum_heads = [&](std::vector<float>& v, int j) {
        float t = 0;
        for (int h = h_first; h <= h_last; h++) t += v[stream(il, seq, h) * size_t(cap_) + size_t(j)];
        return t;
    };
    switch (p_.kind) {
        case KvPolicy::Window:
        case KvPolicy::Sinks:
            for (int i = 0; i < n_cand; i++) score_[size_t(order_[size_t(i)])] = float(pos[order_[size_t(i)]]);
            break;
        case KvPolicy::H2O:
            for (int i = 0; i < n_cand; i++) score_[size_t(order_[size_t(i)])] = sum_heads(acc_, order_[size_t(i)]);
            break;
        case KvPolicy::TOVA:
            for (int i = 0; i < n_cand; i++) score_[size_t(order_[size_t(i)])] = sum_heads(cur_, order_[size_t(i)]);
            break;
        case KvPolicy::SnapKV: {
            // Attention from the queries of the last `window` positions, then max-pooled over the
            // candidates' neighbours in position order.
            const float* obs = col(obs_, stream(il, seq, h_first), p_.window);
            const int* qp = &obs_pos_[size_t(seq) * size_t(p_.window)];
            std::sort(order_.begin(), order_.begin() + n_cand, [&](int a, int b) { return pos[a] < pos[b]; });
            for (int i = 0; i < n_cand; i++) {
                const int j = order_[size_t(i)];
                float t = 0;
                for (int r = 0; r < p_.window; r++)
                    if (qp[r] >= 0 && qp[r] > newest - p_.window) t += obs[size_t(r) * size_t(cap_) + size_t(j)];
                pooled_[size_t(i)] = t;
            }
            const int half = p_.pool / 2;
            for (int i = 0; i < n_cand; i++) {
                float m = 0;
                for (int d = std::max(0, i - half); d <= std::min(n_cand - 1, i + half); d++) m = std::max(m, pooled_[size_t(d)]);
                score_[size_t(order_[size_t(i)])] = m;
            }
            break;
        }
        case KvPolicy::Full: break;
    }
    if (n_cand < k) fail("internal: {} eviction candidates for {} victims", n_cand, k);
    auto lower = [&](int a, int b) {
        const float sa = score_[size_t(a)], sb = score_[size_t(b)];
        return sa != sb ? sa < sb : pos[a] < pos[b];
    };
    std::nth_element(order_.begin(), order_.begin() + (k - 1), order_.begin() + n_cand, lower);
    victims->assign(order_.begin(), order_.begin() + k);
    std::sort(victims->begin(), victims->end());
}

void KvEvictor::compact(int il, int seq, int h, int n, const std::vector<int>& victims, std::vector<Move>* moves) {
    const int b = n - int(victims.size());
    const size_t s = stream(il, seq, h);
    // Holes below b (victims there), filled in order by the survivors at or above b.
    size_t vi = 0;
    int mover = b;
    auto is_victim = [&](int j) { return std::binary_search(victims.begin(), victims.end(), j); };
    for (; vi < victims.size() && victims[vi] < b; vi++) {
        while (is_victim(mover)) mover++;
        const int to = victims[vi], from = mover++;
        int* pos = &pos_[s * size_t(cap_)];
        pos[to] = pos[from];
        if (!acc_.empty()) col(acc_, s)[to] = col(acc_, s)[from];
        if (!cur_.empty()) col(cur_, s)[to] = col(cur_, s)[from];
        if (!obs_.empty()) {
            float* o = col(obs_, s, p_.window);
            for (int r = 0; r < p_.window; r++) o[size_t(r) * size_t(cap_) + size_t(to)] = o[size_t(r) * size_t(cap_) + size_t(from)];
        }
        moves->push_back({il, h, from, to});
    }
    int* pos = &pos_[s * size_t(cap_)];
    for (int j = b; j < n; j++) pos[j] = -1;
}

int KvEvictor::evict(int seq, int n, std::vector<Move>* moves) {
    if (!p_.bounded() || n <= p_.budget) return n;
    const int k = n - p_.budget;
    std::vector<int>& victims = victims_;
    const bool per_head = p_.kind == KvPolicy::H2O || p_.kind == KvPolicy::SnapKV;
    for (int il = 0; il < n_layer_; il++) {
        if (per_head) {
            for (int h = 0; h < n_kv_; h++) {
                choose(il, seq, h, h, n, k, &victims);
                compact(il, seq, h, n, victims, moves);
            }
        } else {
            choose(il, seq, 0, n_kv_ - 1, n, k, &victims);
            for (int h = 0; h < n_kv_; h++) compact(il, seq, h, n, victims, moves);
        }
    }
    return p_.budget;
}

}  // namespace kvscope
