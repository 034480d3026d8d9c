// One exception type for every user-facing failure. Its message is a single line that names
// the file or flag at fault and what was expected; the command line prints it and exits 1.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace kvscope {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
    throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kvscope
