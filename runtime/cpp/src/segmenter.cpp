// Segmenter: contract -> backend; frames -> model input -> labels at the frame's size (runtime/segmenter.py).
#include "disseg/segmenter.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

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

Segmenter::Segmenter(const std::string& model, const Options& options) : info_(read_model_info(model)) {
  check_runnable(info_, model);
  backend_ = open_backend(model, info_, options);
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

std::vector<Result> Segmenter::segment_batch(const std::vector<cv::Mat>& frames) {
  if (frames.empty()) return {};
  const int h = info_.input_height, w = info_.input_width;
  const std::size_t image_bytes = static_cast<std::size_t>(h) * w * 3;
  const auto t0 = Clock::now();
  std::vector<cv::Size> sizes;
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
    cv::Mat resized = resize_to(bgr, h, w);
    resized.copyTo(dst);
  }
  for (int i = n; i < padded; ++i)  // a fixed batch is filled with the last frame
    std::memcpy(batch.data() + image_bytes * i, batch.data() + image_bytes * (n - 1), image_bytes);
  const auto t1 = Clock::now();
  BackendOutputs merged;
  for (int i = 0; i < padded; i += step) {
    BackendOutputs part = backend_->infer(batch.data() + image_bytes * i, std::min(step, padded - i));
    merged.labels.insert(merged.labels.end(), part.labels.begin(), part.labels.end());
    merged.tags.insert(merged.tags.end(), part.tags.begin(), part.tags.end());
  }
  const auto t2 = Clock::now();
  std::vector<Result> results(n);
  for (int i = 0; i < n; ++i) {
    results[i].labels = resize_labels(merged.labels[i], sizes[i].height, sizes[i].width);
    if (!merged.tags.empty()) results[i].tags = merged.tags[i];
  }
  const auto t3 = Clock::now();
  for (auto& r : results) r.timings = {ms_between(t0, t1) / n, ms_between(t1, t2) / n, ms_between(t2, t3) / n};
  return results;
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
