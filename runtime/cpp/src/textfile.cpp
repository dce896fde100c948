// Bounded reads of the text files the library is given: runtime/textfile.py in C++ (src/util.hpp says the rule).
#include <cerrno>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disseg/io.hpp"
#include "util.hpp"

namespace disseg {

std::string read_text(const std::string& path, const std::string& what, const std::string& expected,
                      std::size_t limit) {
  const auto bad = [&](const std::string& why) {
    return BadInput(what + " " + path + ": " + why + "; give " + expected);
  };
  // O_NONBLOCK: opening a FIFO with no writer must not wait; fstat then says what was opened.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw bad("cannot read it (" + os_reason(errno) + ")");
  struct stat st{};
  std::string text;
  std::string why;
  if (::fstat(fd, &st) != 0) {
    why = "cannot read it (" + os_reason(errno) + ")";
  } else if (!S_ISREG(st.st_mode)) {
    why = S_ISDIR(st.st_mode)    ? "a folder, not a regular file"
          : S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file"
                                 : "a device or socket, not a regular file";
  } else if (static_cast<std::size_t>(st.st_size) > limit) {
    why = std::to_string(st.st_size) + " bytes, more than the " + std::to_string(limit) + " such a file may have";
  } else {
    char buf[65536];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) != 0 && text.size() <= limit;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        why = "cannot read it (" + os_reason(errno) + ")";
        break;
      }
      text.append(buf, static_cast<std::size_t>(n));
    }
    if (why.empty() && text.size() > limit)
      why = "more than the " + std::to_string(limit) + " bytes such a file may have";
    if (why.empty() && text.find('\0') != std::string::npos) why = "it holds NUL bytes, not text";
  }
  ::close(fd);
  if (!why.empty()) throw bad(why);
  return text;
}

}  // namespace disseg
