// dis_run_cpp: the Python dis-run's job for C++ deployments: a camera, video, image folder or stream through
// libdisseg into a window, an MP4, label PNGs and a stats JSON. Bad input: one line, exit 2. Ctrl-C flushes.
//
//   dis_run_cpp model.engine --video in.mp4 --output out.mp4
//   dis_run_cpp model.onnx --images 'photos/*.jpg' --masks masks/ --stats stats.json --no-display
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <exception>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/highgui.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <png.h>

#include "disseg/segmenter.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<bool> interrupted{false};  // Ctrl-C
std::atomic<bool> stopping{false};     // Ctrl-C, the window closed, a sink failed, or the frame limit reached
void on_sigint(int) {
  interrupted = true;
  stopping = true;
}

// A bounded hand-over between threads: a file source never runs far ahead of inference, nothing grows.
template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity) {}
  void push(T value) {  // waits for room; dropped once the consumer has gone
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return items_.size() < capacity_ || abandoned_; });
    if (abandoned_) return;
    items_.push_back(std::move(value));
    not_empty_.notify_one();
  }
  bool pop(T& value) {  // false once the producer has finished and everything was taken
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return !items_.empty() || finished_; });
    if (items_.empty()) return false;
    value = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void finish() {  // producer: no more items
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
    not_empty_.notify_all();
  }
  void abandon() {  // consumer: stop taking; unblock the producer
    std::lock_guard<std::mutex> lock(mutex_);
    abandoned_ = finished_ = true;
    items_.clear();
    not_full_.notify_all();
    not_empty_.notify_all();
  }

 private:
  std::size_t capacity_;
  std::deque<T> items_;
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  bool finished_ = false, abandoned_ = false;
};

// The last `capacity` values, for percentiles: a camera that runs for days must not grow.
class Window {
 public:
  static constexpr std::size_t capacity = 10000;
  void add(double v) {
    if (values_.size() == capacity) values_.pop_front();
    values_.push_back(v);
  }
  std::vector<double> values() const { return {values_.begin(), values_.end()}; }
  std::vector<double> last(std::size_t n) const { return {values_.end() - std::min(n, values_.size()), values_.end()}; }

 private:
  std::deque<double> values_;
};

struct Frame {
  int index = 0;
  cv::Mat image;
  std::string name;  // file stem or frame number: the mask file's name
  Clock::time_point captured;
};

std::string frame_name(int index) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06d", index);
  return buf;
}

class Source {
 public:
  virtual ~Source() = default;
  virtual bool next(Frame& frame) = 0;  // false at the end
  virtual double fps() const { return 30.0; }
  int skipped = 0;
  int reconnects = 0;
};

// Image files from a folder or glob, sorted; unreadable ones skipped with a warning and counted.
class ImageSource final : public Source {
 public:
  explicit ImageSource(const std::string& spec) {
    const bool glob = spec.find_first_of("*?[") != std::string::npos;
    if (!glob && !fs::is_directory(spec))
      throw disseg::BadInput(spec + ": no such image folder; pass a folder or a glob such as 'photos/*.jpg'");
    std::vector<cv::String> found;
    if (glob) {
      cv::glob(spec, found, false);
    } else {
      for (const auto& entry : fs::directory_iterator(spec)) found.push_back(entry.path().string());
    }
    static const std::vector<std::string> suffixes{".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"};
    for (const auto& p : found) {
      std::string ext = fs::path(p).extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (fs::is_regular_file(p) && (glob || std::find(suffixes.begin(), suffixes.end(), ext) != suffixes.end())) paths_.push_back(p);
    }
    std::sort(paths_.begin(), paths_.end());
    if (paths_.empty()) throw disseg::BadInput(spec + ": no images found (looked for .jpg, .png, .bmp, .tif, .webp)");
  }
  bool next(Frame& frame) override {
    while (pos_ < paths_.size()) {
      const std::string& path = paths_[pos_++];
      cv::Mat image = cv::imread(path, cv::IMREAD_UNCHANGED);
      try {
        if (image.empty()) throw disseg::BadInput(path + ": not a decodable image (corrupt or unsupported format)");
        frame = {index_++, disseg::to_bgr8(image, path), fs::path(path).stem().string(), Clock::now()};
        return true;
      } catch (const disseg::BadInput& err) {
        ++skipped;
        std::cerr << "skipped " << err.what() << "\n";
      }
    }
    return false;
  }

 private:
  std::vector<std::string> paths_;
  std::size_t pos_ = 0;
  int index_ = 0;
};

// A video file, every frame in order.
class VideoSource final : public Source {
 public:
  explicit VideoSource(const std::string& path) {
    if (!fs::is_regular_file(path)) throw disseg::BadInput(path + ": no such video file");
    cap_.open(path);
    if (!cap_.isOpened() || !cap_.read(first_))
      throw disseg::BadInput(path + ": cannot read any frame (empty, corrupt or an unsupported codec)");
    fps_ = cap_.get(cv::CAP_PROP_FPS) > 0 ? cap_.get(cv::CAP_PROP_FPS) : 30.0;
  }
  bool next(Frame& frame) override {
    cv::Mat image;
    if (!first_.empty()) {
      image = first_;
      first_.release();
    } else if (!cap_.read(image)) {
      return false;
    }
    frame = {index_, image, frame_name(index_), Clock::now()};
    ++index_;
    return true;
  }
  double fps() const override { return fps_; }

 private:
  cv::VideoCapture cap_;
  cv::Mat first_;
  double fps_ = 30.0;
  int index_ = 0;
};

// A camera or stream read in a thread that keeps only the newest frame (no growing lag); a dropped stream
// is reconnected with exponential backoff and counted, and given up after max_reconnects failures in a row.
class LiveSource final : public Source {
 public:
  LiveSource(std::string target, int camera, int api, std::string description, int max_reconnects = 10)
      : target_(std::move(target)), camera_(camera), api_(api), description_(std::move(description)), max_reconnects_(max_reconnects) {
    if (!open())
      throw disseg::BadInput(description_ + ": cannot open it (no such device or unreachable); check the index or URL "
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
      if (stopping) return false;
      cond_.wait_for(lock, std::chrono::milliseconds(200));
    }
    if (!latest_) return false;
    frame = std::move(*latest_);
    latest_.reset();
    return true;
  }
  double fps() const override { return fps_; }

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
      std::cerr << description_ << " dropped; reconnecting in " << backoff << " s (reconnect " << reconnects + 1 << ")\n";
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
  bool ended_ = false;
};

bool gstreamer_available() {
  const std::string info = cv::getBuildInformation();
  auto at = info.find("GStreamer:");
  return at != std::string::npos && info.substr(at, info.find('\n', at) - at).find("YES") != std::string::npos;
}

void require_gstreamer(const std::string& what) {
  if (!gstreamer_available())
    throw disseg::BadInput(what + " needs OpenCV built with GStreamer, and this one is not; on a Jetson link JetPack's OpenCV, "
                           "elsewhere build OpenCV with -DWITH_GSTREAMER=ON");
}

// rtsp://admin:secret@host/live -> rtsp://admin:***@host/live: credentials never reach a message or log line.
std::string redact(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const auto start = scheme + 3;
  const auto slash = url.find('/', start);
  const std::string authority = url.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
  const auto at = authority.rfind('@');
  if (at == std::string::npos) return url;
  const std::string user = authority.substr(0, std::min(authority.find(':'), at));
  return url.substr(0, start) + user + ":***@" + authority.substr(at + 1) + (slash == std::string::npos ? "" : url.substr(slash));
}

// Whether this machine's GStreamer has an element (gst-inspect-1.0 --exists, gstreamer1.0-tools); false without the tool.
bool gstreamer_element(const std::string& name) {
  const std::string command = "gst-inspect-1.0 --exists " + name + " > /dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

// RTSP through GStreamer: Jetson's hardware H.264 decoder where it exists, decodebin elsewhere (as dis-run).
std::string rtsp_pipeline(const std::string& url, bool hardware_decoder) {
  return "rtspsrc location=\"" + url + "\" latency=200 ! " +
         (hardware_decoder ? "rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! " : "decodebin ! ") +
         "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false";
}

std::string csi_pipeline(int sensor, int width = 1280, int height = 720, int fps = 30) {
  return "nvarguscamerasrc sensor-id=" + std::to_string(sensor) + " ! video/x-raw(memory:NVMM),width=" + std::to_string(width) +
         ",height=" + std::to_string(height) + ",framerate=" + std::to_string(fps) +
         "/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1";
}

struct SourceArgs {
  std::optional<int> camera, csi;
  std::optional<std::string> video, images, rtsp, gst;
  int max_reconnects = 10;
};

std::unique_ptr<Source> open_stream(const std::string& url, int max_reconnects) {
  if (url.rfind("rtsp://", 0) && url.rfind("rtsps://", 0) && url.rfind("http://", 0) && url.rfind("https://", 0))
    throw disseg::BadInput("--rtsp '" + redact(url) + "': expected a URL such as rtsp://host:554/stream");
  const std::string description = "stream " + redact(url);
  // Only where GStreamer can build the pipeline: OpenCV 4.6 waits forever on one that lacks its source element.
  const bool hardware = gstreamer_element("nvv4l2decoder");
  if (url.rfind("http", 0) != 0 && gstreamer_available() && gstreamer_element("rtspsrc") && (hardware || gstreamer_element("decodebin")))
    return std::make_unique<LiveSource>(rtsp_pipeline(url, hardware), 0, cv::CAP_GSTREAMER,
                                        description + " (GStreamer)", max_reconnects);
  return std::make_unique<LiveSource>(url, 0, cv::CAP_FFMPEG, description, max_reconnects);
}

std::unique_ptr<Source> open_source(const SourceArgs& a) {
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
    throw disseg::BadInput("give exactly one source (" + (list.empty() ? std::string("none") : list) +
                           " given): --camera N, --video FILE, --images DIR, --rtsp URL, --gst PIPELINE or --csi N");
  }
  if (a.images) return std::make_unique<ImageSource>(*a.images);
  if (a.video) return std::make_unique<VideoSource>(*a.video);
  if (a.camera)
    return std::make_unique<LiveSource>("", *a.camera, cv::CAP_ANY, "camera " + std::to_string(*a.camera), a.max_reconnects);
  if (a.rtsp) return open_stream(*a.rtsp, a.max_reconnects);
  if (a.gst) {
    require_gstreamer("--gst");
    return std::make_unique<LiveSource>(*a.gst, 0, cv::CAP_GSTREAMER, "GStreamer pipeline", a.max_reconnects);
  }
  require_gstreamer("--csi");
  return std::make_unique<LiveSource>(csi_pipeline(*a.csi), 0, cv::CAP_GSTREAMER, "CSI camera " + std::to_string(*a.csi),
                                      a.max_reconnects);
}

// An MP4 written to a temp file and renamed on close, so an interrupted run still leaves a playable file.
class VideoSink {
 public:
  VideoSink(const fs::path& path, double fps) : path_(path), fps_(fps) {
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (ext != ".mp4" && ext != ".avi" && ext != ".mkv")
      throw disseg::BadInput("--output " + path.string() + ": expected a .mp4, .avi or .mkv file");
    mp4_ = ext == ".mp4";
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    tmp_ = path.parent_path() / ("." + path.stem().string() + ".partial" + path.extension().string());
  }
  ~VideoSink() { close(); }
  void write(const cv::Mat& image) {
    if (!writer_.isOpened()) {
      int fourcc = mp4_ ? cv::VideoWriter::fourcc('m', 'p', '4', 'v') : cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
      if (!writer_.open(tmp_.string(), fourcc, fps_, image.size()))
        throw disseg::BadInput("--output " + path_.string() + ": OpenCV cannot write this video format here");
    }
    writer_.write(image);
    ++frames;
  }
  void close() {
    if (!writer_.isOpened()) return;
    writer_.release();
    fs::rename(tmp_, path_);
  }
  int frames = 0;

 private:
  fs::path path_, tmp_;
  double fps_;
  bool mp4_ = true;
  cv::VideoWriter writer_;
};

// One palette PNG per frame: pixel value = class index, colours from the model's palette (the Python
// runtime's MaskSink, byte for byte in content). libpng, since OpenCV cannot write palette PNGs.
class MaskSink {
 public:
  MaskSink(const fs::path& folder, const std::vector<std::array<std::uint8_t, 3>>& palette) : folder_(folder) {
    fs::create_directories(folder);
    for (std::size_t c = 0; c < 256; ++c) {
      const auto rgb = c < palette.size() ? palette[c] : std::array<std::uint8_t, 3>{0, 0, 0};
      palette_[c] = {rgb[0], rgb[1], rgb[2]};
    }
  }
  void write(const std::string& name, const cv::Mat& labels) {
    if (labels.type() != CV_8U) throw disseg::BadInput("--masks: palette PNGs hold up to 256 classes; this model has more");
    const fs::path final_path = folder_ / (name + ".png");
    const fs::path tmp = folder_ / ("." + name + ".tmp.png");
    if (!write_png(tmp, labels)) throw disseg::BadInput("--masks " + folder_.string() + ": cannot write " + tmp.string());
    fs::rename(tmp, final_path);
    ++count;
  }
  int count = 0;

 private:
  bool write_png(const fs::path& path, const cv::Mat& labels) {
    std::FILE* file = std::fopen(path.c_str(), "wb");
    if (!file) return false;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    bool ok = png && info && !setjmp(png_jmpbuf(png));
    if (ok) {
      png_init_io(png, file);
      png_set_IHDR(png, info, labels.cols, labels.rows, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                   PNG_FILTER_TYPE_DEFAULT);
      png_set_PLTE(png, info, palette_.data(), static_cast<int>(palette_.size()));
      png_write_info(png, info);
      for (int y = 0; y < labels.rows; ++y) png_write_row(png, labels.ptr<png_byte>(y));
      png_write_end(png, nullptr);
    }
    png_destroy_write_struct(png ? &png : nullptr, info ? &info : nullptr);
    return std::fclose(file) == 0 && ok;
  }

  fs::path folder_;
  std::array<png_color, 256> palette_{};
};

cv::Mat render(const disseg::Segmenter& seg, const Frame& frame, const disseg::Result& r, const std::string& view, double alpha,
               bool legend, double fps) {
  cv::Mat shown;
  if (view == "mask") {
    shown = seg.colorize(r.labels);
  } else if (view == "side-by-side") {
    cv::hconcat(frame.image, seg.colorize(r.labels), shown);
  } else {
    shown = seg.overlay(frame.image, r, alpha);
  }
  const double scale = std::max(0.4, std::min(shown.rows, 720) / 720.0);
  if (legend) {
    std::vector<bool> present(seg.info().num_classes(), false);
    for (int y = 0; y < r.labels.rows; ++y)
      for (int x = 0; x < r.labels.cols; ++x) {
        int c = r.labels.type() == CV_8U ? r.labels.at<std::uint8_t>(y, x) : r.labels.at<std::int32_t>(y, x);
        if (c >= 0 && c < static_cast<int>(present.size())) present[c] = true;
      }
    int row = 0;
    for (int c = 0; c < static_cast<int>(present.size()); ++c) {
      if (!present[c]) continue;
      const int y = static_cast<int>((10 + 22 * row++) * scale);
      const auto& rgb = seg.info().palette[c];
      cv::rectangle(shown, {int(8 * scale), y}, {int(26 * scale), y + int(16 * scale)}, cv::Scalar(rgb[2], rgb[1], rgb[0]), cv::FILLED);
      cv::putText(shown, seg.class_names()[c], {int(32 * scale), y + int(14 * scale)}, cv::FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                  {255, 255, 255}, 1, cv::LINE_AA);
    }
  }
  char text[64];
  std::snprintf(text, sizeof text, "%.1f FPS  %.1f ms", fps, r.timings.infer_ms);
  cv::putText(shown, text, {int(8 * scale), shown.rows - int(10 * scale)}, cv::FONT_HERSHEY_SIMPLEX, 0.6 * scale, {255, 255, 255}, 1,
              cv::LINE_AA);
  return shown;
}

nlohmann::json percentiles(std::vector<double> v) {
  if (v.empty()) return nlohmann::json::object();
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {  // linear interpolation, as numpy.percentile
    const double pos = q * (v.size() - 1);
    const std::size_t lo = static_cast<std::size_t>(pos);
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  };
  double sum = 0;
  for (double x : v) sum += x;
  return {{"mean", sum / v.size()}, {"p50", at(0.5)}, {"p90", at(0.9)}, {"p99", at(0.99)}};
}

void write_json_atomic(const fs::path& path, const nlohmann::json& data) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << data.dump(2) << "\n";
    if (!out) throw disseg::BadInput(path.string() + ": cannot write the stats file here");
  }
  fs::rename(tmp, path);
}

double rss_mb() {  // resident memory, from /proc (Linux, Jetson)
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1e6;
}

bool display_available() { return std::getenv("DISPLAY") || std::getenv("WAYLAND_DISPLAY"); }

int run(int argc, char** argv) {
  CLI::App app{"Segment a camera, video, image folder or stream with an exported DIS model (C++ runtime)."};
  std::string model, backend = "auto", view = "overlay", output, masks, stats_path;
  SourceArgs src;
  double alpha = 0.5;
  bool no_legend = false, no_display = false;
  int max_frames = 0, threads = 0, loops = 1;
  app.add_option("model", model, "model.onnx or model.engine (with its .json sidecar)")->required();
  app.add_option("--camera", src.camera, "camera index (V4L2 /dev/videoN)")->check(CLI::NonNegativeNumber);
  app.add_option("--video", src.video, "video file, read frame by frame, nothing dropped");
  app.add_option("--images", src.images, "image folder or glob, e.g. 'photos/*.jpg'");
  app.add_option("--rtsp", src.rtsp, "RTSP/HTTP stream URL (reconnects when it drops)");
  app.add_option("--gst", src.gst, "raw GStreamer pipeline ending in appsink");
  app.add_option("--csi", src.csi, "Jetson CSI camera sensor id (nvarguscamerasrc)")->check(CLI::NonNegativeNumber);
  app.add_option("--max-reconnects", src.max_reconnects, "a live source that drops is reopened this many times in a row")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backend", backend, "auto | onnxruntime | tensorrt")->check(CLI::IsMember({"auto", "onnxruntime", "tensorrt"}));
  app.add_option("--output", output, "write the rendered view to this video file");
  app.add_option("--masks", masks, "write one palette PNG of labels per frame here");
  app.add_option("--stats", stats_path, "write latency/FPS/class-area JSON here");
  app.add_option("--view", view, "overlay | mask | side-by-side")->check(CLI::IsMember({"overlay", "mask", "side-by-side"}));
  app.add_option("--alpha", alpha, "overlay opacity")->check(CLI::Range(0.0, 1.0));
  app.add_flag("--no-legend", no_legend, "no class legend");
  app.add_flag("--no-display", no_display, "no window (headless)");
  app.add_option("--max-frames", max_frames, "stop after this many frames")->check(CLI::PositiveNumber);
  app.add_option("--loop", loops, "play a video or image folder this many times")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "ONNX Runtime CPU threads (0: all cores)")->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << " (see dis_run_cpp --help)\n";
    return 2;
  }
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);

  const bool window = !no_display && display_available();
  if (!no_display && !window) std::cerr << "no display here; running headless (pass --no-display to silence this)\n";
  if (!window && output.empty() && masks.empty() && stats_path.empty())
    throw disseg::BadInput("nothing to show or write: give --output FILE, --masks DIR or --stats FILE (or run with a display)");
  if (loops > 1 && !src.video && !src.images) throw disseg::BadInput("--loop applies to --video and --images only");
  disseg::Options options;
  options.backend = backend;
  options.threads = threads;
  disseg::Segmenter seg(model, options);
  std::unique_ptr<Source> source = open_source(src);
  const auto& info = seg.info();
  std::cerr << fs::path(model).filename().string() << ": " << info.precision << ", " << info.input_height << "x" << info.input_width << ", "
            << info.num_classes() << " classes, " << info.iterations << " refinement steps, " << seg.backend_name() << "\n";
  std::optional<VideoSink> video;
  if (!output.empty()) video.emplace(output, src.video ? source->fps() : 30.0);
  std::optional<MaskSink> mask_sink;
  if (!masks.empty()) mask_sink.emplace(masks, info.palette);
  const std::string title = "dis_run_cpp " + fs::path(model).filename().string();

  std::signal(SIGINT, on_sigint);
  Window pre, infer, post, total;
  std::vector<double> first_totals, rss_samples;  // the first 1000 frames' totals and RSS every 1000 frames: does a long run drift?
  std::vector<double> class_pixels(info.num_classes(), 0.0);
  const auto started = Clock::now();
  int frames = 0, skipped = 0;

  // Capture, inference and writing overlap, as in the Python runtime: a reader thread decodes (a live
  // source keeps only its newest frame), this thread segments, a writer thread renders and writes.
  BoundedQueue<Frame> inbox(src.camera || src.rtsp || src.gst || src.csi ? 1 : 8);
  struct Done {
    Frame frame;
    disseg::Result result;
    double fps;
  };
  BoundedQueue<Done> outbox(8);
  std::exception_ptr reader_error, writer_error;
  std::thread reader([&] {
    const bool looped = loops > 1;
    int read = 0;
    Frame frame;
    try {
      while (!stopping && (max_frames == 0 || read < max_frames)) {
        if (!source->next(frame)) {  // a looped file source is reopened at its end and its frames numbered on
          if (--loops < 1) break;
          skipped += source->skipped;
          try {
            source = open_source(src);
          } catch (const disseg::Error& err) {
            std::cerr << "stopped looping: " << err.what() << "\n";
            break;
          }
          continue;
        }
        if (looped) frame.name = frame_name(read);  // as the Python runtime: one numbering across the passes
        ++read;
        inbox.push(std::move(frame));
      }
    } catch (...) {  // e.g. a decoder error: stop, and report it after the threads are joined
      reader_error = std::current_exception();
      stopping = true;
    }
    inbox.finish();
  });
  std::thread writer([&] {
    try {
      Done done;
      while (outbox.pop(done)) {
        if (mask_sink) mask_sink->write(done.frame.name, done.result.labels);
        if (!video && !window) continue;
        cv::Mat shown = render(seg, done.frame, done.result, view, alpha, !no_legend, done.fps);
        if (video) video->write(shown);
        if (window) {
          cv::imshow(title, shown);
          const int key = cv::waitKey(1) & 0xFF;
          if (key == 27 || key == 'q') stopping = true;
        }
      }
    } catch (...) {
      writer_error = std::current_exception();
      stopping = true;
      outbox.abandon();
    }
  });

  Frame frame;
  while (!stopping && inbox.pop(frame)) {
    const auto t0 = Clock::now();
    disseg::Result r = seg.segment(frame.image);
    const double total_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    total.add(total_ms);
    if (first_totals.size() < 1000) first_totals.push_back(total_ms);
    if (frames % 1000 == 0) rss_samples.push_back(rss_mb());
    pre.add(r.timings.preprocess_ms);
    infer.add(r.timings.infer_ms);
    post.add(r.timings.postprocess_ms);
    ++frames;
    if (r.labels.type() == CV_8U) {
      const int bins = 256;
      cv::Mat hist;
      const float range[] = {0, 256};
      const float* ranges[] = {range};
      cv::calcHist(&r.labels, 1, nullptr, cv::Mat(), hist, 1, &bins, ranges);
      for (int c = 0; c < info.num_classes(); ++c) class_pixels[c] += hist.at<float>(c);
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    outbox.push({std::move(frame), std::move(r), elapsed > 0 ? frames / elapsed : 0.0});
  }
  stopping = true;
  inbox.abandon();  // unblock the reader if it waits for room
  reader.join();
  outbox.finish();  // the writer drains what was segmented, so every counted frame is written
  writer.join();
  if (reader_error) std::rethrow_exception(reader_error);
  if (writer_error) std::rethrow_exception(writer_error);
  const double wall = std::chrono::duration<double>(Clock::now() - started).count();
  if (video) video->close();
  nlohmann::json summary = {
      {"frames", frames}, {"wall_s", wall}, {"fps", wall > 0 ? frames / wall : 0.0},
      {"latency_ms", {{"preprocess_ms", percentiles(pre.values())}, {"infer_ms", percentiles(infer.values())},
                      {"postprocess_ms", percentiles(post.values())}, {"total_ms", percentiles(total.values())}}},
      {"percentiles_over_last_frames", std::min<std::size_t>(frames, Window::capacity)},
      {"first_1000_total_ms", percentiles(first_totals)},
      {"last_1000_total_ms", percentiles(total.last(1000))},
      {"rss_mb", {{"start", rss_samples.empty() ? nlohmann::json() : nlohmann::json(rss_samples.front())}, {"end", rss_mb()},
                  {"samples_every_1000_frames", rss_samples}}},
      {"model", model}, {"backend", seg.backend_name()}, {"runtime", "c++"}, {"skipped", skipped + source->skipped},
      {"reconnects", source->reconnects}, {"interrupted", interrupted.load()}};
  double pixels = 0;
  for (double p : class_pixels) pixels += p;
  nlohmann::json area = nlohmann::json::object();
  for (int c = 0; c < info.num_classes(); ++c) area[info.class_names[c]] = pixels > 0 ? class_pixels[c] / pixels : 0.0;
  summary["class_area"] = area;
  if (!stats_path.empty()) write_json_atomic(stats_path, summary);
  const auto& lat = summary["latency_ms"]["total_ms"];
  char line[200];
  std::snprintf(line, sizeof line, "%d frames in %.1f s (%.1f FPS), latency p50 %.1f ms", frames, wall, wall > 0 ? frames / wall : 0.0,
                lat.value("p50", 0.0));
  skipped += source->skipped;
  std::cout << line << (skipped ? ", " + std::to_string(skipped) + " skipped" : "")
            << (source->reconnects ? ", " + std::to_string(source->reconnects) + " reconnects" : "") << std::endl;
  if (interrupted) {
    std::cerr << "interrupted\n";
    return 130;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const disseg::BadInput& err) {  // bad input or model file: one line, exit 2 (as dis-run)
    std::cerr << "error: " << err.what() << "\n";
    return 2;
  } catch (const disseg::ModelFileError& err) {
    std::cerr << "error: " << err.what() << "\n";
    return 2;
  } catch (const fs::filesystem_error& err) {  // an output path that cannot be made or written
    std::cerr << "error: " << err.what() << "; choose a writable --output/--masks/--stats path\n";
    return 2;
  } catch (const std::exception& err) {
    std::cerr << "failed: " << err.what() << "\n";
    return 1;
  }
}
