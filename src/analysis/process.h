// What the operating system says about this process's memory.
#pragma once

#include <cstdint>
#include <string>

namespace kvscope {

int64_t peak_rss_bytes();     // VmHWM: the high-water mark of resident memory
int64_t current_rss_bytes();  // VmRSS
std::string build_commit();   // the git commit the binary was configured from

}  // namespace kvscope
