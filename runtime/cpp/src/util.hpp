// Small helpers shared by the library's sources (internal).
#pragma once

#include <string>

namespace disseg {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace disseg
