// dis_run_cpp: the Python dis-run's job for C++ deployments: a camera, video, image folder or stream through
// libdisseg into a window, an MP4, label PNGs, event lines and a stats JSON. Bad input: one line, exit 2. Ctrl-C
// flushes. Sources, sinks, statistics and the threaded loop are libdisseg's I/O layer (include/disseg/io.hpp); the
// command line is run_options.hpp's.
//
//   dis_run_cpp model.engine --video in.mp4 --output out.mp4
//   dis_run_cpp model.onnx --images 'photos/*.jpg' --masks masks/ --stats stats.json --no-display
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <opencv2/core/utils/logger.hpp>

#include "disseg/io.hpp"
#include "disseg/segmenter.hpp"
#include "run_options.hpp"

namespace fs = std::filesystem;

namespace {

using dis_run::Args;

std::atomic<int> stop_signal{0};    // SIGINT, SIGTERM or SIGHUP: finish cleanly, exit 128 + the signal
std::atomic<bool> stopping{false};  // a stop signal, the window closed, a sink failed, or the frame limit reached
void on_stop_signal(int sig) {
  int none = 0;
  stop_signal.compare_exchange_strong(none, sig);
  stopping = true;
}

bool display_available() { return std::getenv("DISPLAY") || std::getenv("WAYLAND_DISPLAY"); }

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

int run(int argc, char** argv) {
  // From here a stop signal ends the run cleanly, even while the model loads (no signal is lost to a race).
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_stop_signal);
  Args a;
  if (const auto done = dis_run::parse(argc, argv, a)) return *done;
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  ::setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", 0);  // FFmpeg's own "moov atom not found" and the like: our line says it
  const bool window = !a.no_display && display_available();
  if (!a.no_display && !window) std::cerr << "no display here; running headless (pass --no-display to silence this)\n";
  const std::vector<disseg::SourceSpec> specs = dis_run::source_specs(a);
  dis_run::check_outputs(a, window, specs);
  dis_run::Outputs outputs = dis_run::open_videos(a, specs.size());  // before the model loads: a bad path is quick

  disseg::Segmenter seg(a.model, {a.backend, a.threads});
  const auto& info = seg.info();
  std::cerr << fs::path(a.model).filename().string() << ": " << info.precision << ", " << info.input_height << "x"
            << info.input_width << ", " << info.num_classes() << " classes, " << info.iterations
            << " refinement steps, " << seg.backend_name() << "\n";
  const auto tags = dis_run::scene_tags_per_stream(a.scene_tags, seg, specs.size());
  const std::vector<disseg::Stream> streams = dis_run::attach(outputs, a, seg, specs, tags, window);
  segment(seg, a, streams, outputs.events.get());
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
