// Small helpers shared by the library's sources (internal).
#pragma once

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

}  // namespace disseg
