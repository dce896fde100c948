// GPU backend: a TensorRT 10+ (or TensorRT for RTX) engine through the name-based I/O API (JetPack 6 and later).
// Unverified: no machine of this project can run a TensorRT engine (docs/not-verified.md).
// DISSEG_TENSORRT_FLAVOUR ("tensorrt" or "tensorrt_rtx") names the library CMake linked; an engine of the
// other flavour is refused before deserialization (Segmenter, through engine_mismatch).
#include <cstring>
#include <fstream>
#include <iterator>

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include "backend.hpp"

namespace disseg {
namespace {

class Logger final : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kERROR) std::fprintf(stderr, "TensorRT: %s\n", msg);
  }
};

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
}

struct DeviceBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  void reserve(std::size_t n) {
    if (n <= bytes) return;
    if (ptr) cudaFree(ptr);
    check(cudaMalloc(&ptr, n), "cudaMalloc");
    bytes = n;
  }
};

class TensorRTBackend final : public Backend {
 public:
  TensorRTBackend(const std::string& path, const ModelInfo& info) : info_(info) {
    std::ifstream in(path, std::ios::binary);
    std::string blob(std::istreambuf_iterator<char>(in), {});
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error("TensorRT could not create a runtime");
#ifndef DISSEG_TENSORRT_RTX  // DLA is Jetson's; TensorRT for RTX has none
    if (info.engine && info.engine->dla_core) runtime_->setDLACore(*info.engine->dla_core);  // before deserializing
#endif
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_)
      throw ModelFileError(
          path + ": TensorRT cannot deserialize this engine; rebuild it with: dis-export MODEL.onnx --engine");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(path + ": TensorRT could not create an execution context (out of GPU memory?)");
    check_types(path);
    const char* input = info.input_name.c_str();
    nvinfer1::Dims dims = engine_->getTensorShape(input);
    batch_ = dims.d[0] > 0 ? static_cast<int>(dims.d[0]) : 0;
    max_batch_ =
        batch_ ? batch_ : static_cast<int>(engine_->getProfileShape(input, 0, nvinfer1::OptProfileSelector::kMAX).d[0]);
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }
  ~TensorRTBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "tensorrt"; }
  int batch() const override { return batch_; }
  int max_batch() const override { return max_batch_; }

  BackendOutputs infer(const std::uint8_t* images, const float* scene_tags, int n) override {
    const int h = info_.input_height, w = info_.input_width, k = info_.num_classes();
    const std::size_t in_bytes = static_cast<std::size_t>(n) * h * w * 3;
    const std::size_t label_bytes = static_cast<std::size_t>(n) * h * w * (labels_int32_ ? 4 : 1);
    input_.reserve(in_bytes);
    labels_.reserve(label_bytes);
    if (has_tags_) tags_.reserve(sizeof(float) * n * k);
    if (n > max_batch_)
      throw BadInput("batch " + std::to_string(n) + " is over this engine's maximum " + std::to_string(max_batch_));
    const bool tagged = !info_.scene_tags.empty();
    if (tagged && !scene_tags) throw Error("the model takes scene tags and none were given");
    if (!batch_ && (!context_->setInputShape(info_.input_name.c_str(), nvinfer1::Dims4{n, h, w, 3}) ||
                    (tagged && !context_->setInputShape(kSceneTags, nvinfer1::Dims2{n, k}))))
      throw Error("TensorRT refused batch " + std::to_string(n) + " (engine profile: 1.." + std::to_string(max_batch_) +
                  ")");
    address(info_.input_name.c_str(), input_.ptr);
    if (tagged) {
      scene_tags_.reserve(sizeof(float) * n * k);
      address(kSceneTags, scene_tags_.ptr);
      check(cudaMemcpyAsync(scene_tags_.ptr, scene_tags, sizeof(float) * n * k, cudaMemcpyHostToDevice, stream_),
            "copy scene tags in");
    }
    address(kLabels, labels_.ptr);
    if (has_tags_) address(kTags, tags_.ptr);
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {  // outputs we do not read (scores) still need memory
      const char* name = engine_->getIOTensorName(i);
      if (engine_->getTensorIOMode(name) != nvinfer1::TensorIOMode::kOUTPUT || !std::strcmp(name, kLabels) ||
          !std::strcmp(name, kTags))
        continue;
      nvinfer1::Dims d = context_->getTensorShape(name);
      std::size_t count = 1;
      for (int j = 0; j < d.nbDims; ++j) count *= static_cast<std::size_t>(d.d[j]);
      extra_.reserve(count * 4);
      address(name, extra_.ptr);
    }
    check(cudaMemcpyAsync(input_.ptr, images, in_bytes, cudaMemcpyHostToDevice, stream_), "copy in");
    if (!context_->enqueueV3(stream_)) throw Error("TensorRT failed to run the engine");
    BackendOutputs out;
    std::vector<std::uint8_t> host(label_bytes);
    std::vector<float> host_tags(has_tags_ ? static_cast<std::size_t>(n) * k : 0);
    check(cudaMemcpyAsync(host.data(), labels_.ptr, label_bytes, cudaMemcpyDeviceToHost, stream_), "copy labels");
    if (has_tags_)
      check(cudaMemcpyAsync(host_tags.data(), tags_.ptr, host_tags.size() * sizeof(float), cudaMemcpyDeviceToHost,
                            stream_),
            "copy tags");
    check(cudaStreamSynchronize(stream_), "synchronize");
    const std::size_t plane = label_bytes / n;
    for (int i = 0; i < n; ++i) {
      out.labels.push_back(cv::Mat(h, w, labels_int32_ ? CV_32S : CV_8U, host.data() + plane * i).clone());
      if (has_tags_) out.tags.emplace_back(host_tags.begin() + k * i, host_tags.begin() + k * (i + 1));
    }
    return out;
  }

 private:
  // The contract's types (docs/contract.md): uint8 in; labels uint8 or int32, tags float32, in every precision.
  void check_types(const std::string& path) {
    using nvinfer1::DataType;
    const char* input = info_.input_name.c_str();
    if (engine_->getTensorShape(input).nbDims != 4 || engine_->getTensorDataType(input) != DataType::kUINT8)
      throw ModelFileError(path + ": engine input '" + info_.input_name +
                           "' is not N x H x W x 3 uint8; rebuild it from a dis-export ONNX");
    const DataType labels = engine_->getTensorDataType(kLabels);
    if (labels != DataType::kUINT8 && labels != DataType::kINT32)
      throw ModelFileError(
          path + ": engine output 'labels' is not uint8 or int32; re-export the ONNX with this version's dis-export");
    labels_int32_ = labels == DataType::kINT32;
    for (int i = 0; i < engine_->getNbIOTensors(); ++i)
      if (std::strcmp(engine_->getIOTensorName(i), kTags) == 0) has_tags_ = true;
    if (has_tags_ && engine_->getTensorDataType(kTags) != DataType::kFLOAT)
      throw ModelFileError(path +
                           ": engine output 'tags' is not float32; re-export the ONNX with this version's dis-export");
    if (!labels_int32_ && info_.num_classes() > 256)
      throw ModelFileError(path + ": engine output 'labels' is uint8 but the model names " +
                           std::to_string(info_.num_classes()) + " classes; re-export it with dis-export");
    bool has_scene_tags = false;
    for (int i = 0; i < engine_->getNbIOTensors(); ++i)
      if (std::strcmp(engine_->getIOTensorName(i), kSceneTags) == 0) has_scene_tags = true;
    if (has_scene_tags != !info_.scene_tags.empty()) throw scene_tags_mismatch(path, has_scene_tags, info_);
    if (has_scene_tags) {
      const nvinfer1::Dims d = engine_->getTensorShape(kSceneTags);
      if (engine_->getTensorDataType(kSceneTags) != DataType::kFLOAT || d.nbDims != 2 || d.d[1] != info_.num_classes())
        throw scene_tags_mismatch(path, true, info_);
    }
    if (has_tags_) {  // the graph agrees with the metadata: one tag per declared class
      const nvinfer1::Dims d = engine_->getTensorShape(kTags);
      if (d.nbDims > 1 && d.d[d.nbDims - 1] > 0 && d.d[d.nbDims - 1] != info_.num_classes())
        throw class_count_mismatch(path, kTags, d.d[d.nbDims - 1], info_.num_classes());
    }
  }

  void address(const char* name, void* ptr) {
    if (!context_->setTensorAddress(name, ptr))
      throw Error(std::string("TensorRT refused the device address of '") + name + "'");
  }

  ModelInfo info_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer input_, scene_tags_, labels_, tags_, extra_;
  int batch_ = 1;
  int max_batch_ = 1;
  bool labels_int32_ = false;
  bool has_tags_ = false;
};

}  // namespace

EngineFacts tensorrt_facts() {
  cudaDeviceProp props{};
  check(cudaGetDeviceProperties(&props, 0), "cudaGetDeviceProperties (is a GPU visible?)");
  // major.minor.patch of the library linked (getInferLibVersion: MAJOR * 10000 + MINOR * 100 + PATCH from 10.x on),
  // which is what engine_mismatch compares; Python's wheels add a build number that is not compared.
  const int v = getInferLibVersion();
  const std::string version =
      std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  return {version, props.name, std::to_string(props.major) + std::to_string(props.minor), DISSEG_TENSORRT_FLAVOUR,
          std::nullopt};
}

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const ModelInfo& info) {
  return std::make_unique<TensorRTBackend>(path, info);
}

}  // namespace disseg
