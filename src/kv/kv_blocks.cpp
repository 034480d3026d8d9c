#include "kv/kv_blocks.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace kvscope {

uint64_t kv_block_hash(uint64_t parent, const int32_t* tokens, int n) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint64_t x) {
        for (int i = 0; i < 8; i++) {
            h ^= (x >> (8 * i)) & 0xff;
            h *= 1099511628211ull;
        }
    };
    mix(parent);
    for (int i = 0; i < n; i++) mix(uint64_t(uint32_t(tokens[i])));
    return h;
}

KvBlockPool::KvBlockPool(int n_blocks, int block_tokens) : bt_(block_tokens) {
    if (n_blocks < 1) fail("--kv-blocks {}: the pool needs at least one block", n_blocks);
    if (block_tokens < 1 || block_tokens > 4096) fail("--kv-block {}: expected 1 to 4096 tokens per block", block_tokens);
    const size_t n = size_t(n_blocks);
    ref_.assign(n, 0);
    prev_.assign(n, -1);
    next_.assign(n, -1);
    hash_.assign(n, 0);
    parent_.assign(n, 0);
    hash_set_.assign(n, 0);
    tokens_.assign(n * size_t(block_tokens), 0);
    free_.reserve(n);
    free_at_.assign(n, -1);
    for (int b = n_blocks - 1; b >= 0; b--) {  // block 0 is handed out first
        free_at_[size_t(b)] = int(free_.size());
        free_.push_back(b);
    }
}

void KvBlockPool::take_free(int b) {
    const int i = free_at_[size_t(b)];
    const int last = free_.back();
    free_[size_t(i)] = last;
    free_at_[size_t(last)] = i;
    free_.pop_back();
    free_at_[size_t(b)] = -1;
}

void KvBlockPool::lru_remove(int b) {
    const size_t i = size_t(b);
    if (prev_[i] >= 0) next_[size_t(prev_[i])] = next_[i];
    else lru_head_ = next_[i];
    if (next_[i] >= 0) prev_[size_t(next_[i])] = prev_[i];
    else lru_tail_ = prev_[i];
    prev_[i] = next_[i] = -1;
    n_lru_--;
}

void KvBlockPool::lru_push(int b) {
    const size_t i = size_t(b);
    prev_[i] = lru_tail_;
    next_[i] = -1;
    if (lru_tail_ >= 0) next_[size_t(lru_tail_)] = b;
    else lru_head_ = b;
    lru_tail_ = b;
    n_lru_++;
}

void KvBlockPool::uncache(int b) {
    by_hash_.erase(hash_[size_t(b)]);
    hash_set_[size_t(b)] = 0;
}

int KvBlockPool::allocate_after(int prev, int want) {
    int b = -1;
    if (prev >= 0) {
        if (prev + 1 < n_blocks() && free_at_[size_t(prev) + 1] >= 0) b = prev + 1;
    } else {
        int best = 0;  // the longest run of free blocks [s, s + best)
        for (int s = 0, n = n_blocks(); s < n;) {
            if (free_at_[size_t(s)] < 0) {
                s++;
                continue;
            }
            int e = s;
            while (e < n && free_at_[size_t(e)] >= 0) e++;
            if (e - s > best) best = e - s, b = s == 0 ? 0 : s + std::max(0, (e - s - want) / 2);
            s = e;
        }
    }
    if (b < 0) return allocate();
    take_free(b);
    ref_[size_t(b)] = 1;
    return b;
}

int KvBlockPool::allocate() {
    int b;
    if (!free_.empty()) {
        b = free_.back();
        take_free(b);
    } else if (lru_head_ >= 0) {
        b = lru_head_;
        lru_remove(b);
        uncache(b);
        evictions_++;
    } else {
        return -1;
    }
    ref_[size_t(b)] = 1;
    return b;
}

void KvBlockPool::ref(int b) {
    if (ref_[size_t(b)] == 0) fail("internal: KV block {} referenced while free", b);
    ref_[size_t(b)]++;
}

void KvBlockPool::unref(int b) {
    int& r = ref_[size_t(b)];
    if (r <= 0) fail("internal: KV block {} released more often than referenced", b);
    if (--r > 0) return;
    if (hash_set_[size_t(b)]) {
        lru_push(b);
    } else {
        free_at_[size_t(b)] = int(free_.size());
        free_.push_back(b);
    }
}

int KvBlockPool::lookup(uint64_t hash, uint64_t parent, const int32_t* tokens) {
    const auto it = by_hash_.find(hash);
    if (it == by_hash_.end()) return -1;
    const int b = it->second;
    if (parent_[size_t(b)] != parent ||
        std::memcmp(&tokens_[size_t(b) * size_t(bt_)], tokens, size_t(bt_) * sizeof(int32_t)) != 0)
        return -1;  // a hash collision: not the same prefix
    if (ref_[size_t(b)] == 0) lru_remove(b);
    ref_[size_t(b)]++;
    return b;
}

bool KvBlockPool::publish(int b, uint64_t hash, uint64_t parent, const int32_t* tokens) {
    if (ref_[size_t(b)] == 0) fail("internal: publishing free KV block {}", b);
    if (hash_set_[size_t(b)] || by_hash_.count(hash)) return false;
    by_hash_.emplace(hash, b);
    hash_[size_t(b)] = hash;
    parent_[size_t(b)] = parent;
    hash_set_[size_t(b)] = 1;
    std::copy(tokens, tokens + bt_, &tokens_[size_t(b) * size_t(bt_)]);
    return true;
}

KvBlockTables::KvBlockTables(KvBlockPool* pool, int n_seq, int max_slots)
    : pool_(pool), max_slots_(max_slots), table_(size_t(n_seq)), hashes_(size_t(n_seq)), used_(size_t(n_seq), 0) {
    for (auto& t : table_) t.reserve(size_t((max_slots + pool->block_tokens() - 1) / pool->block_tokens()));
}

int KvBlockTables::share_prefix(int seq, const int32_t* tokens, int n) {
    auto& t = table_[size_t(seq)];
    auto& hs = hashes_[size_t(seq)];
    if (used_[size_t(seq)] != 0) fail("internal: sharing a prefix into a sequence that holds tokens");
    const int bt = pool_->block_tokens();
    uint64_t parent = 0;
    for (int i = 0; (i + 1) * bt <= n - 1; i++) {
        const int32_t* blk = tokens + int64_t(i) * bt;
        const uint64_t h = kv_block_hash(parent, blk, bt);
        const int b = pool_->lookup(h, parent, blk);
        if (b < 0) break;
        t.push_back(b);
        hs.push_back(h);
        parent = h;
    }
    used_[size_t(seq)] = int(t.size()) * bt;
    return used_[size_t(seq)];
}

int KvBlockTables::blocks_needed(int seq, int n) const {
    const int bt = pool_->block_tokens(), u = used_[size_t(seq)];
    const int have = int(table_[size_t(seq)].size());
    int need = (u + n + bt - 1) / bt - have;
    // A shared, partly filled last block that the new slots write into needs a private copy.
    if (n > 0 && u % bt != 0 && pool_->refcount(table_[size_t(seq)].back()) > 1) need++;
    return std::max(need, 0);
}

bool KvBlockTables::append(int seq, int n, Copy* copy) {
    copy->src = copy->dst = -1;
    if (n < 0 || used_[size_t(seq)] + n > max_slots_) return false;
    if (n == 0) return true;
    if (blocks_needed(seq, n) > pool_->n_available()) return false;
    auto& t = table_[size_t(seq)];
    const int bt = pool_->block_tokens(), u = used_[size_t(seq)];
    if (u % bt != 0 && pool_->refcount(t.back()) > 1) {
        const int b = pool_->allocate();
        copy->src = t.back();
        copy->dst = b;
        pool_->unref(t.back());
        t.back() = b;
    }
    const int want = (u + n + bt - 1) / bt - int(t.size());
    while (int(t.size()) * bt < u + n) t.push_back(pool_->allocate_after(t.empty() ? -1 : t.back(), want));
    used_[size_t(seq)] = u + n;
    return true;
}

void KvBlockTables::publish(int seq, const int32_t* tokens) {
    const auto& t = table_[size_t(seq)];
    auto& hs = hashes_[size_t(seq)];
    const int bt = pool_->block_tokens(), full = used_[size_t(seq)] / bt;
    for (int i = int(hs.size()); i < full; i++) {
        const uint64_t parent = i > 0 ? hs[size_t(i - 1)] : 0;
        const int32_t* blk = tokens + int64_t(i) * bt;
        const uint64_t h = kv_block_hash(parent, blk, bt);
        pool_->publish(t[size_t(i)], h, parent, blk);
        hs.push_back(h);
    }
}

void KvBlockTables::fork(int src, int dst) {
    if (used_[size_t(dst)] != 0) fail("internal: forking into a sequence that holds tokens");
    table_[size_t(dst)] = table_[size_t(src)];
    hashes_[size_t(dst)] = hashes_[size_t(src)];
    used_[size_t(dst)] = used_[size_t(src)];
    for (int b : table_[size_t(dst)]) pool_->ref(b);
}

void KvBlockTables::release(int seq) {
    // Last block first, so that an LRU eviction takes a prefix's tail before its head.
    auto& t = table_[size_t(seq)];
    for (auto it = t.rbegin(); it != t.rend(); ++it) pool_->unref(*it);
    t.clear();
    hashes_[size_t(seq)].clear();
    used_[size_t(seq)] = 0;
}

}  // namespace kvscope
