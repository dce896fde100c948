// Run statistics for the I/O layer (include/disseg/io.hpp): runtime/pipeline.py's Stats in C++.
#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "disseg/io.hpp"

namespace fs = std::filesystem;

namespace disseg {
namespace {

// The last `Stats::window` values, for percentiles: a camera that runs for days must not grow.
class Window {
 public:
  void add(double v) {
    if (values_.size() == Stats::window) values_.pop_front();
    values_.push_back(v);
  }
  std::vector<double> values() const { return {values_.begin(), values_.end()}; }
  std::vector<double> last(std::size_t n) const { return {values_.end() - std::min(n, values_.size()), values_.end()}; }

 private:
  std::deque<double> values_;
};

nlohmann::json percentiles(std::vector<double> v) {
  if (v.empty()) return nlohmann::json::object();
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {  // linear interpolation, as numpy.percentile
    const double pos = q * (v.size() - 1);
    const auto lo = static_cast<std::size_t>(pos);
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  };
  double sum = 0;
  for (double x : v) sum += x;
  return {{"mean", sum / v.size()}, {"p50", at(0.5)}, {"p90", at(0.9)}, {"p99", at(0.99)}};
}

double rss_mb() {  // resident memory, from /proc (Linux, Jetson)
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1e6;
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct StreamStats {
  std::string name;
  int frames = 0;
  Window frame_age;
};

nlohmann::json truncation(const std::optional<Truncation>& t) {
  if (!t) return nullptr;
  return {{"frames_read", t->frames_read}, {"frames_declared", t->frames_declared}};
}

// Per stream: the same keys as the Python runtime's (tests/stats_keys.json "stream_keys").
nlohmann::json streams_json(const std::vector<StreamStats>& streams, const RunFacts& facts, double wall) {
  nlohmann::json list = nlohmann::json::array();
  for (std::size_t i = 0; i < streams.size(); ++i) {
    const StreamFacts one{facts.skipped, facts.reconnects, facts.truncated};
    const StreamFacts& f = i < facts.streams.size() ? facts.streams[i] : one;
    list.push_back({{"source", streams[i].name},
                    {"frames", streams[i].frames},
                    {"fps", wall > 0 ? streams[i].frames / wall : 0.0},
                    {"skipped", f.skipped},
                    {"reconnects", f.reconnects},
                    {"frame_age_ms", percentiles(streams[i].frame_age.values())},
                    {"truncated", truncation(f.truncated)}});
  }
  return list;
}

}  // namespace

const std::vector<std::string>& stats_keys() {
  static const std::vector<std::string> keys{"frames",
                                             "wall_s",
                                             "fps",
                                             "latency_ms",
                                             "frame_age_ms",
                                             "first_1000_total_ms",
                                             "last_1000_total_ms",
                                             "percentiles_over_last_frames",
                                             "rss_mb",
                                             "class_area",
                                             "model",
                                             "backend",
                                             "runtime",
                                             "skipped",
                                             "reconnects",
                                             "interrupted",
                                             "truncated",
                                             "streams",
                                             "batches"};
  return keys;
}

struct Stats::Impl {
  std::vector<std::string> class_names;
  Window pre, infer, post, total, frame_age;
  std::vector<double> first_totals, rss_samples, class_pixels;
  Clock::time_point started = Clock::now();
  int frames = 0;
  std::vector<StreamStats> streams = std::vector<StreamStats>(1);
  std::map<int, int> batches;  // batch size -> how many ran
};

Stats::Stats(std::vector<std::string> class_names) : impl_(std::make_unique<Impl>()) {
  impl_->class_pixels.assign(class_names.size(), 0.0);
  impl_->class_names = std::move(class_names);
}
Stats::~Stats() = default;
Stats::Stats(Stats&&) noexcept = default;

void Stats::set_streams(std::vector<std::string> names) {
  impl_->streams.assign(names.size(), {});
  for (std::size_t i = 0; i < names.size(); ++i) impl_->streams[i].name = std::move(names[i]);
}

void Stats::add_batches(const std::vector<int>& sizes) {
  for (int size : sizes) ++impl_->batches[size];
}

void Stats::add(const Frame& frame, const Result& r, Clock::time_point started, int stream) {
  Impl& s = *impl_;
  const double total_ms = ms_between(started, Clock::now());
  s.total.add(total_ms);
  if (s.first_totals.size() < 1000) s.first_totals.push_back(total_ms);
  s.frame_age.add(ms_between(frame.captured, started));
  if (stream >= 0 && stream < static_cast<int>(s.streams.size())) {
    ++s.streams[stream].frames;
    s.streams[stream].frame_age.add(ms_between(frame.captured, started));
  }
  if (s.frames % 1000 == 0) s.rss_samples.push_back(rss_mb());
  s.pre.add(r.timings.preprocess_ms);
  s.infer.add(r.timings.infer_ms);
  s.post.add(r.timings.postprocess_ms);
  ++s.frames;
  if (r.labels.type() != CV_8U) return;
  const int bins = 256;
  const float range[] = {0, 256};
  const float* ranges[] = {range};
  cv::Mat hist;
  cv::calcHist(&r.labels, 1, nullptr, cv::Mat(), hist, 1, &bins, ranges);
  for (std::size_t c = 0; c < s.class_pixels.size() && c < 256; ++c)
    s.class_pixels[c] += hist.at<float>(static_cast<int>(c));
}

int Stats::frames() const { return impl_->frames; }

double Stats::wall_s() const { return std::chrono::duration<double>(Clock::now() - impl_->started).count(); }

double Stats::fps() const {
  const double wall = wall_s();
  return wall > 0 ? impl_->frames / wall : 0.0;
}

double Stats::total_p50_ms() const { return percentiles(impl_->total.values()).value("p50", 0.0); }

std::string Stats::json(const RunFacts& facts) const {
  const Impl& s = *impl_;
  const double wall = std::chrono::duration<double>(Clock::now() - s.started).count();
  double pixels = 0;
  for (double p : s.class_pixels) pixels += p;
  nlohmann::json area = nlohmann::json::object();
  for (std::size_t c = 0; c < s.class_names.size(); ++c)
    area[s.class_names[c]] = pixels > 0 ? s.class_pixels[c] / pixels : 0.0;
  nlohmann::json batches = nlohmann::json::object();
  for (const auto& [size, n] : s.batches) batches[std::to_string(size)] = n;
  const nlohmann::json summary = {
      {"frames", s.frames},
      {"wall_s", wall},
      {"fps", wall > 0 ? s.frames / wall : 0.0},
      {"latency_ms",
       {{"preprocess_ms", percentiles(s.pre.values())},
        {"infer_ms", percentiles(s.infer.values())},
        {"postprocess_ms", percentiles(s.post.values())},
        {"total_ms", percentiles(s.total.values())}}},
      {"frame_age_ms", percentiles(s.frame_age.values())},
      {"first_1000_total_ms", percentiles(s.first_totals)},
      {"last_1000_total_ms", percentiles(s.total.last(1000))},
      {"percentiles_over_last_frames", std::min<std::size_t>(s.frames, window)},
      {"rss_mb",
       {{"start", s.rss_samples.empty() ? nlohmann::json() : nlohmann::json(s.rss_samples.front())},
        {"end", rss_mb()},
        {"samples_every_1000_frames", s.rss_samples}}},
      {"class_area", area},
      {"model", facts.model},
      {"backend", facts.backend},
      {"runtime", "c++"},
      {"skipped", facts.skipped},
      {"reconnects", facts.reconnects},
      {"interrupted", facts.interrupted},
      {"truncated", truncation(facts.truncated)},
      {"streams", streams_json(s.streams, facts, wall)},
      {"batches", batches}};
  nlohmann::json out = summary;
  if (facts.events) out["events"] = *facts.events;  // an optional key (tests/stats_keys.json)
  return out.dump(2) + "\n";
}

void Stats::write(const std::string& path, const RunFacts& facts) const {
  const std::string text = json(facts);
  atomic_write(path, [&](const std::string& tmp) {
    std::ofstream out(tmp);
    out << text;
    out.flush();
    return static_cast<bool>(out);
  });
}

}  // namespace disseg
