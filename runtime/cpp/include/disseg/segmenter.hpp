// disseg::Segmenter: an exported DIS model (ONNX or TensorRT engine) as a callable on BGR frames,
// the C++ twin of runtime/segmenter.py. Everything (input size, classes, palette) comes from the model file.
//
//   disseg::Segmenter seg("model.onnx");
//   disseg::Result r = seg.segment(frame);       // r.labels: CV_8U at the frame's size
//   cv::Mat shown = seg.overlay(frame, r, 0.5);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "disseg/export.h"
#include "disseg/model_info.hpp"

namespace disseg {

struct Timings {  // milliseconds per stage, per frame
  double preprocess_ms = 0;
  double infer_ms = 0;
  double postprocess_ms = 0;
};

struct Result {
  cv::Mat labels;           // H x W at the frame's size: CV_8U (CV_32S for models with more than 256 classes)
  std::vector<float> tags;  // per-class probabilities, empty when the model has no `tags` output
  Timings timings;
};

struct Options {
  std::string backend = "auto";  // auto | onnxruntime | tensorrt
  int threads = 0;               // ONNX Runtime CPU threads (0: all cores)
};

class Backend;  // src/backend.hpp

// Not for concurrent calls: give each thread its own Segmenter (a TensorRT execution context is single-stream).
class DISSEG_API Segmenter {
 public:
  explicit Segmenter(const std::string& model, const Options& options = {});
  ~Segmenter();
  Segmenter(Segmenter&&) noexcept;
  Segmenter& operator=(Segmenter&&) noexcept;
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  // Any size; 1, 3 or 4 channels; 8 or 16 bits or float in [0, 1] (see to_bgr8).
  Result segment(const cv::Mat& frame);
  // Several frames in one call, padded to the model's fixed batch or sent at once to a dynamic one.
  std::vector<Result> segment_batch(const std::vector<cv::Mat>& frames);
  // The batch sizes segment_batch runs for this many frames: chunks of a fixed batch (the last padded), or of a
  // dynamic model's maximum.
  std::vector<int> batch_plan(int frames) const;

  cv::Mat colorize(const cv::Mat& labels) const;  // labels -> BGR in the model's palette
  // The frame with the labelmap blended over it (background left clear).
  cv::Mat overlay(const cv::Mat& frame, const Result& result, double alpha = 0.5) const;

  const ModelInfo& info() const { return info_; }
  const std::vector<std::string>& class_names() const { return info_.class_names; }
  std::string backend_name() const;

 private:
  std::unique_ptr<Backend> backend_;
  ModelInfo info_;
  cv::Mat palette_bgr_;  // num_classes x 1, CV_8UC3
};

// The one pixel format every backend takes: contiguous CV_8UC3 BGR. Gray, BGRA, 16-bit (high byte kept)
// and float in [0, 1] are converted; anything else is BadInput naming `source`.
DISSEG_API cv::Mat to_bgr8(const cv::Mat& image, const std::string& source = "frame");
// To the model's size: area filter when shrinking, bilinear when enlarging (as the Python runtime).
DISSEG_API cv::Mat resize_to(const cv::Mat& image, int height, int width);
// A labelmap back to a frame's size, nearest neighbour (labels never blend).
DISSEG_API cv::Mat resize_labels(const cv::Mat& labels, int height, int width);

// The backends compiled into this library, e.g. {"onnxruntime"}.
DISSEG_API std::vector<std::string> available_backends();

}  // namespace disseg
