// The model-file contract (docs/contract.md), read from an ONNX file's metadata_props or an engine's
// `<engine>.json` sidecar: the same keys, parsed with the same rules, as runtime/contract.py.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "disseg/export.h"

namespace disseg {

// The contract's constants, each as runtime/contract.py defines it (tests/test_twins.py holds them equal).
inline constexpr const char* kSchema = "disseg-model/1";
inline constexpr const char* kSchemaSceneTags = "disseg-model/2";  // a model with the scene_tags input
inline constexpr const char* kPrefix = "disseg.";                  // of every metadata key
inline constexpr const char* kInput = "image";                     // the tensor names
inline constexpr const char* kSceneTags = "scene_tags";            // float32 N x K, a model exported with --scene-tags
inline constexpr const char* kLabels = "labels";
inline constexpr const char* kScores = "scores";
inline constexpr const char* kTags = "tags";
inline constexpr const char* kInputLayout = "NHWC";  // the one input form both runtimes feed
inline constexpr const char* kInputDtype = "uint8";
inline constexpr const char* kColorOrder = "BGR";
inline constexpr std::array<const char*, 3> kSceneTagModes{"energy+mask", "energy", "mask"};  // how a graph uses them
// How a frame becomes the input size: stretched, or letterboxed (aspect kept, centred, kLetterboxPad grey around).
inline constexpr std::array<const char*, 2> kResizeModes{"stretch", "letterbox"};
inline constexpr int kLetterboxPad = 114;
inline constexpr std::array<double, 3> kImagenetMean{0.485, 0.456, 0.406};  // a model without mean/std metadata
inline constexpr std::array<double, 3> kImagenetStd{0.229, 0.224, 0.225};

// The exit statuses of dis_run_cpp, as runtime/errors.py's EXIT_* (the C ABI's disseg_status: the same numbers).
inline constexpr int kExitDone = 0;
inline constexpr int kExitFailed = 1;        // a disseg::Error that is not BadInput, e.g. a write that failed
inline constexpr int kExitBadInput = 2;      // BadInput (ModelFileError included): found before any work
inline constexpr int kExitSignalBase = 128;  // stopped by signal N: 128 + N

// Every failure the library reports is one of these, with a one-line message saying what was wrong,
// what was expected and how to fix it (the Python runtime's wording).
class DISSEG_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class DISSEG_API BadInput : public Error {  // a frame, option, source or model file the runtime cannot take (exit 2)
 public:
  using Error::Error;
};
class DISSEG_API ModelFileError : public BadInput {  // missing, damaged, foreign or mismatched model file
 public:
  using BadInput::BadInput;
};
class DISSEG_API SourceError : public BadInput {  // a camera, video, stream or image folder cannot be opened
 public:
  using BadInput::BadInput;
};

struct EngineFacts {             // what makes a TensorRT engine valid on one TensorRT version and GPU only
  std::string tensorrt_version;  // compared on major.minor.patch
  std::string gpu_name;          // empty: built ahead of time (TensorRT for RTX) for any GPU of this compute capability
  std::string compute_capability;    // "87" for sm_87
  std::string flavour = "tensorrt";  // or "tensorrt_rtx"
  std::optional<int> dla_core;       // the DLA core the engine was built for (Jetson)
};

// "10.3.0.30" -> "10.3.0": Python's wheels and the C++ headers agree on major.minor.patch only.
DISSEG_API std::string short_version(const std::string& version);

struct DISSEG_API ModelInfo {
  std::string input_name;
  int input_height = 0;
  int input_width = 0;
  int batch = 1;  // 0: dynamic
  std::vector<std::string> class_names;
  std::vector<std::array<std::uint8_t, 3>> palette;  // RGB per class
  int iterations = 0;
  double step_size = 0;
  double tag_weight = 0;
  std::string precision;  // fp32 | fp16 | int8
  std::vector<std::string> outputs;
  std::array<double, 3> mean{};
  std::array<double, 3> std{};
  std::string input_layout;
  std::string input_dtype;
  std::string color_order;
  std::string scene_tags;  // "" or one of kSceneTagModes: the graph's second input kSceneTags, and how it is used
  std::string resize = kResizeModes[0];  // one of kResizeModes
  std::string schema;
  std::string checkpoint_sha256;
  std::string onnx_sha256;
  std::optional<EngineFacts> engine;

  int num_classes() const { return static_cast<int>(class_names.size()); }
  bool has_output(const std::string& name) const;
};

// ModelProto.metadata_props of an ONNX file, read without ONNX Runtime (a few lines of protobuf).
DISSEG_API std::map<std::string, std::string> read_onnx_metadata(const std::string& path);
// How many classes an ONNX model's labels are an argmax over, where its graph shows it (the ArgMax on axis 1 behind
// `labels`, back through channel-keeping ops to a Conv's weights); 0 where it does not (runtime/contract.py).
DISSEG_API int label_channels(const std::string& path);

// Parse `disseg.`-prefixed keys with JSON values. `source` names the file in error messages.
DISSEG_API ModelInfo model_info_from_metadata(const std::map<std::string, std::string>& props,
                                              const std::string& source);

// The contract of an ONNX file (its metadata) or of an engine (its `.json` sidecar).
DISSEG_API ModelInfo read_model_info(const std::string& path);

// Why an engine described by `info` cannot run on this TensorRT and GPU; nullopt when it fits.
DISSEG_API std::optional<std::string> engine_mismatch(const ModelInfo& info, const EngineFacts& here);

}  // namespace disseg
