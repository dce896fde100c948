// Atomic writes, output checks and output names for the I/O layer (include/disseg/io.hpp): runtime/atomic.py and
// image.py's unique_names in C++.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "disseg/io.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace disseg {
namespace {

constexpr unsigned long long kLowSpace = 64 * 1024;  // bytes: below this a folder's disk counts as full

const mode_t kUmask = [] {  // read once at load: mkstemps makes 0600 files, outputs get 0666 & ~umask
  const mode_t mask = ::umask(022);
  ::umask(mask);
  return mask;
}();

const char* errno_name(int err) {
  switch (err) {
    case ENOSPC:
      return "ENOSPC";
    case EROFS:
      return "EROFS";
    case EACCES:
      return "EACCES";
    case EPERM:
      return "EPERM";
    case EDQUOT:
      return "EDQUOT";
    case EISDIR:
      return "EISDIR";
    case ENOTDIR:
      return "ENOTDIR";
    case ENOENT:
      return "ENOENT";
    case EIO:
      return "EIO";
    default:
      return nullptr;
  }
}

std::string hint(const std::string& reason) {
  return reason.find("ENOSPC") != std::string::npos || reason.find("EDQUOT") != std::string::npos
             ? "free space on that disk or write elsewhere"
             : "choose a writable location";
}

WriteFailed write_failed(const std::string& path, const std::string& reason) {
  return WriteFailed("cannot write " + path + ": " + reason + "; " + hint(reason) + " (nothing was replaced)");
}

void fsync_path(const std::string& path, bool folder) {
  const int fd = ::open(path.c_str(), O_RDONLY | (folder ? O_DIRECTORY : 0));
  if (fd < 0) {
    if (folder) return;  // best effort for the folder
    throw write_failed(path, os_reason(errno));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !folder) throw write_failed(path, os_reason(err));
}

std::string ascii_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return c < 128 ? std::tolower(c) : c; });
  return s;
}

fs::path nearest_existing(fs::path path) {
  std::error_code ec;
  while (!fs::exists(path, ec) && path != path.parent_path()) path = path.parent_path();
  return path;
}

}  // namespace

// "no space left on device (ENOSPC)", as Python's os_reason words it.
std::string os_reason(int err) {
  std::string text = std::strerror(err);
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  const char* name = errno_name(err);
  return name ? text + " (" + name + ")" : text;
}

std::string disk_reason(const std::string& folder) {
  struct statvfs st{};
  if (::statvfs(folder.c_str(), &st) != 0) return "";
  if (st.f_flag & ST_RDONLY) return os_reason(EROFS);
  if (st.f_blocks == 0) return "a virtual file system, not writable storage";  // /proc, /sys: no storage behind it
  if (static_cast<unsigned long long>(st.f_bavail) * st.f_frsize < kLowSpace) return os_reason(ENOSPC);
  return "";
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  const fs::path p(path);
  const fs::path folder = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw write_failed(folder.string(), os_reason(ec.value()));
  const std::string suffix = ".partial" + p.extension().string();
  std::string name = (folder / ("." + p.stem().string() + ".XXXXXX" + suffix)).string();
  std::vector<char> buf(name.begin(), name.end());
  buf.push_back('\0');
  const int fd = ::mkstemps(buf.data(), static_cast<int>(suffix.size()));
  if (fd < 0) throw write_failed(path, os_reason(errno));
  ::fchmod(fd, 0666 & ~kUmask);
  ::close(fd);
  tmp_ = buf.data();
}

AtomicFile::~AtomicFile() {
  if (!done_) abort();
}

void AtomicFile::commit() {
  try {
    fsync_path(tmp_, false);
  } catch (const WriteFailed&) {
    abort();
    throw;
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    abort();
    throw write_failed(path_, os_reason(err));
  }
  done_ = true;
  const fs::path p(path_);
  fsync_path(p.has_parent_path() ? p.parent_path().string() : ".", true);
}

void AtomicFile::abort() {
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
  done_ = true;
}

WriteFailed AtomicFile::fail(const std::string& detail) const {
  const fs::path p(path_);
  const std::string disk = disk_reason(p.has_parent_path() ? p.parent_path().string() : ".");
  return write_failed(path_, disk.empty() ? detail : disk);
}

void atomic_write(const std::string& path, const std::function<bool(const std::string& tmp)>& write) {
  AtomicFile file(path);
  errno = 0;
  bool ok = false;
  std::string detail = "the writer reported an error";
  try {
    ok = write(file.tmp());
  } catch (const std::exception& err) {
    detail = err.what();
  }
  if (!ok) {
    const int err = errno;
    const WriteFailed failure = file.fail(err ? os_reason(err) : detail);
    file.abort();
    throw failure;
  }
  file.commit();
}

static std::vector<fs::path>& made_folders() {
  static std::vector<fs::path> folders;
  return folders;
}

void undo_made_folders() {
  auto& folders = made_folders();
  std::sort(folders.begin(), folders.end(), [](const fs::path& a, const fs::path& b) {
    return std::distance(a.begin(), a.end()) > std::distance(b.begin(), b.end());  // children before parents
  });
  for (const fs::path& f : folders) {
    std::error_code ec;
    fs::remove(f, ec);  // removes only an empty folder; one with something written in it stays
  }
  folders.clear();
}

void check_output(const std::string& path_arg, const std::string& option, bool folder) {
  const fs::path path(path_arg);
  std::error_code ec;
  const std::string what = option + " " + path_arg + ": ";
  if (!folder && fs::is_directory(path, ec)) throw BadInput(what + "is a folder; expected a file name");
  if (folder && fs::exists(path, ec) && !fs::is_directory(path, ec))
    throw BadInput(what + "is a file; expected a folder");
  const fs::path absolute = fs::absolute(path, ec);
  const fs::path parent = folder ? absolute : absolute.parent_path();
  const fs::path existing = nearest_existing(parent);
  if (!fs::is_directory(existing, ec))
    throw BadInput(what + existing.string() + " is a file, not a folder; choose another path");
  std::string why = disk_reason(existing.string());
  if (why.empty() && ::access(existing.c_str(), W_OK | X_OK) != 0) why = os_reason(EACCES);
  if (!why.empty()) throw BadInput(what + "cannot write into " + existing.string() + " (" + why + "); " + hint(why));
  for (fs::path f = parent; f != existing && !f.empty() && f != f.parent_path(); f = f.parent_path())
    made_folders().push_back(f);       // deepest first: what undo_made_folders removes if the run is refused
  fs::create_directories(parent, ec);  // the folders it needs are made now: a check no path's looks can fool
  if (ec)
    throw BadInput(what + "cannot make the folder " + parent.string() + " (" + os_reason(ec.value()) +
                   "); choose a writable location");
}

std::vector<std::string> unique_names(const std::vector<std::string>& paths) {
  std::vector<std::string> stems, names;
  std::map<std::string, int> sharing;
  for (const auto& p : paths) {
    stems.push_back(fs::path(p).stem().string());
    ++sharing[ascii_lower(stems.back())];
  }
  std::set<std::string> taken;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    const std::string name = sharing[ascii_lower(stems[i])] > 1 ? fs::path(paths[i]).filename().string() : stems[i];
    std::string candidate = name;
    for (int n = 2; taken.count(ascii_lower(candidate)); ++n) candidate = name + "-" + std::to_string(n);
    taken.insert(ascii_lower(candidate));
    names.push_back(candidate);
  }
  return names;
}

}  // namespace disseg
