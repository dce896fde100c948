// disseg::Segmenter: an exported DIS model (ONNX or TensorRT engine) as a callable on BGR frames,
// the C++ twin of runtime/segmenter.py. Everything (input size, classes, palette) comes from the model file.
//
//   disseg::Segmenter seg("model.onnx");
//   disseg::Result r = seg.segment(frame);       // r.labels: CV_8U at the frame's size
//   cv::Mat shown = seg.overlay(frame, r, 0.5);
//
// A model exported with --scene-tags takes what the camera may see, one value per class (1 = may appear, 0 = absent):
//   seg.set_scene_tags(disseg::scene_tag_vector(seg.info(), {"road", "car"}));  // every later call
// Without tags it runs as the model without them (all ones).
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
  // The same with scene tags per frame: one entry per frame, each empty (the Segmenter's own tags) or num_classes
  // values in [0, 1].
  std::vector<Result> segment_batch(const std::vector<cv::Mat>& frames,
                                    const std::vector<std::vector<float>>& scene_tags);

  // The tags every later call uses: num_classes values in [0, 1], or empty for none (all ones). BadInput when the
  // model was exported without --scene-tags, or for a wrong count or value.
  void set_scene_tags(const std::vector<float>& tags);
  const std::vector<float>& scene_tags() const { return scene_tags_; }
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
  std::string model_;    // the file's name, for messages
  cv::Mat palette_bgr_;  // num_classes x 1, CV_8UC3
  std::vector<float> scene_tags_;
  std::vector<float> tag_rows(const std::vector<std::vector<float>>& per_frame, int padded) const;
};

// Scene tags from class names: 1 for each named class (and a class named "background"), 0 for the others. An
// unknown name is BadInput listing the model's classes.
DISSEG_API std::vector<float> scene_tag_vector(const ModelInfo& info, const std::vector<std::string>& names);

// The one pixel format every backend takes: contiguous CV_8UC3 BGR. Gray, BGRA, 16-bit (high byte kept)
// and float in [0, 1] are converted; anything else is BadInput naming `source`.
DISSEG_API cv::Mat to_bgr8(const cv::Mat& image, const std::string& source = "frame");
// To the model's size: area filter when shrinking, bilinear when enlarging (as the Python runtime).
DISSEG_API cv::Mat resize_to(const cv::Mat& image, int height, int width);
// A labelmap back to a frame's size, nearest neighbour (labels never blend).
DISSEG_API cv::Mat resize_labels(const cv::Mat& labels, int height, int width);
// Where a letterboxed frame sits in the model input (Ultralytics' LetterBox arithmetic, as runtime/image.py).
DISSEG_API cv::Rect letterbox_box(cv::Size frame, int height, int width);
// The model input for a frame as `resize` says (kResizeModes): resize_to, or letterboxed into a kLetterboxPad
// canvas, `box` set to where the frame sits (else the whole input).
DISSEG_API cv::Mat fit_to(const cv::Mat& image, int height, int width, const std::string& resize, cv::Rect& box);
// Model-size labels back to a frame: the box cut out, then nearest neighbour.
DISSEG_API cv::Mat labels_back(const cv::Mat& labels, const cv::Rect& box, int height, int width);

// The backends compiled into this library, e.g. {"onnxruntime"}.
DISSEG_API std::vector<std::string> available_backends();

}  // namespace disseg
