// Small helpers shared by the library's sources (internal).
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace disseg {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Frame 7 -> "000007": the mask file name of a frame that has no file name of its own (as the Python runtime).
inline std::string frame_name(int index) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06d", index);
  return buf;
}

// "no space left on device (ENOSPC)" for an errno value, as Python's os_reason (src/atomic.cpp).
std::string os_reason(int err);

// The one way the library reads a text file it is given (--streams, a sidecar): runtime/textfile.py in C++. A regular
// file only (a FIFO or device is refused before anything blocks on it), at most `limit` bytes, no NUL bytes; else
// BadInput "`what` PATH: <why>; give <expected>".
constexpr std::size_t kMaxTextBytes = 1024 * 1024;
std::string read_text(const std::string& path, const std::string& what, const std::string& expected,
                      std::size_t limit = kMaxTextBytes);

}  // namespace disseg
