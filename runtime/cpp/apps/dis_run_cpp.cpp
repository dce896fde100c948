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
  std::string model, backend = "auto", output, masks, stats_path;
  disseg::SourceSpec src;
  disseg::PipelineOptions opt;
  bool no_legend = false, no_display = false;
  int threads = 0;
};

// Reads the command line into `a`; an exit status when the command ends here (help, a bad option: one line, 2).
std::optional<int> parse(int argc, char** argv, Args& a) {
  CLI::App app{"Segment a camera, video, image folder or stream with an exported DIS model (C++ runtime)."};
  app.add_option("model", a.model, "model.onnx or model.engine (with its .json sidecar)")->required();
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
  app.add_option("--output", a.output, "write the rendered view to this video file");
  app.add_option("--masks", a.masks, "write one palette PNG of labels per frame here");
  app.add_option("--stats", a.stats_path, "write latency/FPS/class-area JSON here");
  app.add_option("--view", a.opt.render.view, "overlay | mask | side-by-side")
      ->check(CLI::IsMember({"overlay", "mask", "side-by-side"}));
  app.add_option("--alpha", a.opt.render.alpha, "overlay opacity")->check(kFinite & CLI::Range(0.0, 1.0));
  app.add_flag("--no-legend", a.no_legend, "no class legend");
  app.add_flag("--no-display", a.no_display, "no window (headless)");
  app.add_option("--max-frames", a.opt.max_frames, "stop after this many frames")->check(CLI::PositiveNumber);
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
    return 2;
  }
  a.opt.render.legend = !a.no_legend;
  return std::nullopt;
}

// Runs the pipeline into the sinks and writes the stats, also after a failed write (rethrown afterwards).
void segment(disseg::Segmenter& seg, const Args& a, const disseg::Sinks& sinks) {
  disseg::Stats stats(seg.info().class_names);
  disseg::Counters counts;
  std::optional<disseg::WriteFailed> failure;
  try {
    disseg::run_pipeline(seg, a.src, sinks, a.opt, stats, stopping, counts);
  } catch (const disseg::WriteFailed& err) {  // the other sinks are closed; the stats of what was produced follow
    failure = err;
  }
  const disseg::RunFacts facts{a.model,           seg.backend_name(), counts.skipped,
                               counts.reconnects, stop_signal != 0,   counts.truncated};
  if (!a.stats_path.empty()) stats.write(a.stats_path, facts);
  char line[200];
  std::snprintf(line, sizeof line, "%d frames in %.1f s (%.1f FPS), latency p50 %.1f ms", stats.frames(),
                stats.wall_s(), stats.fps(), stats.total_p50_ms());
  std::cout << line << (counts.skipped ? ", " + std::to_string(counts.skipped) + " skipped" : "")
            << (counts.reconnects ? ", " + std::to_string(counts.reconnects) + " reconnects" : "") << std::endl;
  if (failure) throw *failure;
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
  if (!window && a.output.empty() && a.masks.empty() && a.stats_path.empty())
    throw disseg::BadInput(
        "nothing to show or write: give --output FILE, --masks DIR or --stats FILE (or run with a display)");
  if (a.opt.loops > 1 && !a.src.file()) throw disseg::BadInput("--loop applies to --video and --images only");
  if (!a.stats_path.empty()) disseg::check_output(a.stats_path, "--stats");
  std::optional<disseg::VideoSink> video;
  if (!a.output.empty()) video.emplace(a.output, 30.0);  // a --video file's own rate replaces it (run_pipeline)

  disseg::Segmenter seg(a.model, {a.backend, a.threads});
  const auto& info = seg.info();
  std::cerr << fs::path(a.model).filename().string() << ": " << info.precision << ", " << info.input_height << "x"
            << info.input_width << ", " << info.num_classes() << " classes, " << info.iterations
            << " refinement steps, " << seg.backend_name() << "\n";
  std::optional<disseg::MaskSink> mask_sink;
  if (!a.masks.empty()) mask_sink.emplace(a.masks, info.palette);
  std::optional<disseg::WindowSink> shown;
  if (window) shown.emplace("dis_run_cpp " + fs::path(a.model).filename().string());
  segment(seg, a, {video ? &*video : nullptr, mask_sink ? &*mask_sink : nullptr, shown ? &*shown : nullptr});
  if (const int sig = stop_signal.load()) {
    std::cerr << "interrupted (" << (sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP") << ")\n";
    return 128 + sig;
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
  } catch (const fs::filesystem_error& err) {  // a write the machine refused that no check caught first
    std::cerr << "failed: " << err.what() << "\n";
    return 1;
  } catch (const std::exception& err) {
    std::cerr << "failed: " << err.what() << "\n";
    return 1;
  }
}
