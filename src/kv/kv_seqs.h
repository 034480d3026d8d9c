// Bookkeeping of which cache slots hold what, with no tensor memory: per sequence, the first
// slot that holds a real token (slots before it are left padding), the slots used so far, and
// the tokens evicted (kv_evict.h) from its slots. A token at slot s of sequence q attends to
// slots [pad(q), s]; the next token's position is used - pad + evicted.
#pragma once

#include <cstddef>
#include <vector>

namespace kvscope {

class KvSeqs {
public:
    KvSeqs(int n_seq, int n_slots)
        : pad_(std::size_t(n_seq), 0), used_(std::size_t(n_seq), 0), evicted_(std::size_t(n_seq), 0), n_slots_(n_slots) {}

    int n_seq() const { return int(used_.size()); }
    int n_slots() const { return n_slots_; }
    int pad(int seq) const { return pad_[std::size_t(seq)]; }
    int used(int seq) const { return used_[std::size_t(seq)]; }
    int next_slot(int seq) const { return used_[std::size_t(seq)]; }
    int next_pos(int seq) const { return used_[std::size_t(seq)] - pad_[std::size_t(seq)] + evicted_[std::size_t(seq)]; }
    int evicted(int seq) const { return evicted_[std::size_t(seq)]; }
    int free(int seq) const { return n_slots_ - used_[std::size_t(seq)]; }

    // Reserves `n` slots for `seq`; false (nothing changed) when they do not fit.
    bool append(int seq, int n);
    // Marks the first `n` slots of an empty sequence as padding (never attended to).
    bool set_padding(int seq, int n);
    // The sequence now holds `used` slots, the tokens of the others evicted (used <= used(seq)).
    bool shrink(int seq, int used);
    void clear(int seq);
    void clear_all();

private:
    std::vector<int> pad_, used_, evicted_;
    int n_slots_;
};

}  // namespace kvscope
