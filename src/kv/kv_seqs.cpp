#include "kv/kv_seqs.h"

namespace kvscope {

bool KvSeqs::append(int seq, int n) {
    if (seq < 0 || seq >= n_seq() || n < 0 || n > free(seq)) return false;
    used_[std::size_t(seq)] += n;
    return true;
}

bool KvSeqs::set_padding(int seq, int n) {
    if (seq < 0 || seq >= n_seq() || used_[std::size_t(seq)] != 0 || n < 0 || n > n_slots_) return false;
    pad_[std::size_t(seq)] = n;
    used_[std::size_t(seq)] = n;
    return true;
}

bool KvSeqs::shrink(int seq, int used) {
    if (seq < 0 || seq >= n_seq() || used < pad_[std::size_t(seq)] || used > used_[std::size_t(seq)]) return false;
    evicted_[std::size_t(seq)] += used_[std::size_t(seq)] - used;
    used_[std::size_t(seq)] = used;
    return true;
}

void KvSeqs::clear(int seq) {
    pad_[std::size_t(seq)] = 0;
    used_[std::size_t(seq)] = 0;
    evicted_[std::size_t(seq)] = 0;
}

void KvSeqs::clear_all() {
    for (int s = 0; s < n_seq(); s++) clear(s);
}

}  // namespace kvscope
