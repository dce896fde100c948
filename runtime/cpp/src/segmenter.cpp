// Segmenter: contract -> backend; frames -> model input -> labels at the frame's size (runtime/segmenter.py).
#include "disseg/segmenter.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <opencv2/imgproc.hpp>

#include "backend.hpp"
#include "util.hpp"

namespace disseg {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void check_runnable(const ModelInfo& info, const std::string& path) {
  if (info.input_layout != kInputLayout || info.input_dtype != kInputDtype || info.color_order != kColorOrder)
    throw ModelFileError(path + ": input is " + info.input_layout + " " + info.input_dtype + " " + info.color_order +
                         ", this runtime feeds NHWC uint8 BGR; re-export it with dis-export");
}

std::unique_ptr<Backend> open_backend(const std::string& path, const ModelInfo& info, const Options& options) {
  const std::string& kind = options.backend;
  if (kind != "auto" && kind != "onnxruntime" && kind != "tensorrt")
    throw BadInput("unknown backend '" + kind + "'; choose from auto, onnxruntime, tensorrt");
  const bool is_onnx = ends_with(path, ".onnx");
  if (!is_onnx) {  // an engine: it must fit this TensorRT and GPU exactly
    if (kind == "onnxruntime")
      throw BadInput(path + " is a TensorRT engine; ONNX Runtime needs the .onnx it was built from");
#ifdef DISSEG_WITH_TENSORRT
    if (auto why = engine_mismatch(info, tensorrt_facts()))
      throw ModelFileError(*why + ". Rebuild: dis-export MODEL.onnx --engine");
    return make_tensorrt_backend(path, info);
#else
    throw BadInput(
        path +
        " is a TensorRT engine but this libdisseg was built without TensorRT; rebuild it with -DTENSORRT_ROOT=... "
        "or run the .onnx on the onnxruntime backend");
#endif
  }
  if (kind == "tensorrt")
    throw BadInput(path + ": the C++ TensorRT backend runs engines; build one with dis-export " + path +
                   " --engine and pass the .engine");
#ifdef DISSEG_WITH_ONNXRUNTIME
  return make_onnxruntime_backend(path, info, options.threads);
#else
  (void)info;
  throw BadInput(path +
                 ": this libdisseg was built without ONNX Runtime; rebuild it with -DONNXRUNTIME_ROOT=... or pass a "
                 "TensorRT engine");
#endif
}

}  // namespace

std::vector<std::string> available_backends() {
  std::vector<std::string> names;
#ifdef DISSEG_WITH_ONNXRUNTIME
  names.push_back("onnxruntime");
#endif
#ifdef DISSEG_WITH_TENSORRT
  names.push_back("tensorrt");
#endif
  return names;
}

Segmenter::Segmenter(const std::string& model, const Options& options)
    : info_(read_model_info(model)), model_(std::filesystem::path(model).filename().string()) {
  check_runnable(info_, model);
  backend_ = open_backend(model, info_, options);
  const int channels = ends_with(model, ".onnx") ? label_channels(model) : 0;  // labels show no count in their shape
  if (channels > 0 && channels != info_.num_classes())
    throw class_count_mismatch(model, kLabels, channels, info_.num_classes());
  palette_bgr_.create(info_.num_classes(), 1, CV_8UC3);
  for (int c = 0; c < info_.num_classes(); ++c) {
    const auto& rgb = info_.palette[c];
    palette_bgr_.at<cv::Vec3b>(c) = cv::Vec3b(rgb[2], rgb[1], rgb[0]);
  }
}

Segmenter::~Segmenter() = default;
Segmenter::Segmenter(Segmenter&&) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&&) noexcept = default;

std::string Segmenter::backend_name() const { return backend_->name(); }

Result Segmenter::segment(const cv::Mat& frame) { return std::move(segment_batch({frame}).front()); }

namespace {

std::string class_list(const ModelInfo& info) {
  std::string text;
  for (const auto& name : info.class_names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

void check_tags(const ModelInfo& info, const std::vector<float>& tags) {
  if (info.scene_tags.empty())
    throw BadInput(
        "the model was exported without scene tags, so it cannot take them; export it with: dis-export "
        "CKPT --scene-tags (an imported model: dis-import FOREIGN.onnx --scene-tags)");
  const bool in_range = std::all_of(tags.begin(), tags.end(), [](float v) { return v >= 0.0f && v <= 1.0f; });
  if (static_cast<int>(tags.size()) != info.num_classes() || !in_range)
    throw BadInput("scene tags: expected " + std::to_string(info.num_classes()) +
                   " values in 0..1 (one per class: " + class_list(info) + "), got " + std::to_string(tags.size()) +
                   " value(s)" + (in_range ? "" : " outside 0..1"));
}

}  // namespace

std::vector<float> scene_tag_vector(const ModelInfo& info, const std::vector<std::string>& names) {
  const auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  };
  std::vector<float> tags(info.class_names.size(), 0.0f);
  bool any = false;
  for (const auto& given : names) {  // as runtime/scene_tags.py: trimmed, an exact match first, then ignoring case
    const std::size_t first = given.find_first_not_of(" \t"), last = given.find_last_not_of(" \t");
    if (first == std::string::npos) continue;
    const std::string name = given.substr(first, last - first + 1);
    auto found = std::find(info.class_names.begin(), info.class_names.end(), name);
    if (found == info.class_names.end())
      found = std::find_if(info.class_names.begin(), info.class_names.end(),
                           [&](const std::string& c) { return lower(c) == lower(name); });
    if (found == info.class_names.end())
      throw BadInput("scene tags: unknown class '" + name + "'; the model's classes are: " + class_list(info));
    tags[found - info.class_names.begin()] = 1.0f;
    any = true;
  }
  if (!any) throw BadInput("scene tags: no class named; name some of the model's classes: " + class_list(info));
  for (std::size_t i = 0; i < tags.size(); ++i)
    if (lower(info.class_names[i]) == "background") tags[i] = 1.0f;
  return tags;
}

void Segmenter::set_scene_tags(const std::vector<float>& tags) {
  if (!tags.empty()) check_tags(info_, tags);
  scene_tags_ = tags;
}

std::vector<Result> Segmenter::segment_batch(const std::vector<cv::Mat>& frames) { return segment_batch(frames, {}); }

std::vector<Result> Segmenter::segment_batch(const std::vector<cv::Mat>& frames,
                                             const std::vector<std::vector<float>>& scene_tags) {
  if (frames.empty()) return {};
  if (!scene_tags.empty() && scene_tags.size() != frames.size())
    throw BadInput("scene tags: " + std::to_string(scene_tags.size()) + " entries for " +
                   std::to_string(frames.size()) + " frames; give one per frame");
  const int h = info_.input_height, w = info_.input_width;
  const std::size_t image_bytes = static_cast<std::size_t>(h) * w * 3;
  const auto t0 = Clock::now();
  std::vector<cv::Size> sizes;
  std::vector<cv::Rect> boxes;
  const int n = static_cast<int>(frames.size());
  const int fixed = backend_->batch(), most = backend_->max_batch();
  const int step =
      fixed ? fixed : (most ? std::min(n, most) : n);  // a dynamic batch runs as given, in chunks of its maximum
  const int padded = fixed ? (n + step - 1) / step * step : n;
  std::vector<std::uint8_t> batch(image_bytes * padded);
  for (int i = 0; i < n; ++i) {
    cv::Mat bgr = to_bgr8(frames[i], "frame " + std::to_string(i));
    sizes.push_back(bgr.size());
    cv::Mat dst(h, w, CV_8UC3, batch.data() + image_bytes * i);
    boxes.emplace_back();
    cv::Mat fitted = fit_to(bgr, h, w, info_.resize, boxes.back());
    fitted.copyTo(dst);
  }
  for (int i = n; i < padded; ++i)  // a fixed batch is filled with the last frame
    std::memcpy(batch.data() + image_bytes * i, batch.data() + image_bytes * (n - 1), image_bytes);
  const std::vector<float> tags = tag_rows(scene_tags, padded);
  const std::size_t k = info_.class_names.size();
  const auto t1 = Clock::now();
  BackendOutputs merged;
  for (int i = 0; i < padded; i += step) {
    const float* tag_rows_here = tags.empty() ? nullptr : tags.data() + k * i;
    BackendOutputs part = backend_->infer(batch.data() + image_bytes * i, tag_rows_here, std::min(step, padded - i));
    merged.labels.insert(merged.labels.end(), part.labels.begin(), part.labels.end());
    merged.tags.insert(merged.tags.end(), part.tags.begin(), part.tags.end());
  }
  const auto t2 = Clock::now();
  std::vector<Result> results(n);
  for (int i = 0; i < n; ++i) {  // a model that lies about its classes stops here, before any palette is indexed
    double low = 0, high = 0;
    cv::minMaxLoc(merged.labels[i], &low, &high);
    if (low < 0 || high >= static_cast<double>(k))
      throw Error(model_ + ": the model produced class " + std::to_string(static_cast<long long>(high)) +
                  " but its metadata names " + std::to_string(k) + " classes (0.." + std::to_string(k - 1) +
                  "); the file is inconsistent: re-export or re-import it");
    results[i].labels = labels_back(merged.labels[i], boxes[i], sizes[i].height, sizes[i].width);
    if (!merged.tags.empty()) results[i].tags = merged.tags[i];
  }
  const auto t3 = Clock::now();
  for (auto& r : results) r.timings = {ms_between(t0, t1) / n, ms_between(t1, t2) / n, ms_between(t2, t3) / n};
  return results;
}

// The scene_tags input for `padded` rows (frames, then copies of the last): each frame's own tags, else the
// Segmenter's, else all ones; empty when the model takes none.
std::vector<float> Segmenter::tag_rows(const std::vector<std::vector<float>>& per_frame, int padded) const {
  if (info_.scene_tags.empty()) {
    if (std::any_of(per_frame.begin(), per_frame.end(), [](const auto& t) { return !t.empty(); }))
      check_tags(info_, per_frame.front());  // throws: the model takes no tags
    return {};
  }
  const std::size_t k = info_.class_names.size();
  std::vector<float> rows(k * padded, 1.0f);
  for (int i = 0; i < padded; ++i) {
    const int frame = std::min<int>(i, static_cast<int>(per_frame.empty() ? 0 : per_frame.size() - 1));
    const std::vector<float>& given = !per_frame.empty() && !per_frame[frame].empty() ? per_frame[frame] : scene_tags_;
    if (given.empty()) continue;
    check_tags(info_, given);
    std::copy(given.begin(), given.end(), rows.begin() + k * i);
  }
  return rows;
}

std::vector<int> Segmenter::batch_plan(int frames) const {
  const int fixed = backend_->batch(), most = backend_->max_batch();
  const int step = fixed ? fixed : (most ? std::min(frames, most) : frames);
  std::vector<int> sizes;
  for (int i = 0; i < frames; i += step) sizes.push_back(fixed ? step : std::min(step, frames - i));
  return sizes;
}

cv::Mat Segmenter::colorize(const cv::Mat& labels) const {
  CV_Assert(labels.type() == CV_8U || labels.type() == CV_32S);
  cv::Mat out(labels.size(), CV_8UC3);
  const int last = info_.num_classes() - 1;
  for (int y = 0; y < labels.rows; ++y) {
    auto* dst = out.ptr<cv::Vec3b>(y);
    if (labels.type() == CV_8U) {
      const auto* src = labels.ptr<std::uint8_t>(y);
      for (int x = 0; x < labels.cols; ++x) dst[x] = palette_bgr_.at<cv::Vec3b>(std::min<int>(src[x], last));
    } else {
      const auto* src = labels.ptr<std::int32_t>(y);
      for (int x = 0; x < labels.cols; ++x) dst[x] = palette_bgr_.at<cv::Vec3b>(std::clamp(src[x], 0, last));
    }
  }
  return out;
}

cv::Mat Segmenter::overlay(const cv::Mat& frame, const Result& result, double alpha) const {
  cv::Mat bgr = to_bgr8(frame);
  if (bgr.size() != result.labels.size())
    throw BadInput("overlay: frame is " + std::to_string(bgr.cols) + "x" + std::to_string(bgr.rows) +
                   " but the labels are " + std::to_string(result.labels.cols) + "x" +
                   std::to_string(result.labels.rows) + "; pass the frame that was segmented");
  cv::Mat blended;
  cv::addWeighted(bgr, 1 - alpha, colorize(result.labels), alpha, 0, blended);
  cv::Mat shown = bgr.clone();
  blended.copyTo(shown, result.labels > 0);
  return shown;
}

}  // namespace disseg
