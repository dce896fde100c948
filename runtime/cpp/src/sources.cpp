// Sources of frames for the I/O layer (include/disseg/io.hpp): runtime/sources.py in C++.
#include <algorithm>
#include <array>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "disseg/io.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace disseg {
namespace {

// fs::is_regular_file / is_directory that say false where the system refuses the name (too long) instead of throwing.
bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}
bool is_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

// A text cut to `limit` characters for a message ("... (5000 characters)").
std::string shorten(const std::string& text, std::size_t limit = 200) {
  return text.size() <= limit ? text : text.substr(0, limit) + "... (" + std::to_string(text.size()) + " characters)";
}

// FFmpeg's own limits on opening a stream and on one read: a reader thread left inside OpenCV at a stop (the stop
// never waits for it) ends after this at most.
constexpr int kOpenTimeoutMs = 5000;
constexpr int kReadTimeoutMs = 5000;
constexpr int kStopBudgetMs = 200;  // how long a source's end waits for its thread

// Whether the server of an http(s)/rtsp(s) URL answers within `timeout_s` (any bytes back to a HEAD or OPTIONS; TLS: a
// connection), looking at `halt` all the while. Asked before OpenCV opens the URL: OpenCV opens FFmpeg streams one at
// a time under a process-wide lock, so a camera that accepts and never answers would hold every other stream's
// (re)connect for FFmpeg's whole open timeout (runtime/sources.py answers()).
bool answers(const std::string& url, double timeout_s, const std::atomic<bool>& halt) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return false;
  const std::string scheme = url.substr(0, scheme_end);
  const auto start = scheme_end + 3, slash = url.find_first_of("/?#", start);
  std::string authority = url.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
  authority = authority.substr(authority.rfind('@') == std::string::npos ? 0 : authority.rfind('@') + 1);
  std::string host = authority, port = scheme == "https"   ? "443"
                                       : scheme == "rtsp"  ? "554"
                                       : scheme == "rtsps" ? "322"
                                                           : "80";
  if (!authority.empty() && authority[0] == '[') {
    const auto close = authority.find(']');
    host = authority.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    if (close != std::string::npos && close + 1 < authority.size() && authority[close + 1] == ':')
      port = authority.substr(close + 2);
  } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  addrinfo hints{}, *found = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found) return false;
  const int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, found->ai_protocol);
  const bool connecting = fd >= 0 && (connect(fd, found->ai_addr, found->ai_addrlen) == 0 || errno == EINPROGRESS);
  freeaddrinfo(found);
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  auto ready = [&](short events) {  // polls in 100 ms steps until `events`, the deadline or `halt`
    while (!halt && Clock::now() < deadline) {
      pollfd p{fd, events, 0};
      const int n = poll(&p, 1, 100);
      if (n > 0) return (p.revents & events) != 0 && !(p.revents & (POLLERR | POLLNVAL));
      if (n < 0 && errno != EINTR) return false;
    }
    return false;
  };
  bool ok = connecting && ready(POLLOUT);
  if (ok) {
    int error = 0;
    socklen_t size = sizeof error;
    ok = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0;
  }
  if (ok && scheme != "https" && scheme != "rtsps") {
    const std::string path = slash == std::string::npos ? "/" : url.substr(slash);
    const std::string request = scheme == "rtsp" ? "OPTIONS " + url + " RTSP/1.0\r\nCSeq: 1\r\n\r\n"
                                                 : "HEAD " + path + " HTTP/1.0\r\nHost: " + host + "\r\n\r\n";
    char byte = 0;
    ok = send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()) &&
         ready(POLLIN) && recv(fd, &byte, 1, 0) == 1;
  }
  if (fd >= 0) ::close(fd);
  return ok;
}

// Source elements whose pipelines are live: they reconnect when they end. Any other pipeline, unless an element says
// is-live=true or reads a uri= that is not file://, is a file: every frame, and its end is the stream's end
// (runtime/sources.py LIVE_ELEMENTS; tests/test_twins.py holds the two lists equal).
constexpr std::array<const char*, 23> kLiveElements{
    "v4l2src",      "nvarguscamerasrc", "nvv4l2camerasrc", "libcamerasrc", "rtspsrc",      "udpsrc",
    "tcpclientsrc", "tcpserversrc",     "souphttpsrc",     "srtsrc",       "srtclientsrc", "rtmpsrc",
    "rtmp2src",     "ximagesrc",        "pipewiresrc",     "aravissrc",    "pylonsrc",     "uvch264src",
    "ksvideosrc",   "mfvideosrc",       "avfvideosrc",     "webrtcsrc",    "whepsrc"};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool gst_is_live(const std::string& pipeline, const cv::VideoCapture* cap) {
  if (cap && cap->get(cv::CAP_PROP_FRAME_COUNT) > 0) return false;  // a known duration: a file
  std::size_t start = 0;
  while (start <= pipeline.size()) {
    const auto bang = pipeline.find('!', start);
    std::istringstream element(pipeline.substr(start, bang == std::string::npos ? std::string::npos : bang - start));
    std::string word;
    bool first = true;
    while (element >> word) {
      if (first && std::find(std::begin(kLiveElements), std::end(kLiveElements), word) != std::end(kLiveElements))
        return true;
      first = false;
      const auto eq = word.find('=');
      if (eq == std::string::npos) continue;
      const std::string key = lower(word.substr(0, eq));
      std::string value = lower(word.substr(eq + 1));
      value.erase(std::remove(value.begin(), value.end(), '"'), value.end());
      if (key == "is-live" && (value == "true" || value == "1" || value == "yes")) return true;
      if (key == "uri" && value.rfind("file:", 0) != 0) return true;
    }
    if (bang == std::string::npos) break;
    start = bang + 1;
  }
  return false;
}

bool is_image_name(const std::string& path) {
  static const std::vector<std::string> suffixes{".jpg",  ".jpeg", ".png", ".bmp", ".tif",
                                                 ".tiff", ".webp", ".ppm", ".pgm"};
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return std::find(suffixes.begin(), suffixes.end(), ext) != suffixes.end();
}

// Image files from a folder or glob, sorted; unreadable ones skipped with a warning and counted.
class ImageSource final : public Source {
 public:
  explicit ImageSource(const std::string& spec) {
    const bool glob = spec.find_first_of("*?[") != std::string::npos;
    const bool single = is_file(spec) && is_image_name(spec);
    if (!glob && !single && !is_dir(spec))
      throw SourceError(shorten(spec) + ": no such image folder; pass a folder or a glob such as 'photos/*.jpg'");
    std::vector<cv::String> found;
    if (single) {
      found.push_back(spec);
    } else if (glob) {
      try {
        cv::glob(spec, found, false);
      } catch (const cv::Exception&) {  // its folder does not exist: no images, said below
      }
    } else {
      std::error_code ec;
      for (fs::directory_iterator it(spec, ec), end; !ec && it != end; it.increment(ec))
        found.push_back(it->path().string());
    }
    for (const auto& p : found)
      if (is_file(p) && (glob || is_image_name(p))) paths_.push_back(p);
    std::sort(paths_.begin(), paths_.end());
    if (paths_.empty())
      throw SourceError(shorten(spec) + ": no images found (looked for .jpg, .png, .bmp, .tif, .webp)");
    names_ = unique_names(paths_);
  }
  bool next(Frame& frame) override {
    while (pos_ < paths_.size()) {
      const std::string& name = names_[pos_];
      const std::string& path = paths_[pos_++];
      cv::Mat image = cv::imread(path, cv::IMREAD_UNCHANGED);
      if (image.empty() && !is_file(path)) {  // removed while running (a folder deleted): said once, at the end
        ++skipped;
        ++gone_;
        continue;
      }
      try {
        if (image.empty()) throw BadInput(path + ": not a decodable image (corrupt or unsupported format)");
        frame = {index_++, to_bgr8(image, path), name, Clock::now()};
        return true;
      } catch (const BadInput& err) {
        ++skipped;
        std::cerr << "skipped " << err.what() << "\n";
      }
    }
    if (gone_ > 0) {  // once
      std::cerr << "warning: " << gone_ << " of " << paths_.size() << " images were removed while running ("
                << fs::path(paths_.front()).parent_path().string() << ")\n";
      gone_ = 0;
    }
    return false;
  }

 private:
  std::vector<std::string> paths_, names_;
  std::size_t pos_ = 0;
  int index_ = 0;
  std::size_t gone_ = 0;  // files removed while running
};

// A video file, every frame in order. One that ends before the frame count its header declares is reported in one
// warning line and in `truncated`.
class VideoSource final : public Source {
 public:
  explicit VideoSource(const std::string& path) : path_(path) {
    if (!is_file(path)) throw SourceError(shorten(path) + ": no such video file");
    cap_.open(path);
    start(path + ": cannot read any frame (empty, corrupt or an unsupported codec)");
  }
  // A GStreamer pipeline that is a file, not a camera (filesrc ! qtdemux ! h264parse ! nvv4l2decoder ! ..., or
  // videotestsrc num-buffers=N): every frame in order, and its end of stream ends the stream.
  explicit VideoSource(cv::VideoCapture&& opened) : path_("GStreamer pipeline") {
    cap_ = std::move(opened);
    start("GStreamer pipeline: it ended before its first frame");
  }
  void start(const std::string& failure) {
    if (!cap_.isOpened() || !cap_.read(first_)) throw SourceError(failure);
    fps_ = cap_.get(cv::CAP_PROP_FPS) > 0 ? cap_.get(cv::CAP_PROP_FPS) : kDefaultFps;
    declared_ = std::max(0, static_cast<int>(cap_.get(cv::CAP_PROP_FRAME_COUNT)));  // 0: the container does not say
  }
  bool next(Frame& frame) override {
    cv::Mat image;
    if (!first_.empty()) {
      image = first_;
      first_.release();
    } else if (ended_ || !cap_.read(image)) {
      if (!ended_ && index_ < declared_) {
        truncated = Truncation{index_, declared_};
        std::cerr << path_ << " ended early: " << index_ << " of the " << declared_
                  << " frames its header declares were readable (cut short or damaged)\n";
      }
      ended_ = true;
      return false;
    }
    frame = {index_, image, frame_name(index_), Clock::now()};
    ++index_;
    return true;
  }
  double fps() const override { return fps_; }

 private:
  std::string path_;
  cv::VideoCapture cap_;
  cv::Mat first_;
  double fps_ = kDefaultFps;
  int index_ = 0, declared_ = 0;
  bool ended_ = false;
};

// What a live source's reader thread shares with the source: held by both, so a thread left inside OpenCV at a stop
// (a server that never answers) outlives the source safely and ends alone after FFmpeg's timeouts.
struct LiveState {
  std::string target;
  int camera = 0, api = cv::CAP_ANY, max_reconnects = kDefaultMaxReconnects;
  std::string description, probe;  // probe: a network URL asked first whether anything answers there
  bool retry_first_open = false;
  std::mutex mutex;
  std::condition_variable cond;
  std::optional<Frame> latest;
  bool opened = false, open_failed = false, ended = false;
  std::atomic<bool> halt{false};
  std::atomic<int> reconnects{0}, skipped{0};
  double fps = kDefaultFps;

  bool wait(double seconds) {  // true once halted
    std::unique_lock<std::mutex> lock(mutex);
    return cond.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return halt.load(); });
  }
};

std::atomic<int> g_left_running{0};

bool open_capture(LiveState& s, cv::VideoCapture& cap) {
  cap.release();
  if (!s.probe.empty() && !answers(s.probe, kOpenTimeoutMs / 1000.0, s.halt)) return false;
  bool ok = false;
  if (!s.target.empty() && s.api == cv::CAP_FFMPEG)
    ok = cap.open(s.target, s.api,
                  {cv::CAP_PROP_OPEN_TIMEOUT_MSEC, kOpenTimeoutMs, cv::CAP_PROP_READ_TIMEOUT_MSEC, kReadTimeoutMs});
  else
    ok = s.target.empty() ? cap.open(s.camera, s.api) : cap.open(s.target, s.api);
  cv::Mat probe;
  if (!ok || !cap.isOpened() || s.halt || !cap.read(probe)) {
    cap.release();
    return false;
  }
  const double fps = cap.get(cv::CAP_PROP_FPS);
  std::lock_guard<std::mutex> lock(s.mutex);
  s.fps = fps > 0 ? fps : kDefaultFps;
  return true;
}

void publish(LiveState& s, Frame frame) {
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.latest) ++s.skipped;  // replaced before anyone took it
  s.latest = std::move(frame);
  s.cond.notify_all();
}

// Read until halted or given up, reconnecting with backoff; a source that could not be opened at start (with
// retry_first_open) is retried the same way.
void read_live(LiveState& s, cv::VideoCapture& cap, bool open) {
  int index = 0, failures = open ? 0 : 1;
  double backoff = 0.5;
  if (!open) std::cerr << s.description << ": cannot open it yet; retrying in the background\n";
  while (!s.halt) {
    cv::Mat image;
    if (open && cap.read(image)) {
      failures = 0;
      backoff = 0.5;
      publish(s, Frame{index, image, frame_name(index), Clock::now()});
      ++index;
      continue;
    }
    if (open) ++failures;
    if (failures > s.max_reconnects) {
      std::cerr << s.description << ": gave up after " << s.max_reconnects << " failed reconnects\n";
      break;
    }
    std::cerr << s.description << " dropped; reconnecting in " << backoff << " s (reconnect " << s.reconnects + 1
              << ")\n";
    if (s.wait(backoff)) break;
    backoff = std::min(backoff * 2, 8.0);
    open = open_capture(s, cap);
    ++s.reconnects;
    if (!open) ++failures;
  }
}

void run_live(std::shared_ptr<LiveState> s) {
  cv::VideoCapture cap;
  const bool open = open_capture(*s, cap);
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    s->opened = true;
    s->open_failed = !open && !s->retry_first_open;
    s->cond.notify_all();
  }
  if (open || s->retry_first_open) read_live(*s, cap, open);
  cap.release();
  std::lock_guard<std::mutex> lock(s->mutex);
  s->ended = true;
  s->cond.notify_all();
}

// A camera or stream, opened and read in a thread of its own that keeps only the newest frame (a frame replaced
// before anyone took it is counted in `skipped`); a dropped stream is reconnected with exponential backoff and
// counted, and given up after max_reconnects failures in a row. Nothing here blocks a stop: every wait of the thread
// is on `halt`, and the destructor leaves a thread still inside OpenCV to end alone (left_running_readers()).
class LiveSource final : public Source {
 public:
  LiveSource(std::string target, int camera, int api, std::string description, const SourceSpec& spec,
             const std::atomic<bool>* stop, std::string probe = "")
      : state_(std::make_shared<LiveState>()), external_stop_(stop) {
    state_->target = std::move(target);
    state_->camera = camera;
    state_->api = api;
    state_->description = std::move(description);
    state_->max_reconnects = spec.max_reconnects;
    state_->retry_first_open = spec.retry_first_open;
    state_->probe = std::move(probe);
    thread_ = std::thread(run_live, state_);
    if (spec.retry_first_open) return;
    try {
      wait_open();
    } catch (...) {  // the thread has ended (it could not open): joined before the one line goes on
      interrupt();
      thread_.join();
      throw;
    }
  }
  ~LiveSource() override {
    state_->halt = true;
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->cond.notify_all();
    const bool ended =
        state_->cond.wait_for(lock, std::chrono::milliseconds(kStopBudgetMs), [&] { return state_->ended; });
    lock.unlock();
    if (ended) {
      thread_.join();
    } else {  // inside OpenCV: it holds its own state and ends after FFmpeg's timeouts
      thread_.detach();
      ++g_left_running;
    }
  }
  bool next(Frame& frame) override {
    std::unique_lock<std::mutex> lock(state_->mutex);
    while (!state_->latest && !state_->ended && !state_->halt) {
      if (external_stop_ && *external_stop_) state_->halt = true;
      state_->cond.wait_for(lock, std::chrono::milliseconds(100));
    }
    skipped = state_->skipped;
    reconnects = state_->reconnects;
    if (!state_->latest) return false;
    frame = std::move(*state_->latest);
    state_->latest.reset();
    return true;
  }
  double fps() const override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->fps;
  }
  bool live() const override { return true; }
  void interrupt() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->halt = true;
    state_->cond.notify_all();
  }

 private:
  // The first open's outcome, looking at the stop: BadInput (one line) when it cannot be opened.
  void wait_open() {
    std::unique_lock<std::mutex> lock(state_->mutex);
    while (!state_->opened) {
      if (external_stop_ && *external_stop_) return;
      state_->cond.wait_for(lock, std::chrono::milliseconds(50));
    }
    if (state_->open_failed)
      throw SourceError(state_->description +
                        ": cannot open it (no such device or unreachable); check the index or URL "
                        "(list cameras with: v4l2-ctl --list-devices)");
  }

  std::shared_ptr<LiveState> state_;
  const std::atomic<bool>* external_stop_;
  std::thread thread_;
};

void require_gstreamer(const std::string& what) {
  if (!gstreamer_available())
    throw SourceError(what +
                      " needs OpenCV built with GStreamer, and this one is not; on a Jetson link JetPack's OpenCV, "
                      "elsewhere build OpenCV with -DWITH_GSTREAMER=ON");
}

// Whether this machine's GStreamer has an element (gst-inspect-1.0 --exists, gstreamer1.0-tools); false without the
// tool.
bool gstreamer_element(const std::string& name) {
  const std::string command = "gst-inspect-1.0 --exists " + name + " > /dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

std::unique_ptr<Source> open_stream(const std::string& url, const SourceSpec& spec, const std::atomic<bool>* stop) {
  if (url.rfind("rtsp://", 0) && url.rfind("rtsps://", 0) && url.rfind("http://", 0) && url.rfind("https://", 0))
    throw BadInput("--rtsp '" + redact(url) + "': expected a URL such as rtsp://host:554/stream");
  const std::string description = "stream " + shorten(redact(url));
  // Only where GStreamer can build the pipeline: OpenCV 4.6 waits forever on one that lacks its source element.
  const bool hardware = gstreamer_element("nvv4l2decoder");
  if (url.rfind("http", 0) != 0 && gstreamer_available() && gstreamer_element("rtspsrc") &&
      (hardware || gstreamer_element("decodebin")))
    return std::make_unique<LiveSource>(rtsp_pipeline(url, hardware), 0, cv::CAP_GSTREAMER,
                                        description + " (GStreamer)", spec, stop, url);
  return std::make_unique<LiveSource>(url, 0, cv::CAP_FFMPEG, description, spec, stop, url);
}

// A GStreamer pipeline as a file (every frame, its end the stream's end) or a live source (reconnects), as
// the spec's kind says or, for "auto", as the pipeline's text and what OpenCV reports of it say.
std::unique_ptr<Source> open_pipeline(const GstPipeline& gst, const SourceSpec& spec, const std::atomic<bool>* stop) {
  const std::string& pipeline = gst.pipeline;
  if (gst.kind == "live" || (gst.kind == "auto" && gst_is_live(pipeline, nullptr)))
    return std::make_unique<LiveSource>(pipeline, 0, cv::CAP_GSTREAMER, "GStreamer pipeline", spec, stop);
  cv::VideoCapture cap(pipeline, cv::CAP_GSTREAMER);
  if (!cap.isOpened())
    throw SourceError("GStreamer pipeline: cannot open it; try it with gst-launch-1.0 (the sink must be appsink)");
  if (gst.kind == "auto")
    std::cerr << "GStreamer pipeline: a file (no live source element; its end of stream ends it; gst+live: if not)\n";
  return std::make_unique<VideoSource>(std::move(cap));
}

}  // namespace

int left_running_readers() { return g_left_running; }

bool gstreamer_available() {
  const std::string info = cv::getBuildInformation();
  auto at = info.find("GStreamer:");
  return at != std::string::npos && info.substr(at, info.find('\n', at) - at).find("YES") != std::string::npos;
}

// RTSP through GStreamer: Jetson's hardware H.264 decoder where it exists, decodebin elsewhere (as dis-run).
std::string rtsp_pipeline(const std::string& url, bool hardware_decoder) {
  return "rtspsrc location=\"" + url + "\" latency=200 ! " +
         (hardware_decoder ? "rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! "
                           : "decodebin ! ") +
         "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false";
}

std::string csi_pipeline(int sensor, int width, int height, int fps) {
  return "nvarguscamerasrc sensor-id=" + std::to_string(sensor) +
         " ! video/x-raw(memory:NVMM),width=" + std::to_string(width) + ",height=" + std::to_string(height) +
         ",framerate=" + std::to_string(fps) +
         "/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true "
         "max-buffers=1";
}

std::unique_ptr<Source> open_source(const SourceSpec& a, const std::atomic<bool>* stop) {
  if (const auto* images = a.get<ImageFiles>()) return std::make_unique<ImageSource>(images->pattern);
  if (const auto* video = a.get<VideoFile>()) return std::make_unique<VideoSource>(video->path);
  if (const auto* camera = a.get<Camera>())
    return std::make_unique<LiveSource>("", camera->index, cv::CAP_ANY, "camera " + std::to_string(camera->index), a,
                                        stop);
  if (const auto* stream = a.get<StreamUrl>()) return open_stream(stream->url, a, stop);
  if (const auto* gst = a.get<GstPipeline>()) {
    require_gstreamer("--gst");
    return open_pipeline(*gst, a, stop);
  }
  const int sensor = std::get<CsiCamera>(a.source).sensor;
  require_gstreamer("--csi");
  return std::make_unique<LiveSource>(csi_pipeline(sensor), 0, cv::CAP_GSTREAMER,
                                      "CSI camera " + std::to_string(sensor), a, stop);
}

namespace {
const char* const kUriForms =
    "a camera (0, v4l2:///dev/video0), csi://0, rtsp://HOST/PATH, http(s)://HOST/PATH, a video file, an image "
    "folder, glob or file, or gst:PIPELINE (gst+live:/gst+file: to say whether it is a camera or a file)";

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

SourceSpec parse_source_uri(const std::string& uri) {
  const auto first = uri.find_first_not_of(" \t"), last = uri.find_last_not_of(" \t");
  const std::string text = first == std::string::npos ? "" : uri.substr(first, last - first + 1);
  const BadInput bad("--source '" + shorten(redact(text)) +
                     "': not a source this runtime knows; accepted: " + kUriForms);
  if (all_digits(text) && text.size() < 6) return SourceSpec{Camera{std::stoi(text)}};
  if (starts_with(text, "v4l2://")) {
    const std::string device = text.substr(7);
    if (!starts_with(device, "/dev/video") || !all_digits(device.substr(10)) || device.size() > 15) throw bad;
    return SourceSpec{Camera{std::stoi(device.substr(10))}};
  }
  if (starts_with(text, "csi://")) {
    if (!all_digits(text.substr(6)) || text.size() > 11) throw bad;
    return SourceSpec{CsiCamera{std::stoi(text.substr(6))}};
  }
  if (starts_with(text, "rtsp://") || starts_with(text, "rtsps://") || starts_with(text, "http://") ||
      starts_with(text, "https://"))
    return SourceSpec{StreamUrl{text}};
  if (starts_with(text, "gst:") || starts_with(text, "gst+live:") || starts_with(text, "gst+file:")) {
    const auto colon = text.find(':');
    const auto body = text.find_first_not_of(' ', colon + 1);
    if (body == std::string::npos) throw bad;
    return SourceSpec{GstPipeline{text.substr(body), colon == 3 ? "auto" : text.substr(4, colon - 4)}};
  }
  const std::string path = starts_with(text, "file://") ? text.substr(7) : text;
  if (path.empty() || path.find("://") != std::string::npos) throw bad;
  if (path.find_first_of("*?[") != std::string::npos || is_dir(path) || is_image_name(path))
    return SourceSpec{ImageFiles{path}};
  if (is_file(path)) return SourceSpec{VideoFile{path}};
  throw SourceError("--source '" + shorten(redact(text)) + "': no such file, folder or device; accepted: " + kUriForms);
}

std::vector<std::string> read_streams(const std::string& path) {
  std::istringstream in(read_text(path, "--streams", "a text file, one source URI a line"));
  std::vector<std::string> uris;
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find_first_not_of(" \t\r"), last = line.find_last_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    uris.push_back(line.substr(first, last - first + 1));
  }
  if (uris.empty())
    throw BadInput("--streams " + path + ": no sources in it; write one URI a line (" + kUriForms + ")");
  return uris;
}

std::string describe(const SourceSpec& spec) {
  if (const auto* c = spec.get<Camera>()) return "camera " + std::to_string(c->index);
  if (const auto* v = spec.get<VideoFile>()) return "video " + shorten(redact(v->path));
  if (const auto* i = spec.get<ImageFiles>()) return "images " + shorten(redact(i->pattern));
  if (const auto* r = spec.get<StreamUrl>()) return "rtsp " + shorten(redact(r->url));
  if (const auto* g = spec.get<GstPipeline>()) return "gst " + shorten(redact(g->pipeline));
  return "csi " + std::to_string(std::get<CsiCamera>(spec.source).sensor);
}

}  // namespace disseg
