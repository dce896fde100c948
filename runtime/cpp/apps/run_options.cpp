// dis_run_cpp's command line (run_options.hpp).
#include "run_options.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

namespace fs = std::filesystem;

namespace dis_run {

namespace {

// Ceilings of the numeric options, as the Python dis-run's (runtime/cli_util.py).
constexpr int kMaxCount = 1000000;
const CLI::Validator kFinite(
    [](std::string& text) {
      const double v = std::strtod(text.c_str(), nullptr);
      return std::isfinite(v) ? std::string() : "'" + text + "' is not a finite number";
    },
    "FINITE");

}  // namespace

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

std::vector<disseg::SourceSpec> source_specs(const Args& a) {
  std::vector<std::string> uris = a.uris;
  if (!a.streams_file.empty())
    for (auto& uri : disseg::read_streams(a.streams_file)) uris.push_back(uri);
  std::vector<disseg::SourceSpec> specs;
  for (const auto& uri : uris) specs.push_back(disseg::parse_source_uri(uri));
  const SourceFlags& f = a.src;
  if (f.camera) specs.emplace_back(disseg::Camera{*f.camera});
  if (f.video) specs.emplace_back(disseg::VideoFile{*f.video});
  if (f.images) specs.emplace_back(disseg::ImageFiles{*f.images});
  if (f.rtsp) specs.emplace_back(disseg::StreamUrl{*f.rtsp});
  if (f.gst) specs.emplace_back(disseg::GstPipeline{*f.gst});
  if (f.csi) specs.emplace_back(disseg::CsiCamera{*f.csi});
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

std::string stream_path(const std::string& path, std::size_t index, std::size_t count, bool folder) {
  if (path.empty() || count == 1) return path;
  const fs::path p(path);
  const std::string tag = "s" + std::to_string(index);
  return folder ? (p / tag).string()
                : (p.parent_path() / (p.stem().string() + "." + tag + p.extension().string())).string();
}

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

void check_outputs(const Args& a, bool window, const std::vector<disseg::SourceSpec>& specs) {
  if (!window && a.output.empty() && a.masks.empty() && a.stats_path.empty() && a.events.empty())
    throw disseg::BadInput(
        "nothing to show or write: give --output FILE, --masks DIR, --stats FILE or --events FILE (or run with a "
        "display)");
  if (a.opt.loops > 1 && std::none_of(specs.begin(), specs.end(), [](const auto& s) { return s.replayable(); }))
    throw disseg::BadInput("--loop applies to video files, image folders and GStreamer pipelines that are files only");
  if (!a.stats_path.empty()) disseg::check_output(a.stats_path, "--stats");
  if (!a.events.empty() && a.events != "-") disseg::check_output(a.events, "--events");
  if (!a.masks.empty()) disseg::check_output(a.masks, "--masks", true);
}

Outputs open_videos(const Args& a, std::size_t n) {
  Outputs out;
  out.videos.resize(n);
  out.masks.resize(n);
  out.windows.resize(n);
  for (std::size_t i = 0; i < n && !a.output.empty(); ++i)
    out.videos[i] = std::make_unique<disseg::VideoSink>(stream_path(a.output, i, n, false), disseg::kDefaultFps);
  return out;
}

std::vector<disseg::Stream> attach(Outputs& out, const Args& a, const disseg::Segmenter& seg,
                                   const std::vector<disseg::SourceSpec>& specs,
                                   const std::vector<std::vector<float>>& tags, bool window) {
  const auto& info = seg.info();
  const std::string name = fs::path(a.model).filename().string();
  if (!a.events.empty())
    out.events = std::make_unique<disseg::EventSink>(a.events, info.class_names, name, info.iterations, a.min_area);
  const std::size_t n = specs.size();
  std::vector<disseg::Stream> streams;
  for (std::size_t i = 0; i < n; ++i) {
    if (!a.masks.empty())
      out.masks[i] = std::make_unique<disseg::MaskSink>(stream_path(a.masks, i, n, true), info.palette);
    if (window)
      out.windows[i] =
          std::make_unique<disseg::WindowSink>("dis_run_cpp " + name + (n > 1 ? " s" + std::to_string(i) : ""));
    const disseg::Sinks sinks{out.videos[i].get(), out.masks[i].get(), out.windows[i].get(), out.events.get()};
    streams.push_back({specs[i], sinks, tags[i]});
    if (n > 1) std::cerr << "s" << i << ": " << disseg::describe(specs[i]) << "\n";
  }
  return streams;
}

}  // namespace dis_run
