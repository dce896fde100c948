// disseg's I/O layer, what jetson-utils' videoSource/videoOutput are to segnet: sources (camera, video,
// images, RTSP, GStreamer, Jetson CSI), sinks (video file, label PNGs, a window), run statistics and the
// threaded loop that ties them to a Segmenter. The C++ twin of runtime/sources.py, sinks.py and pipeline.py;
// dis_run_cpp is a command line around it.
//
//   disseg::Segmenter seg("model.onnx");
//   disseg::SourceSpec spec{disseg::VideoFile{"in.mp4"}};
//   disseg::VideoSink video("out.mp4", 30.0);
//   disseg::Stats stats(seg.class_names());
//   std::atomic<bool> stop{false};
//   disseg::Counters c = disseg::run_pipeline(seg, spec, {&video, nullptr, nullptr}, {}, stats, stop);
//   stats.write("stats.json", {"model.onnx", seg.backend_name(), c.skipped, c.reconnects, false});
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <opencv2/core.hpp>

#include "disseg/export.h"
#include "disseg/segmenter.hpp"

namespace disseg {

using Clock = std::chrono::steady_clock;

// A write the machine refused (full disk, read-only mount, permission): the temp file was removed and an existing
// file of that name left as it was. Not BadInput: the input was fine (dis_run_cpp exits 1).
class DISSEG_API WriteFailed : public Error {
 public:
  using Error::Error;
};

// The one way libdisseg writes a file (runtime/atomic.py in C++): a temp file beside `path` with the same extension,
// checked, fsynced and renamed onto `path` by commit(); removed by abort() or the destructor if not committed.
class DISSEG_API AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // makes missing folders; WriteFailed when it cannot
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  const std::string& tmp() const { return tmp_; }
  const std::string& path() const { return path_; }
  void commit();  // fsync, rename, fsync the folder; WriteFailed (temp removed) on error
  void abort();
  // The error for a write that did not complete: the disk's state (full, read-only) where it explains it, else
  // `detail`. Call before abort(), while the temp file still holds its space.
  WriteFailed fail(const std::string& detail) const;

 private:
  std::string path_, tmp_;
  bool done_ = false;
};

// Write `path` atomically: `write(tmp)` returns false (errno set) or throws on failure -> WriteFailed naming the path
// and the reason (ENOSPC, EROFS, EACCES); the temp file is removed and `path` untouched.
DISSEG_API void atomic_write(const std::string& path, const std::function<bool(const std::string& tmp)>& write);

// Refuse, before any work, an output that cannot be written: a folder where a file is expected (or the reverse with
// `folder`), a file in the way of its folder, a folder that is read-only, not writable or on a full disk. Missing
// folders are made here. Throws BadInput naming `option`.
DISSEG_API void check_output(const std::string& path, const std::string& option, bool folder = false);
// Remove the folders check_output made that are still empty: a program refused with exit 2 leaves nothing behind.
DISSEG_API void undo_made_folders();

// Why nothing more can be written into `folder` ("no space left on device (ENOSPC)", read-only), or "".
DISSEG_API std::string disk_reason(const std::string& folder);

// Output names for image files, one each, never two alike even where case is ignored: the stem; the whole file
// name where stems collide (ignoring ASCII case); then -2, -3, ... (runtime/image.py unique_names, same rule).
DISSEG_API std::vector<std::string> unique_names(const std::vector<std::string>& paths);

struct Frame {
  int index = 0;
  cv::Mat image;
  std::string name;  // file stem or zero-padded frame number: the mask file's name
  Clock::time_point captured;
};

// Facts of the sources, once (runtime/sources.py DEFAULT_FPS, DEFAULT_MAX_RECONNECTS; tests/test_twins.py).
constexpr double kDefaultFps = 30.0;       // a source that does not say its frame rate, and the videos written from it
constexpr int kDefaultMaxReconnects = 10;  // a live source that drops is reopened this many times in a row, then ends

// A file that ended before the frame count its header declares (cut short or damaged).
struct Truncation {
  int frames_read = 0, frames_declared = 0;
};

// A source of frames. Live ones (camera, stream, pipeline) keep only the newest frame and reconnect.
class DISSEG_API Source {
 public:
  virtual ~Source() = default;
  virtual bool next(Frame& frame) = 0;  // false at the end
  virtual double fps() const { return kDefaultFps; }
  virtual bool live() const { return false; }
  virtual void interrupt() {}           // a reader waiting in next() returns soon (a stop); files need nothing
  int skipped = 0;                      // unreadable images skipped
  int reconnects = 0;                   // times a live source was reopened
  std::optional<Truncation> truncated;  // set at the end of a video file that ended early
};

// What the user asked to read, one source by its kind: a spec holds exactly one (a type, not a check).
struct Camera {
  int index = 0;  // V4L2 /dev/videoN
};
struct CsiCamera {
  int sensor = 0;  // Jetson nvarguscamerasrc sensor-id
};
struct VideoFile {
  std::string path;  // every frame, nothing dropped
};
struct ImageFiles {
  std::string pattern;  // a folder, a glob such as 'photos/*.jpg', or one image
};
struct StreamUrl {
  std::string url;  // rtsp(s)://, http(s)://: reconnects when it drops
};
struct GstPipeline {
  std::string pipeline;       // ending in appsink
  std::string kind = "auto";  // "live" (reconnects) or "file" (ends at its end); auto: guessed
};
using SourceKind = std::variant<Camera, CsiCamera, VideoFile, ImageFiles, StreamUrl, GstPipeline>;

struct SourceSpec {
  SourceSpec(SourceKind what) : source(std::move(what)) {}  // implicit: a spec is its source
  SourceKind source;
  int max_reconnects = kDefaultMaxReconnects;
  // A live source that cannot be opened at start is retried in the background like one that dropped (a service
  // with several sources starts while a camera is down); otherwise open_source throws its one line.
  bool retry_first_open = false;
  template <class T>
  const T* get() const {
    return std::get_if<T>(&source);
  }
  bool live() const { return get<Camera>() || get<StreamUrl>() || get<GstPipeline>() || get<CsiCamera>(); }
  bool file() const { return get<VideoFile>() || get<ImageFiles>(); }
  bool replayable() const { return file() || get<GstPipeline>(); }  // --loop: files, and a pipeline that is a file
};

// One source named by a URI, as the Python runtime's --source: 0, v4l2:///dev/video0, csi://0, rtsp://...,
// http(s)://..., a video file, an image folder, glob or file, gst:PIPELINE. BadInput (the accepted forms, credentials
// redacted).
DISSEG_API SourceSpec parse_source_uri(const std::string& uri);
// A --streams file: one URI a line; blank lines and lines starting with '#' skipped. BadInput when unreadable/empty.
DISSEG_API std::vector<std::string> read_streams(const std::string& path);
// "video in.mp4", "stream rtsp://admin:***@cam/live": a source for logs and the stats file.
DISSEG_API std::string describe(const SourceSpec& spec);

// The source `spec` names, or BadInput in one line. A live source stops waiting once `*stop` is set.
DISSEG_API std::unique_ptr<Source> open_source(const SourceSpec& spec, const std::atomic<bool>* stop = nullptr);

// Live readers left inside OpenCV when their source ended (a server that never answers a stop): they end alone after
// FFmpeg's timeouts. A program that has any should leave with std::_Exit once its outputs are final (dis_run_cpp does).
DISSEG_API int left_running_readers();
// Credentials never reach a message, log line or file: a URL's userinfo (rtsp://admin:PW@cam -> rtsp://admin:***@cam,
// https://TOKEN@h -> https://***@h) and secret parameters of a query or pipeline (?password=PW, user-pw=PW -> ***),
// anywhere in `text` (src/redaction.cpp lists the keys).
DISSEG_API std::string redact(const std::string& text);
DISSEG_API bool gstreamer_available();  // OpenCV built with GStreamer
DISSEG_API std::string rtsp_pipeline(const std::string& url, bool hardware_decoder);
DISSEG_API std::string csi_pipeline(int sensor, int width = 1280, int height = 720, int fps = 30);

// An MP4/AVI/MKV written to a hidden temp file; close() checks that every frame and the trailer are readable, then
// renames it onto the path: a stopped run leaves a playable file, a full disk leaves an existing file untouched
// (WriteFailed). The constructor checks the path (BadInput).
class DISSEG_API VideoSink {
 public:
  VideoSink(const std::string& path, double fps);
  ~VideoSink();
  void write(const cv::Mat& image);
  void close();  // WriteFailed when the finished file is incomplete
  int frames() const;
  void set_fps(double fps);  // before the first write

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One palette PNG per frame (pixel = class index, colours from the model): runtime/sinks.py's MaskSink.
class DISSEG_API MaskSink {
 public:
  MaskSink(const std::string& folder, const std::vector<std::array<std::uint8_t, 3>>& palette);
  void write(const std::string& name, const cv::Mat& labels);  // atomically: temp file, then rename
  int count = 0;

 private:
  std::string folder_;
  std::vector<std::array<std::uint8_t, 3>> palette_;
};

// An OpenCV window; closed() once the user pressed Esc or q.
class DISSEG_API WindowSink {
 public:
  explicit WindowSink(std::string title) : title_(std::move(title)) {}
  ~WindowSink();
  void write(const cv::Mat& image);
  bool closed() const { return closed_; }

 private:
  std::string title_;
  bool closed_ = false;
};

struct RenderOptions {
  std::string view = "overlay";  // overlay | mask | side-by-side
  double alpha = 0.5;
  bool legend = true;
};

// The frame as shown: the view, a legend of the classes present and an FPS/latency line.
DISSEG_API cv::Mat render(const Segmenter& seg, const Frame& frame, const Result& result, const RenderOptions& options,
                          double fps);

// What a run counted of one stream beside its frames.
struct StreamFacts {
  int skipped = 0, reconnects = 0;
  std::optional<Truncation> truncated;
};

// What a run adds to its stats file beside the figures.
struct RunFacts {
  std::string model, backend;
  int skipped = 0, reconnects = 0;
  bool interrupted = false;
  std::optional<Truncation> truncated;
  std::vector<StreamFacts> streams;                  // per stream, in order (empty: one stream, the totals above)
  std::optional<std::map<std::string, int>> events;  // --events: the records written by type
};

// Per-stage latency, frame age, class areas and memory, as runtime/pipeline.py's Stats: percentiles over the
// last `window` frames, the first 1000 frames' totals kept apart so a long run shows whether latency drifted.
class DISSEG_API Stats {
 public:
  static constexpr std::size_t window = 10000;
  explicit Stats(std::vector<std::string> class_names);
  ~Stats();
  Stats(Stats&&) noexcept;
  void add(const Frame& frame, const Result& result, Clock::time_point started,
           int stream = 0);                          // started: before segment()
  void set_streams(std::vector<std::string> names);  // the sources, described (default: one unnamed stream)
  void add_batches(const std::vector<int>& sizes);   // the batch sizes one round ran (Segmenter::batch_plan)
  int frames() const;
  double wall_s() const;                                             // seconds since construction
  double fps() const;                                                // frames per second since construction
  double total_p50_ms() const;                                       // median per-frame latency over the window
  std::string json(const RunFacts& facts) const;                     // the stats file's text; keys: stats_keys()
  void write(const std::string& path, const RunFacts& facts) const;  // atomically

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The stats file's top-level keys, the same list as the Python runtime's (tests/stats_keys.json holds both to it).
DISSEG_API const std::vector<std::string>& stats_keys();

// Results as data: one JSON line per segmented frame (stream, source, frame index, capture time, model, class area
// fractions, scene tags) and an "appeared"/"gone" record when a class's share of the frame crosses `min_area`, into
// a file (flushed each line) or standard output ("-"): runtime/events.py's Events and JsonLines. One sink serves
// every stream of a run.
constexpr double kDefaultMinArea = 0.01;  // runtime/events.py DEFAULT_MIN_AREA
class DISSEG_API EventSink {
 public:
  EventSink(const std::string& path, std::vector<std::string> class_names, std::string model, int iterations,
            double min_area = kDefaultMinArea);
  ~EventSink();
  void write(int stream, const std::string& source, const Frame& frame, const Result& result,
             const std::vector<float>& scene_tags);
  std::map<std::string, int> counts() const;  // records written by type: frame, appeared, gone
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Sinks {
  VideoSink* video = nullptr;
  MaskSink* masks = nullptr;
  WindowSink* window = nullptr;
  EventSink* events = nullptr;  // shared by the streams of a run
};

struct PipelineOptions {
  RenderOptions render;
  int max_frames = 0;  // 0: no limit
  int loops = 1;       // a file source is read this many times, its frames numbered on
};

struct Counters {
  int skipped = 0, reconnects = 0;
  std::optional<Truncation> truncated;
  std::vector<StreamFacts> streams;  // per stream, in order
};

// One source and its own sinks, for a run of several.
struct Stream {
  SourceSpec spec;
  Sinks sinks;
  std::vector<float> scene_tags;  // what this camera may see (a model exported with --scene-tags); empty: none
};

// Read `spec`, segment every frame into `sinks`, add to `stats`. Capture, inference and writing overlap in three
// threads; a live source waits at one frame and keeps the newest, a file source never runs more than 8 frames
// ahead. Returns when the source ends, max_frames is reached, `stop` is set (set it from a SIGINT handler) or
// the window closes; every frame counted is written before it returns. A source or sink error is rethrown.
DISSEG_API Counters run_pipeline(Segmenter& seg, const SourceSpec& spec, const Sinks& sinks,
                                 const PipelineOptions& options, Stats& stats, std::atomic<bool>& stop);
// The same, filling `counters` as it goes, so a caller that catches a sink's WriteFailed still has them for its
// stats file. Every sink is closed before an error is rethrown.
DISSEG_API void run_pipeline(Segmenter& seg, const SourceSpec& spec, const Sinks& sinks, const PipelineOptions& options,
                             Stats& stats, std::atomic<bool>& stop, Counters& counters);
// Several sources, each into its own sinks, as dis-run's: a reader thread per source; each round segments the next
// frame of every file stream and the newest of every live one as one batch (split or padded to the model's batch);
// a stream that ends leaves the others running; max_frames and loops are per stream.
DISSEG_API void run_pipeline(Segmenter& seg, const std::vector<Stream>& streams, const PipelineOptions& options,
                             Stats& stats, std::atomic<bool>& stop, Counters& counters);

}  // namespace disseg
