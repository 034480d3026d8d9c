#include "analysis/process.h"

#include <cstdio>
#include <cstring>

namespace kvscope {

static int64_t status_kb(const char* key) {
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t v = -1;
    const size_t n = std::strlen(key);
    while (std::fgets(line, sizeof line, f)) {
        if (std::strncmp(line, key, n) == 0) {
            long long kb = 0;
            if (std::sscanf(line + n, ": %lld", &kb) == 1) v = kb * 1024;
            break;
        }
    }
    std::fclose(f);
    return v;
}

int64_t peak_rss_bytes() { return status_kb("VmHWM"); }
int64_t current_rss_bytes() { return status_kb("VmRSS"); }

std::string build_commit() {
#ifdef KVSCOPE_GIT_COMMIT
    return KVSCOPE_GIT_COMMIT;
#else
    return "unknown";
#endif
}

}  // namespace kvscope
