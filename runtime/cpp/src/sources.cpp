// Sources of frames for the I/O layer (include/disseg/io.hpp): runtime/sources.py in C++.
#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "disseg/io.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace disseg {
namespace {

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
    const bool single = fs::is_regular_file(spec) && is_image_name(spec);
    if (!glob && !single && !fs::is_directory(spec))
      throw BadInput(spec + ": no such image folder; pass a folder or a glob such as 'photos/*.jpg'");
    std::vector<cv::String> found;
    if (single) {
      found.push_back(spec);
    } else if (glob) {
      cv::glob(spec, found, false);
    } else {
      for (const auto& entry : fs::directory_iterator(spec)) found.push_back(entry.path().string());
    }
    for (const auto& p : found)
      if (fs::is_regular_file(p) && (glob || is_image_name(p))) paths_.push_back(p);
    std::sort(paths_.begin(), paths_.end());
    if (paths_.empty()) throw BadInput(spec + ": no images found (looked for .jpg, .png, .bmp, .tif, .webp)");
    names_ = unique_names(paths_);
  }
  bool next(Frame& frame) override {
    while (pos_ < paths_.size()) {
      const std::string& name = names_[pos_];
      const std::string& path = paths_[pos_++];
      cv::Mat image = cv::imread(path, cv::IMREAD_UNCHANGED);
      try {
        if (image.empty()) throw BadInput(path + ": not a decodable image (corrupt or unsupported format)");
        frame = {index_++, to_bgr8(image, path), name, Clock::now()};
        return true;
      } catch (const BadInput& err) {
        ++skipped;
        std::cerr << "skipped " << err.what() << "\n";
      }
    }
    return false;
  }

 private:
  std::vector<std::string> paths_, names_;
  std::size_t pos_ = 0;
  int index_ = 0;
};

// A video file, every frame in order. One that ends before the frame count its header declares is reported in one
// warning line and in `truncated`.
class VideoSource final : public Source {
 public:
  explicit VideoSource(const std::string& path) : path_(path) {
    if (!fs::is_regular_file(path)) throw BadInput(path + ": no such video file");
    cap_.open(path);
    if (!cap_.isOpened() || !cap_.read(first_))
      throw BadInput(path + ": cannot read any frame (empty, corrupt or an unsupported codec)");
    fps_ = cap_.get(cv::CAP_PROP_FPS) > 0 ? cap_.get(cv::CAP_PROP_FPS) : 30.0;
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
  double fps_ = 30.0;
  int index_ = 0, declared_ = 0;
  bool ended_ = false;
};

// A camera or stream read in a thread that keeps only the newest frame (no growing lag); a dropped stream
// is reconnected with exponential backoff and counted, and given up after max_reconnects failures in a row.
class LiveSource final : public Source {
 public:
  LiveSource(std::string target, int camera, int api, std::string description, int max_reconnects,
             const std::atomic<bool>* stop)
      : target_(std::move(target)),
        camera_(camera),
        api_(api),
        description_(std::move(description)),
        max_reconnects_(max_reconnects),
        external_stop_(stop) {
    if (!open())
      throw BadInput(description_ +
                     ": cannot open it (no such device or unreachable); check the index or URL "
                     "(list cameras with: v4l2-ctl --list-devices)");
    fps_ = cap_.get(cv::CAP_PROP_FPS) > 0 ? cap_.get(cv::CAP_PROP_FPS) : 30.0;
    thread_ = std::thread([this] { read_loop(); });
  }
  ~LiveSource() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool next(Frame& frame) override {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!latest_ && !ended_) {
      if (external_stop_ && *external_stop_) return false;
      cond_.wait_for(lock, std::chrono::milliseconds(200));
    }
    if (!latest_) return false;
    frame = std::move(*latest_);
    latest_.reset();
    return true;
  }
  double fps() const override { return fps_; }
  bool live() const override { return true; }

 private:
  bool open() {
    cap_.release();
    bool ok = target_.empty() ? cap_.open(camera_, api_) : cap_.open(target_, api_);
    cv::Mat probe;
    return ok && cap_.isOpened() && cap_.read(probe);
  }
  void read_loop() {
    int index = 0, failures = 0;
    double backoff = 0.5;
    while (!stop_) {
      cv::Mat image;
      if (cap_.isOpened() && cap_.read(image)) {
        failures = 0;
        backoff = 0.5;
        std::lock_guard<std::mutex> lock(mutex_);
        latest_ = Frame{index, image, frame_name(index), Clock::now()};
        ++index;
        cond_.notify_one();
        continue;
      }
      if (++failures > max_reconnects_) {
        std::cerr << description_ << ": gave up after " << max_reconnects_ << " failed reconnects\n";
        break;
      }
      std::cerr << description_ << " dropped; reconnecting in " << backoff << " s (reconnect " << reconnects + 1
                << ")\n";
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 8.0);
      open();
      ++reconnects;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ended_ = true;
    cond_.notify_one();
  }

  std::string target_;
  int camera_;
  int api_;
  std::string description_;
  int max_reconnects_;
  cv::VideoCapture cap_;
  double fps_ = 30.0;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cond_;
  std::optional<Frame> latest_;
  std::atomic<bool> stop_{false};
  const std::atomic<bool>* external_stop_;
  bool ended_ = false;
};

void require_gstreamer(const std::string& what) {
  if (!gstreamer_available())
    throw BadInput(what +
                   " needs OpenCV built with GStreamer, and this one is not; on a Jetson link JetPack's OpenCV, "
                   "elsewhere build OpenCV with -DWITH_GSTREAMER=ON");
}

// Whether this machine's GStreamer has an element (gst-inspect-1.0 --exists, gstreamer1.0-tools); false without the
// tool.
bool gstreamer_element(const std::string& name) {
  const std::string command = "gst-inspect-1.0 --exists " + name + " > /dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

std::unique_ptr<Source> open_stream(const std::string& url, int max_reconnects, const std::atomic<bool>* stop) {
  if (url.rfind("rtsp://", 0) && url.rfind("rtsps://", 0) && url.rfind("http://", 0) && url.rfind("https://", 0))
    throw BadInput("--rtsp '" + redact(url) + "': expected a URL such as rtsp://host:554/stream");
  const std::string description = "stream " + redact(url);
  // Only where GStreamer can build the pipeline: OpenCV 4.6 waits forever on one that lacks its source element.
  const bool hardware = gstreamer_element("nvv4l2decoder");
  if (url.rfind("http", 0) != 0 && gstreamer_available() && gstreamer_element("rtspsrc") &&
      (hardware || gstreamer_element("decodebin")))
    return std::make_unique<LiveSource>(rtsp_pipeline(url, hardware), 0, cv::CAP_GSTREAMER,
                                        description + " (GStreamer)", max_reconnects, stop);
  return std::make_unique<LiveSource>(url, 0, cv::CAP_FFMPEG, description, max_reconnects, stop);
}

}  // namespace

bool gstreamer_available() {
  const std::string info = cv::getBuildInformation();
  auto at = info.find("GStreamer:");
  return at != std::string::npos && info.substr(at, info.find('\n', at) - at).find("YES") != std::string::npos;
}

std::string redact(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const auto start = scheme + 3;
  const auto slash = url.find('/', start);
  const std::string authority = url.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
  const auto at = authority.rfind('@');
  if (at == std::string::npos) return url;
  const std::string user = authority.substr(0, std::min(authority.find(':'), at));
  return url.substr(0, start) + user + ":***@" + authority.substr(at + 1) +
         (slash == std::string::npos ? "" : url.substr(slash));
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
  std::vector<std::string> given;
  if (a.camera) given.push_back("--camera");
  if (a.video) given.push_back("--video");
  if (a.images) given.push_back("--images");
  if (a.rtsp) given.push_back("--rtsp");
  if (a.gst) given.push_back("--gst");
  if (a.csi) given.push_back("--csi");
  if (given.size() != 1) {
    std::string list;
    for (const auto& g : given) list += (list.empty() ? "" : ", ") + g;
    throw BadInput("give exactly one source (" + (list.empty() ? std::string("none") : list) +
                   " given): --camera N, --video FILE, --images DIR, --rtsp URL, --gst PIPELINE or --csi N");
  }
  if (a.images) return std::make_unique<ImageSource>(*a.images);
  if (a.video) return std::make_unique<VideoSource>(*a.video);
  if (a.camera)
    return std::make_unique<LiveSource>("", *a.camera, cv::CAP_ANY, "camera " + std::to_string(*a.camera),
                                        a.max_reconnects, stop);
  if (a.rtsp) return open_stream(*a.rtsp, a.max_reconnects, stop);
  if (a.gst) {
    require_gstreamer("--gst");
    return std::make_unique<LiveSource>(*a.gst, 0, cv::CAP_GSTREAMER, "GStreamer pipeline", a.max_reconnects, stop);
  }
  require_gstreamer("--csi");
  return std::make_unique<LiveSource>(csi_pipeline(*a.csi), 0, cv::CAP_GSTREAMER,
                                      "CSI camera " + std::to_string(*a.csi), a.max_reconnects, stop);
}

namespace {
const char* const kUriForms =
    "a camera (0, v4l2:///dev/video0), csi://0, rtsp://HOST/PATH, http(s)://HOST/PATH, a video file, an image "
    "folder, glob or file, or gst:PIPELINE";

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

SourceSpec parse_source_uri(const std::string& uri) {
  const auto first = uri.find_first_not_of(" \t"), last = uri.find_last_not_of(" \t");
  const std::string text = first == std::string::npos ? "" : uri.substr(first, last - first + 1);
  const BadInput bad("--source '" + redact(text) + "': not a source this runtime knows; accepted: " + kUriForms);
  SourceSpec spec;
  if (all_digits(text) && text.size() < 6) {
    spec.camera = std::stoi(text);
  } else if (starts_with(text, "v4l2://")) {
    const std::string device = text.substr(7);
    if (!starts_with(device, "/dev/video") || !all_digits(device.substr(10)) || device.size() > 15) throw bad;
    spec.camera = std::stoi(device.substr(10));
  } else if (starts_with(text, "csi://")) {
    if (!all_digits(text.substr(6)) || text.size() > 11) throw bad;
    spec.csi = std::stoi(text.substr(6));
  } else if (starts_with(text, "rtsp://") || starts_with(text, "rtsps://") || starts_with(text, "http://") ||
             starts_with(text, "https://")) {
    spec.rtsp = text;
  } else if (starts_with(text, "gst:")) {
    const auto body = text.find_first_not_of(' ', 4);
    if (body == std::string::npos) throw bad;
    spec.gst = text.substr(body);
  } else {
    const std::string path = starts_with(text, "file://") ? text.substr(7) : text;
    if (path.empty() || path.find("://") != std::string::npos) throw bad;
    if (path.find_first_of("*?[") != std::string::npos || fs::is_directory(path) || is_image_name(path))
      spec.images = path;
    else if (fs::is_regular_file(path))
      spec.video = path;
    else
      throw BadInput("--source '" + redact(text) + "': no such file, folder or device; accepted: " + kUriForms);
  }
  return spec;
}

std::vector<std::string> read_streams(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw BadInput("--streams " + path + ": cannot read it; pass a text file, one URI a line");
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
  if (spec.camera) return "camera " + std::to_string(*spec.camera);
  if (spec.video) return "video " + *spec.video;
  if (spec.images) return "images " + *spec.images;
  if (spec.rtsp) return "rtsp " + redact(*spec.rtsp);
  if (spec.gst) return "gst " + *spec.gst;
  if (spec.csi) return "csi " + std::to_string(*spec.csi);
  return "none";
}

}  // namespace disseg
