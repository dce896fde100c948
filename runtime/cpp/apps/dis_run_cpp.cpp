// dis_run_cpp: the Python dis-run's job for C++ deployments: a camera, video, image folder or stream through
// libdisseg into a window, an MP4, label PNGs and a stats JSON. Bad input: one line, exit 2. Ctrl-C flushes.
// Sources, sinks, statistics and the threaded loop are libdisseg's I/O layer (include/disseg/io.hpp).
//
//   dis_run_cpp model.engine --video in.mp4 --output out.mp4
//   dis_run_cpp model.onnx --images 'photos/*.jpg' --masks masks/ --stats stats.json --no-display
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <opencv2/core/utils/logger.hpp>

#include "disseg/io.hpp"
#include "disseg/segmenter.hpp"

namespace fs = std::filesystem;

namespace {

std::atomic<bool> interrupted{false};  // Ctrl-C
std::atomic<bool> stopping{false};     // Ctrl-C, the window closed, a sink failed, or the frame limit reached
void on_sigint(int) {
  interrupted = true;
  stopping = true;
}

bool display_available() { return std::getenv("DISPLAY") || std::getenv("WAYLAND_DISPLAY"); }

int run(int argc, char** argv) {
  CLI::App app{"Segment a camera, video, image folder or stream with an exported DIS model (C++ runtime)."};
  std::string model, backend = "auto", output, masks, stats_path;
  disseg::SourceSpec src;
  disseg::PipelineOptions opt;
  bool no_legend = false, no_display = false;
  int threads = 0;
  app.add_option("model", model, "model.onnx or model.engine (with its .json sidecar)")->required();
  app.add_option("--camera", src.camera, "camera index (V4L2 /dev/videoN)")->check(CLI::NonNegativeNumber);
  app.add_option("--video", src.video, "video file, read frame by frame, nothing dropped");
  app.add_option("--images", src.images, "image folder or glob, e.g. 'photos/*.jpg'");
  app.add_option("--rtsp", src.rtsp, "RTSP/HTTP stream URL (reconnects when it drops)");
  app.add_option("--gst", src.gst, "raw GStreamer pipeline ending in appsink");
  app.add_option("--csi", src.csi, "Jetson CSI camera sensor id (nvarguscamerasrc)")->check(CLI::NonNegativeNumber);
  app.add_option("--max-reconnects", src.max_reconnects,
                 "a live source that drops is reopened this many times in a row")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backend", backend, "auto | onnxruntime | tensorrt")
      ->check(CLI::IsMember({"auto", "onnxruntime", "tensorrt"}));
  app.add_option("--output", output, "write the rendered view to this video file");
  app.add_option("--masks", masks, "write one palette PNG of labels per frame here");
  app.add_option("--stats", stats_path, "write latency/FPS/class-area JSON here");
  app.add_option("--view", opt.render.view, "overlay | mask | side-by-side")
      ->check(CLI::IsMember({"overlay", "mask", "side-by-side"}));
  app.add_option("--alpha", opt.render.alpha, "overlay opacity")->check(CLI::Range(0.0, 1.0));
  app.add_flag("--no-legend", no_legend, "no class legend");
  app.add_flag("--no-display", no_display, "no window (headless)");
  app.add_option("--max-frames", opt.max_frames, "stop after this many frames")->check(CLI::PositiveNumber);
  app.add_option("--loop", opt.loops, "play a video or image folder this many times")->check(CLI::PositiveNumber);
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
  opt.render.legend = !no_legend;
  const bool window = !no_display && display_available();
  if (!no_display && !window) std::cerr << "no display here; running headless (pass --no-display to silence this)\n";
  if (!window && output.empty() && masks.empty() && stats_path.empty())
    throw disseg::BadInput(
        "nothing to show or write: give --output FILE, --masks DIR or --stats FILE (or run with a display)");
  if (opt.loops > 1 && !src.file()) throw disseg::BadInput("--loop applies to --video and --images only");

  disseg::Segmenter seg(model, {backend, threads});
  const auto& info = seg.info();
  std::cerr << fs::path(model).filename().string() << ": " << info.precision << ", " << info.input_height << "x"
            << info.input_width << ", " << info.num_classes() << " classes, " << info.iterations
            << " refinement steps, " << seg.backend_name() << "\n";
  std::optional<disseg::VideoSink> video;
  if (!output.empty()) video.emplace(output, 30.0);  // a --video file's own rate replaces it (run_pipeline)
  std::optional<disseg::MaskSink> mask_sink;
  if (!masks.empty()) mask_sink.emplace(masks, info.palette);
  std::optional<disseg::WindowSink> shown;
  if (window) shown.emplace("dis_run_cpp " + fs::path(model).filename().string());
  const disseg::Sinks sinks{video ? &*video : nullptr, mask_sink ? &*mask_sink : nullptr, shown ? &*shown : nullptr};

  std::signal(SIGINT, on_sigint);
  disseg::Stats stats(info.class_names);
  const disseg::Counters counts = disseg::run_pipeline(seg, src, sinks, opt, stats, stopping);
  const disseg::RunFacts facts{model, seg.backend_name(), counts.skipped, counts.reconnects, interrupted.load()};
  if (!stats_path.empty()) stats.write(stats_path, facts);
  char line[200];
  std::snprintf(line, sizeof line, "%d frames in %.1f s (%.1f FPS), latency p50 %.1f ms", stats.frames(),
                stats.wall_s(), stats.fps(), stats.total_p50_ms());
  std::cout << line << (counts.skipped ? ", " + std::to_string(counts.skipped) + " skipped" : "")
            << (counts.reconnects ? ", " + std::to_string(counts.reconnects) + " reconnects" : "") << std::endl;
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
