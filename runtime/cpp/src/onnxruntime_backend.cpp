// CPU backend: ONNX Runtime's C++ API on the exported graph (preprocessing is inside the graph).
#include <algorithm>

#include <onnxruntime_cxx_api.h>

#include "backend.hpp"

namespace disseg {
namespace {

Ort::Env& environment() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "disseg");
  return env;
}

std::string first_line(const std::string& text) { return text.substr(0, std::min(text.find('\n'), std::size_t{200})); }

class OnnxRuntimeBackend final : public Backend {
 public:
  OnnxRuntimeBackend(const std::string& path, const ModelInfo& info, int threads) : info_(info) {
    Ort::SessionOptions options;
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    if (threads > 0) options.SetIntraOpNumThreads(threads);  // 0: ONNX Runtime's default, one per physical core
    try {
      session_ = std::make_unique<Ort::Session>(environment(), path.c_str(), options);
    } catch (const Ort::Exception& err) {
      throw ModelFileError(path + ": ONNX Runtime cannot load it (" + first_line(err.what()) +
                           "); re-export it with dis-export");
    }
    Ort::AllocatorWithDefaultOptions allocator;
    bool found = false, tags_ok = info.scene_tags.empty();
    for (std::size_t i = 0; i < session_->GetInputCount(); ++i) {
      const std::string input = session_->GetInputNameAllocated(i, allocator).get();
      if (input == kSceneTags) {
        Ort::TypeInfo type = session_->GetInputTypeInfo(i);
        auto tensor = type.GetTensorTypeAndShapeInfo();
        const auto dims = tensor.GetShape();
        tags_ok = !info.scene_tags.empty() && tensor.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
                  dims.size() == 2 && dims[1] == info.num_classes();
        if (!tags_ok) throw scene_tags_mismatch(path, true, info);
      }
      if (input != info.input_name) continue;
      Ort::TypeInfo type = session_->GetInputTypeInfo(i);  // owns what the tensor info below points into
      auto tensor = type.GetTensorTypeAndShapeInfo();
      shape_ = tensor.GetShape();
      found = tensor.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 && shape_.size() == 4 &&
              shape_[1] == info.input_height && shape_[2] == info.input_width && shape_[3] == 3;
    }
    if (!tags_ok) throw scene_tags_mismatch(path, false, info);
    if (!found)
      throw ModelFileError(path + ": its graph has no uint8 input '" + info.input_name + "' of N x " +
                           std::to_string(info.input_height) + " x " + std::to_string(info.input_width) +
                           " x 3 as its metadata says; re-export it with dis-export");
    for (std::size_t i = 0; i < session_->GetOutputCount(); ++i) {
      std::string name = session_->GetOutputNameAllocated(i, allocator).get();
      Ort::TypeInfo type = session_->GetOutputTypeInfo(i);
      auto tensor = type.GetTensorTypeAndShapeInfo();
      check_output(path, info, name, tensor.GetElementType(), tensor.GetShape());
      const bool float_tags = name == kTags && tensor.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      if (name == kLabels || float_tags) output_names_.push_back(name);
    }
    if (std::find(output_names_.begin(), output_names_.end(), kLabels) == output_names_.end())
      throw ModelFileError(path + ": its graph has no 'labels' output; re-export it with dis-export");
  }

  // The graph agrees with the metadata: labels uint8 (int32 past 256 classes), one score/tag per declared class.
  static void check_output(const std::string& path, const ModelInfo& info, const std::string& name,
                           ONNXTensorElementDataType type, const std::vector<std::int64_t>& dims) {
    const int k = info.num_classes();
    if (name == kLabels && type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 &&
        (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || k > 256))
      throw ModelFileError(path + ": 'labels' is not " + (k > 256 ? "int32" : "uint8 or int32") + " for " +
                           std::to_string(k) + " classes; re-export the model with dis-export");
    const std::size_t axis = name == kScores ? 1 : dims.size() - 1;
    if ((name == kScores || name == kTags) && dims.size() > 1 && dims[axis] > 0 && dims[axis] != k)
      throw class_count_mismatch(path, name, dims[axis], k);
  }

  std::string name() const override { return "onnxruntime"; }
  int batch() const override { return shape_[0] > 0 ? static_cast<int>(shape_[0]) : 0; }

  BackendOutputs infer(const std::uint8_t* images, const float* scene_tags, int n) override {
    std::array<std::int64_t, 4> shape{n, info_.input_height, info_.input_width, 3};
    const std::size_t count = static_cast<std::size_t>(n) * info_.input_height * info_.input_width * 3;
    auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    // ONNX Runtime does not write inputs; its API takes a non-const pointer.
    std::vector<Ort::Value> inputs;
    inputs.push_back(Ort::Value::CreateTensor<std::uint8_t>(memory, const_cast<std::uint8_t*>(images), count,
                                                            shape.data(), shape.size()));
    std::vector<const char*> input_names{info_.input_name.c_str()};
    std::array<std::int64_t, 2> tag_shape{n, info_.num_classes()};
    if (!info_.scene_tags.empty()) {
      if (!scene_tags) throw Error("the model takes scene tags and none were given");  // Segmenter always gives them
      inputs.push_back(Ort::Value::CreateTensor<float>(memory, const_cast<float*>(scene_tags),
                                                       static_cast<std::size_t>(n) * info_.num_classes(),
                                                       tag_shape.data(), tag_shape.size()));
      input_names.push_back(kSceneTags);
    }
    std::vector<const char*> names;
    for (const auto& s : output_names_) names.push_back(s.c_str());
    std::vector<Ort::Value> values;
    try {
      values = session_->Run(Ort::RunOptions{nullptr}, input_names.data(), inputs.data(), inputs.size(), names.data(),
                             names.size());
    } catch (const Ort::Exception& err) {
      throw Error("ONNX Runtime failed to run the model (" + first_line(err.what()) + ")");
    }
    BackendOutputs out;
    for (std::size_t k = 0; k < names.size(); ++k) {
      auto info = values[k].GetTensorTypeAndShapeInfo();
      auto dims = info.GetShape();
      if (output_names_[k] == kLabels) {
        const int type = info.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 ? CV_8U : CV_32S;
        const std::size_t plane = static_cast<std::size_t>(dims[1]) * dims[2] * (type == CV_8U ? 1 : 4);
        const auto* base = static_cast<const std::uint8_t*>(values[k].GetTensorRawData());
        for (int i = 0; i < n; ++i)
          out.labels.push_back(cv::Mat(static_cast<int>(dims[1]), static_cast<int>(dims[2]), type,
                                       const_cast<std::uint8_t*>(base) + plane * i)
                                   .clone());
      } else {
        const float* base = values[k].GetTensorData<float>();
        const std::size_t classes = static_cast<std::size_t>(dims[1]);
        for (int i = 0; i < n; ++i) out.tags.emplace_back(base + classes * i, base + classes * (i + 1));
      }
    }
    return out;
  }

 private:
  ModelInfo info_;
  std::unique_ptr<Ort::Session> session_;
  std::vector<std::int64_t> shape_;
  std::vector<std::string> output_names_;
};

}  // namespace

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const ModelInfo& info, int threads) {
  return std::make_unique<OnnxRuntimeBackend>(path, info, threads);
}

}  // namespace disseg
