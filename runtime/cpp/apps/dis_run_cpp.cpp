// dis_run_cpp: the Python dis-run's job for C++ deployments: a camera, video, image folder or stream through
// libdisseg into a window, an MP4, label PNGs and a stats JSON. Bad input: one line, exit 2. Ctrl-C flushes.
// Sources, sinks, statistics and the threaded loop are libdisseg's I/O layer (include/disseg/io.hpp).
//
//   dis_run_cpp model.engine --video in.mp4 --output out.mp4
//   dis_run_cpp model.onnx --images 'photos/*.jpg' --masks masks/ --stats stats.json --no-display
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <opencv2/core/utils/logger.hpp>

#include "disseg/io.hpp"
#include "disseg/segmenter.hpp"

namespace fs = std::filesystem;

namespace {

std::atomic<int> stop_signal{0};    // SIGINT, SIGTERM or SIGHUP: finish cleanly, exit 128 + the signal
std::atomic<bool> stopping{false};  // a stop signal, the window closed, a sink failed, or the frame limit reached
void on_stop_signal(int sig) {
  int none = 0;
  stop_signal.compare_exchange_strong(none, sig);
  stopping = true;
}

// Ceilings of the numeric options, as the Python dis-run's (runtime/cli_util.py).
constexpr int kMaxCount = 1000000;
const CLI::Validator kFinite(
    [](std::string& text) {
      const double v = std::strtod(text.c_str(), nullptr);
      return std::isfinite(v) ? std::string() : "'" + text + "' is not a finite number";
    },
    "FINITE");

bool display_available() { return std::getenv("DISPLAY") || std::getenv("WAYLAND_DISPLAY"); }

struct Args {
  std::string model, backend = "auto", output, masks, stats_path, streams_file, events;
  double min_area = disseg::kDefaultMinArea;
  std::vector<std::string> uris, scene_tags;
  disseg::SourceSpec src;
  disseg::PipelineOptions opt;
  bool no_legend = false, no_display = false;
  int threads = 0;
};

// Reads the command line into `a`; an exit status when the command ends here (help, a bad option: one line, 2).
std::optional<int> parse(int argc, char** argv, Args& a) {
  CLI::App app{"Segment a camera, video, image folder or stream with an exported DIS model (C++ runtime)."};
  app.add_option("model", a.model, "model.onnx or model.engine (with its .json sidecar)")->required();
  app.add_option("--source", a.uris,
                 "a source URI, repeatable: 0, v4l2:///dev/video0, csi://0, rtsp://..., http(s)://..., a video file, "
                 "an image folder or glob, gst:PIPELINE");
  app.add_option("--streams", a.streams_file, "a file of source URIs, one a line");
  app.add_option("--camera", a.src.camera, "camera index (V4L2 /dev/videoN)")->check(CLI::Range(0, 1023));
  app.add_option("--video", a.src.video, "video file, read frame by frame, nothing dropped");
  app.add_option("--images", a.src.images, "image folder or glob, e.g. 'photos/*.jpg'");
  app.add_option("--rtsp", a.src.rtsp, "RTSP/HTTP stream URL (reconnects when it drops)");
  app.add_option("--gst", a.src.gst, "raw GStreamer pipeline ending in appsink");
  app.add_option("--csi", a.src.csi, "Jetson CSI camera sensor id (nvarguscamerasrc)")->check(CLI::Range(0, 15));
  app.add_option("--max-reconnects", a.src.max_reconnects,
                 "a live source that drops is reopened this many times in a row")
      ->check(CLI::Range(0, kMaxCount));
  app.add_option("--backend", a.backend, "auto | onnxruntime | tensorrt")
      ->check(CLI::IsMember({"auto", "onnxruntime", "tensorrt"}));
  app.add_option("--scene-tags", a.scene_tags,
                 "classes the camera may see, e.g. road,car,person (a model exported with --scene-tags); once for "
                 "every source, or repeated once per source in order ('-': none)")
      ->allow_extra_args(false);
  app.add_option("--output", a.output, "write the rendered view to this video file");
  app.add_option("--masks", a.masks, "write one palette PNG of labels per frame here");
  app.add_option("--stats", a.stats_path, "write latency/FPS/class-area JSON here");
  app.add_option("--events", a.events,
                 "write one JSON line per segmented frame (class areas, scene tags) and appeared/gone records here "
                 "('-': standard output)");
  app.add_option("--event-min-area", a.min_area,
                 "a class has appeared when it covers at least this share of the frame, gone when it falls below")
      ->check(kFinite & CLI::Range(0.0, 1.0));
  app.add_option("--view", a.opt.render.view, "overlay | mask | side-by-side")
      ->check(CLI::IsMember({"overlay", "mask", "side-by-side"}));
  app.add_option("--alpha", a.opt.render.alpha, "overlay opacity")->check(kFinite & CLI::Range(0.0, 1.0));
  app.add_flag("--no-legend", a.no_legend, "no class legend");
  app.add_flag("--no-display", a.no_display, "no window (headless)");
  app.add_option("--max-frames", a.opt.max_frames,
                 "stop each stream after this many frames read from it (a live stream's replaced frames count)")
      ->check(CLI::PositiveNumber);
  app.add_option("--loop", a.opt.loops, "play a video or image folder this many times")
      ->check(CLI::Range(1, kMaxCount));
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  app.add_option("--threads", a.threads,
                 "ONNX Runtime CPU threads (0: all; at most this machine's " + std::to_string(cores) + " cores)")
      ->check(CLI::Range(0, cores));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << " (see dis_run_cpp --help)\n";
    return disseg::kExitBadInput;
  }
  a.opt.render.legend = !a.no_legend;
  return std::nullopt;
}

// Every source asked for, in dis-run's order: --source URIs, the --streams file's, then the one-source flags.
std::vector<disseg::SourceSpec> source_specs(const Args& a) {
  std::vector<std::string> uris = a.uris;
  if (!a.streams_file.empty())
    for (auto& uri : disseg::read_streams(a.streams_file)) uris.push_back(uri);
  std::vector<disseg::SourceSpec> specs;
  for (const auto& uri : uris) specs.push_back(disseg::parse_source_uri(uri));
  const disseg::SourceSpec& f = a.src;
  auto one = [&](auto member, const auto& value) {
    disseg::SourceSpec spec;
    spec.*member = value;
    specs.push_back(spec);
  };
  if (f.camera) one(&disseg::SourceSpec::camera, f.camera);
  if (f.video) one(&disseg::SourceSpec::video, f.video);
  if (f.images) one(&disseg::SourceSpec::images, f.images);
  if (f.rtsp) one(&disseg::SourceSpec::rtsp, f.rtsp);
  if (f.gst) one(&disseg::SourceSpec::gst, f.gst);
  if (f.csi) one(&disseg::SourceSpec::csi, f.csi);
  if (specs.empty())
    throw disseg::BadInput(
        "no source given: --source URI (repeatable), --streams FILE, or one of --camera N, --video FILE, --images "
        "DIR, --rtsp URL, --gst PIPELINE, --csi N");
  for (auto& spec : specs) {
    spec.max_reconnects = a.src.max_reconnects;
    spec.retry_first_open = specs.size() > 1;  // a camera down at start is retried while the others run
  }
  return specs;
}

// One stream's output: as given for one source; with several, out.mp4 -> out.s0.mp4 and masks/ -> masks/s0 (dis-run's
// rule).
std::string stream_path(const std::string& path, std::size_t index, std::size_t count, bool folder) {
  if (path.empty() || count == 1) return path;
  const fs::path p(path);
  const std::string tag = "s" + std::to_string(index);
  return folder ? (p / tag).string()
                : (p.parent_path() / (p.stem().string() + "." + tag + p.extension().string())).string();
}

// Runs the pipeline into the sinks and writes the stats, also after a failed write (rethrown afterwards).
void segment(disseg::Segmenter& seg, const Args& a, const std::vector<disseg::Stream>& streams,
             disseg::EventSink* events) {
  disseg::Stats stats(seg.info().class_names);
  std::vector<std::string> names;
  for (const auto& s : streams) names.push_back(disseg::describe(s.spec));
  stats.set_streams(names);
  disseg::Counters counts;
  std::exception_ptr failure;
  try {
    disseg::run_pipeline(seg, streams, a.opt, stats, stopping, counts);
  } catch (const disseg::BadInput&) {  // a source that cannot be opened: nothing ran, nothing to write
    throw;
  } catch (const std::exception&) {  // every sink is closed; the stats of what was produced follow, then the line
    failure = std::current_exception();
  }
  disseg::RunFacts facts{a.model,          seg.backend_name(), counts.skipped, counts.reconnects,
                         stop_signal != 0, counts.truncated,   counts.streams, std::nullopt};
  if (events) {
    events->close();
    facts.events = events->counts();
  }
  if (!a.stats_path.empty()) stats.write(a.stats_path, facts);
  char line[200];
  const std::string from = streams.size() > 1 ? " from " + std::to_string(streams.size()) + " streams" : "";
  std::snprintf(line, sizeof line, "%d frames%s in %.1f s (%.1f FPS), latency p50 %.1f ms", stats.frames(),
                from.c_str(), stats.wall_s(), stats.fps(), stats.total_p50_ms());
  std::ostream& out = a.events == "-" ? std::cerr : std::cout;  // standard output is the events' then
  out << line << (counts.skipped ? ", " + std::to_string(counts.skipped) + " skipped" : "")
      << (counts.reconnects ? ", " + std::to_string(counts.reconnects) + " reconnects" : "") << std::endl;
  if (failure) std::rethrow_exception(failure);
}

// --scene-tags as dis-run takes it: one comma list for every stream, or one per stream in order ("-": none).
std::vector<std::vector<float>> scene_tags_per_stream(const std::vector<std::string>& given, disseg::Segmenter& seg,
                                                      std::size_t n) {
  std::vector<std::vector<float>> tags;
  for (const auto& text : given) {
    if (text == "-") {
      tags.emplace_back();
      continue;
    }
    std::vector<std::string> names;
    std::stringstream items(text);
    for (std::string name; std::getline(items, name, ',');)
      if (!name.empty()) names.push_back(name);
    tags.push_back(disseg::scene_tag_vector(seg.info(), names));
    seg.set_scene_tags(tags.back());  // refuses a model exported without them, with the line dis-run gives
  }
  seg.set_scene_tags({});
  if (tags.empty() || tags.size() == n) return tags.empty() ? std::vector<std::vector<float>>(n) : tags;
  if (tags.size() == 1) return std::vector<std::vector<float>>(n, tags.front());
  throw disseg::BadInput(std::to_string(tags.size()) + " scene-tag sets for " + std::to_string(n) +
                         " source(s): give one for every source, or one per source in order ('-' for a source "
                         "without tags)");
}

int run(int argc, char** argv) {
  // From here a stop signal ends the run cleanly, even while the model loads (no signal is lost to a race).
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_stop_signal);
  Args a;
  if (const auto done = parse(argc, argv, a)) return *done;
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  ::setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", 0);  // FFmpeg's own "moov atom not found" and the like: our line says it
  const bool window = !a.no_display && display_available();
  if (!a.no_display && !window) std::cerr << "no display here; running headless (pass --no-display to silence this)\n";
  if (!window && a.output.empty() && a.masks.empty() && a.stats_path.empty() && a.events.empty())
    throw disseg::BadInput(
        "nothing to show or write: give --output FILE, --masks DIR, --stats FILE or --events FILE (or run with a "
        "display)");
  const std::vector<disseg::SourceSpec> specs = source_specs(a);
  const std::size_t n = specs.size();
  if (a.opt.loops > 1 && std::none_of(specs.begin(), specs.end(), [](const auto& s) { return s.replayable(); }))
    throw disseg::BadInput("--loop applies to video files, image folders and GStreamer pipelines that are files only");
  if (!a.stats_path.empty()) disseg::check_output(a.stats_path, "--stats");
  if (!a.events.empty() && a.events != "-") disseg::check_output(a.events, "--events");
  if (!a.masks.empty()) disseg::check_output(a.masks, "--masks", true);
  std::vector<std::unique_ptr<disseg::VideoSink>> videos(n);  // a --video file's own rate replaces 30 (run_pipeline)
  for (std::size_t i = 0; i < n && !a.output.empty(); ++i)
    videos[i] = std::make_unique<disseg::VideoSink>(stream_path(a.output, i, n, false), disseg::kDefaultFps);

  disseg::Segmenter seg(a.model, {a.backend, a.threads});
  const auto& info = seg.info();
  std::cerr << fs::path(a.model).filename().string() << ": " << info.precision << ", " << info.input_height << "x"
            << info.input_width << ", " << info.num_classes() << " classes, " << info.iterations
            << " refinement steps, " << seg.backend_name() << "\n";
  const std::vector<std::vector<float>> tags = scene_tags_per_stream(a.scene_tags, seg, n);
  std::unique_ptr<disseg::EventSink> events;
  if (!a.events.empty())
    events = std::make_unique<disseg::EventSink>(a.events, info.class_names, fs::path(a.model).filename().string(),
                                                 info.iterations, a.min_area);
  std::vector<std::unique_ptr<disseg::MaskSink>> masks(n);
  std::vector<std::unique_ptr<disseg::WindowSink>> windows(n);
  std::vector<disseg::Stream> streams;
  for (std::size_t i = 0; i < n; ++i) {
    if (!a.masks.empty()) masks[i] = std::make_unique<disseg::MaskSink>(stream_path(a.masks, i, n, true), info.palette);
    if (window)
      windows[i] = std::make_unique<disseg::WindowSink>("dis_run_cpp " + fs::path(a.model).filename().string() +
                                                        (n > 1 ? " s" + std::to_string(i) : ""));
    streams.push_back({specs[i], {videos[i].get(), masks[i].get(), windows[i].get(), events.get()}, tags[i]});
    if (n > 1) std::cerr << "s" << i << ": " << disseg::describe(specs[i]) << "\n";
  }
  segment(seg, a, streams, events.get());
  if (const int sig = stop_signal.load()) {
    std::cerr << "interrupted (" << (sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP") << ")\n";
    return disseg::kExitSignalBase + sig;
  }
  return disseg::kExitDone;
}

// The exit status, and the way out: std::_Exit once the outputs are final when a reader is still inside OpenCV (a
// server that never answered the stop), so no static destructor runs under its feet.
int leave(int status) {
  if (disseg::left_running_readers() > 0) {
    std::cout.flush();
    std::cerr.flush();
    std::_Exit(status);
  }
  return status;
}

int guarded(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const disseg::BadInput& err) {  // bad input or model file (a ModelFileError): one line, exit 2 (as dis-run)
    disseg::undo_made_folders();
    std::cerr << "error: " << err.what() << "\n";
    return disseg::kExitBadInput;
  } catch (const fs::filesystem_error& err) {  // a write the machine refused that no check caught first
    std::cerr << "failed: " << err.what() << "\n";
    return disseg::kExitFailed;
  } catch (const std::exception& err) {
    std::cerr << "failed: " << err.what() << "\n";
    return disseg::kExitFailed;
  }
}

}  // namespace

int main(int argc, char** argv) { return leave(guarded(argc, argv)); }
