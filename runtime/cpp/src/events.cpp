// One JSON line per segmented frame and appeared/gone records when a class crosses the area threshold:
// runtime/events.py's Events and JsonLines in C++ (tests/events_keys.json holds both to one key list).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "disseg/io.hpp"

namespace disseg {

namespace {

// Half away from zero, as runtime/events.py's rounded(): the two runtimes write the same digits.
double rounded(double value, double scale) { return std::floor(value * scale + 0.5) / scale; }

// Seconds since the epoch when `captured` (the steady clock) was, to the millisecond.
double captured_epoch(Clock::time_point captured) {
  const auto since = std::chrono::duration<double>(Clock::now() - captured).count();
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return rounded(now - since, 1000.0);
}

// Pixels per class of a label map (CV_8U, or CV_32S above 256 classes); labels past the classes are not counted.
std::vector<double> class_counts(const cv::Mat& labels, std::size_t classes) {
  std::vector<double> counts(classes, 0.0);
  for (int y = 0; y < labels.rows; ++y) {
    for (int x = 0; x < labels.cols; ++x) {
      const int c = labels.type() == CV_8U ? labels.at<std::uint8_t>(y, x) : labels.at<std::int32_t>(y, x);
      if (c >= 0 && static_cast<std::size_t>(c) < classes) counts[static_cast<std::size_t>(c)] += 1;
    }
  }
  return counts;
}

}  // namespace

struct EventSink::Impl {
  std::string path;
  std::ofstream file;
  std::ostream* out = nullptr;
  std::vector<std::string> classes;
  std::string model;
  int iterations = 0;
  double min_area = kDefaultMinArea;
  std::map<int, std::set<std::size_t>> present;  // stream -> classes at or above the threshold
  std::map<std::string, int> counts{{"frame", 0}, {"appeared", 0}, {"gone", 0}};
  std::mutex lock;

  void put(const nlohmann::ordered_json& record) {
    *out << record.dump() << '\n';
    out->flush();
    if (!*out)
      throw WriteFailed("--events " + path +
                        ": cannot write (disk full or read-only?); free space or "
                        "choose another path");
    ++counts[record["type"].get<std::string>()];
  }
};

EventSink::EventSink(const std::string& path, std::vector<std::string> class_names, std::string model, int iterations,
                     double min_area)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.path = path;
  if (path == "-") {
    s.out = &std::cout;
  } else {
    check_output(path, "--events");
    s.file.open(path, std::ios::out | std::ios::trunc);
    if (!s.file) throw BadInput("--events " + path + ": cannot open it for writing; choose another path");
    s.out = &s.file;
  }
  s.classes = std::move(class_names);
  s.model = std::move(model);
  s.iterations = iterations;
  s.min_area = min_area;
}

EventSink::~EventSink() = default;

void EventSink::write(int stream, const std::string& source, const Frame& frame, const Result& result,
                      const std::vector<float>& scene_tags) {
  Impl& s = *impl_;
  const std::vector<double> counts = class_counts(result.labels, s.classes.size());
  const double total = std::max(1.0, static_cast<double>(result.labels.total()));
  nlohmann::ordered_json head = {{"stream", stream},     {"source", source},
                                 {"frame", frame.index}, {"captured", captured_epoch(frame.captured)},
                                 {"model", s.model},     {"iterations", s.iterations}};
  nlohmann::ordered_json areas = nlohmann::ordered_json::object();
  std::set<std::size_t> now;
  for (std::size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] <= 0) continue;
    const double share = rounded(counts[c] / total, 1e6);
    areas[s.classes[c]] = share;
    if (share >= s.min_area) now.insert(c);
  }
  nlohmann::ordered_json tags = nullptr;
  if (!scene_tags.empty()) {
    tags = nlohmann::ordered_json::object();
    for (std::size_t c = 0; c < scene_tags.size() && c < s.classes.size(); ++c)
      if (scene_tags[c] > 0) tags[s.classes[c]] = rounded(scene_tags[c], 1e6);
  }
  std::lock_guard<std::mutex> guard(s.lock);
  nlohmann::ordered_json record = {{"type", "frame"}};
  record.update(head);
  record["areas"] = areas;
  record["scene_tags"] = tags;
  s.put(record);
  std::set<std::size_t>& before = s.present[stream];
  for (const char* kind : {"appeared", "gone"}) {
    const bool appeared = kind[0] == 'a';
    for (std::size_t c = 0; c < s.classes.size(); ++c) {
      if ((appeared ? now.count(c) && !before.count(c) : before.count(c) && !now.count(c)) == 0) continue;
      nlohmann::ordered_json crossing = {{"type", kind}};
      crossing.update(head);
      crossing["class"] = s.classes[c];
      crossing["area"] = areas.contains(s.classes[c]) ? areas[s.classes[c]].get<double>() : 0.0;
      s.put(crossing);
    }
  }
  before = now;
}

std::map<std::string, int> EventSink::counts() const {
  std::lock_guard<std::mutex> guard(impl_->lock);
  return impl_->counts;
}

void EventSink::close() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> guard(s.lock);
  s.out->flush();
  if (s.file.is_open()) s.file.close();
}

}  // namespace disseg
