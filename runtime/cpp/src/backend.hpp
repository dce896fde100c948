// The small interface every inference backend implements (internal; the public face is Segmenter).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "disseg/model_info.hpp"

namespace disseg {

struct BackendOutputs {
  std::vector<cv::Mat> labels;           // per image: model height x width, CV_8U or CV_32S
  std::vector<std::vector<float>> tags;  // per image, empty when the model has no tags output
};

// A graph output that disagrees with the model's metadata: one line naming both counts (runtime/segmenter.py
// check_outputs words it the same way).
inline ModelFileError class_count_mismatch(const std::string& path, const std::string& output, long long found,
                                           int declared) {
  return ModelFileError(path + ": the graph's '" + output + "' output has " + std::to_string(found) +
                        " classes, its metadata names " + std::to_string(declared) +
                        "; re-export the model with dis-export, or correct the class list in its metadata");
}

// The graph's scene-tags input disagrees with the metadata (runtime/segmenter.py check_inputs).
inline ModelFileError scene_tags_mismatch(const std::string& path, bool graph_has, const ModelInfo& info) {
  return ModelFileError(path + ": the graph " + (graph_has ? "has" : "has no") + " a float32 N x " +
                        std::to_string(info.num_classes()) + " '" + kSceneTags + "' input but its metadata " +
                        (info.scene_tags.empty() ? "says nothing of it" : "says it takes one") +
                        "; re-export the model with dis-export");
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int batch() const = 0;               // the model's fixed batch, 0 when dynamic
  virtual int max_batch() const { return 0; }  // the largest batch a dynamic model takes, 0: no limit
  // `images`: n x height x width x 3 uint8 BGR, contiguous (n equal to batch() unless it is dynamic); `scene_tags`:
  // n x num_classes floats for a model exported with --scene-tags (info.scene_tags), else nullptr.
  virtual BackendOutputs infer(const std::uint8_t* images, const float* scene_tags, int n) = 0;
};

#ifdef DISSEG_WITH_ONNXRUNTIME
std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const ModelInfo& info, int threads);
#endif
#ifdef DISSEG_WITH_TENSORRT
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const ModelInfo& info);
EngineFacts tensorrt_facts();  // this machine's TensorRT version and GPU
#endif

}  // namespace disseg
