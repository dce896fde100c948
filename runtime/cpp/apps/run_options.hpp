// dis_run_cpp's command line: its options (as the Python dis-run's), the sources they name and the rules for each
// stream's outputs. The app (dis_run_cpp.cpp) runs what these describe.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "disseg/io.hpp"
#include "disseg/segmenter.hpp"

namespace dis_run {

// The one-source flags as given (several may be: each is a stream of its own, after --source and --streams).
struct SourceFlags {
  std::optional<int> camera, csi;
  std::optional<std::string> video, images, rtsp, gst;
  int max_reconnects = disseg::kDefaultMaxReconnects;
};

struct Args {
  std::string model, backend = "auto", output, masks, stats_path, streams_file, events;
  double min_area = disseg::kDefaultMinArea;
  std::vector<std::string> uris, scene_tags;
  SourceFlags src;
  disseg::PipelineOptions opt;
  bool no_legend = false, no_display = false;
  int threads = 0;
};

// Reads the command line into `a`; an exit status when the command ends here (help, a bad option: one line, 2).
std::optional<int> parse(int argc, char** argv, Args& a);

// Every source asked for, in dis-run's order: --source URIs, the --streams file's, then the one-source flags.
std::vector<disseg::SourceSpec> source_specs(const Args& a);

// One stream's output: as given for one source; with several, out.mp4 -> out.s0.mp4 and masks/ -> masks/s0 (dis-run's
// rule).
std::string stream_path(const std::string& path, std::size_t index, std::size_t count, bool folder);

// --scene-tags as dis-run takes it: one comma list for every stream, or one per stream in order ("-": none).
std::vector<std::vector<float>> scene_tags_per_stream(const std::vector<std::string>& given, disseg::Segmenter& seg,
                                                      std::size_t n);

// What the options ask of the run before anything opens: something to show or write, --loop over a replayable source,
// outputs that can be written. BadInput (one line) otherwise.
void check_outputs(const Args& a, bool window, const std::vector<disseg::SourceSpec>& specs);

// Each stream's sinks, opened as dis-run opens them: the videos before the model loads, the masks, windows and event
// lines once its classes are known (attach).
struct Outputs {
  std::vector<std::unique_ptr<disseg::VideoSink>> videos;  // a --video file's own rate replaces 30 (run_pipeline)
  std::vector<std::unique_ptr<disseg::MaskSink>> masks;
  std::vector<std::unique_ptr<disseg::WindowSink>> windows;
  std::unique_ptr<disseg::EventSink> events;  // one for every stream
};
Outputs open_videos(const Args& a, std::size_t n);
std::vector<disseg::Stream> attach(Outputs& out, const Args& a, const disseg::Segmenter& seg,
                                   const std::vector<disseg::SourceSpec>& specs,
                                   const std::vector<std::vector<float>>& tags, bool window);

}  // namespace dis_run
