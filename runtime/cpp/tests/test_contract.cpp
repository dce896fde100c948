#include <unistd.h>

#include <fstream>
#include <iterator>
#include <random>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "disseg/model_info.hpp"
#include "test_util.hpp"

static_assert(std::is_base_of_v<disseg::BadInput, disseg::ModelFileError>,
              "a model file the runtime cannot take is bad input (exit 2), as in Python");

using disseg::ModelFileError;
using json = nlohmann::json;

namespace {

std::map<std::string, std::string> props(json values) {
  std::map<std::string, std::string> out;
  for (auto& [k, v] : values.items()) out["disseg." + k] = v.dump();
  return out;
}

json minimal() {
  return {{"schema", "disseg-model/1"},
          {"input_name", "image"},
          {"input_height", 64},
          {"input_width", 96},
          {"batch", 1},
          {"class_names", {"background", "cat", "dog"}},
          {"palette", {{0, 0, 0}, {128, 0, 0}, {0, 128, 0}}},
          {"iterations", 3},
          {"step_size", 30.0},
          {"tag_weight", 0.3},
          {"precision", "fp32"},
          {"outputs", {"labels", "tags"}}};
}

// A protobuf varint / length-delimited field, to build ONNX-like files by hand.
std::string varint(std::uint64_t v) {
  std::string s;
  do {
    std::uint8_t b = v & 0x7F;
    v >>= 7;
    s.push_back(static_cast<char>(v ? b | 0x80 : b));
  } while (v);
  return s;
}
std::string field(int number, const std::string& bytes) {
  return varint(std::uint64_t(number) << 3 | 2) + varint(bytes.size()) + bytes;
}
std::string entry(const std::string& key, const std::string& value) {
  return field(14, field(1, key) + field(2, value));
}

}  // namespace

TEST(Contract, ParsesEveryField) {
  json v = minimal();
  v["batch"] = "dynamic";
  v["extra"] = {{"engine", {{"tensorrt_version", "10.3.0.30"}, {"gpu_name", "Orin"}, {"compute_capability", "87"}}}};
  auto info = disseg::model_info_from_metadata(props(v), "m.onnx");
  EXPECT_EQ(info.input_height, 64);
  EXPECT_EQ(info.input_width, 96);
  EXPECT_EQ(info.batch, 0);
  EXPECT_EQ(info.num_classes(), 3);
  EXPECT_EQ(info.class_names[2], "dog");
  EXPECT_EQ(info.palette[1][0], 128);
  EXPECT_TRUE(info.has_output("tags"));
  EXPECT_FALSE(info.has_output("scores"));
  EXPECT_EQ(info.input_layout, "NHWC");  // defaults of runtime/contract.py
  EXPECT_DOUBLE_EQ(info.mean[0], 0.485);
  ASSERT_TRUE(info.engine.has_value());
  EXPECT_EQ(info.engine->compute_capability, "87");
}

TEST(Contract, RejectsForeignCorruptAndNewerModels) {
  EXPECT_THROW(disseg::model_info_from_metadata({{"producer", "\"x\""}}, "m.onnx"), ModelFileError);
  auto bad = props(minimal());
  bad["disseg.class_names"] = "[\"a\", ";
  EXPECT_THROW(disseg::model_info_from_metadata(bad, "m.onnx"), ModelFileError);
  json newer = minimal();
  newer["schema"] = "disseg-model/2";
  try {
    disseg::model_info_from_metadata(props(newer), "m.onnx");
    FAIL() << "accepted a newer schema";
  } catch (const ModelFileError& err) {
    EXPECT_NE(std::string(err.what()).find("disseg-model/2"), std::string::npos);
  }
  json missing = minimal();
  missing.erase("class_names");
  EXPECT_THROW(disseg::model_info_from_metadata(props(missing), "m.onnx"), ModelFileError);
  json no_labels = minimal();
  no_labels["outputs"] = {"scores"};
  EXPECT_THROW(disseg::model_info_from_metadata(props(no_labels), "m.onnx"), ModelFileError);
}

TEST(Contract, ReadsMetadataFromProtobufAndRejectsTruncatedFiles) {
  auto dir = temp_dir("proto");
  std::string model = field(7, "graph bytes we skip") + varint(1 << 3) + varint(8);  // a graph, then ir_version = 8
  for (const auto& [k, v] : props(minimal())) model += entry(k, v);
  write_bytes(dir / "m.onnx", model);
  auto info = disseg::read_model_info((dir / "m.onnx").string());
  EXPECT_EQ(info.class_names.size(), 3u);
  write_bytes(dir / "cut.onnx", model.substr(0, model.size() - 5));
  EXPECT_THROW(disseg::read_model_info((dir / "cut.onnx").string()), ModelFileError);
  EXPECT_THROW(disseg::read_model_info((dir / "absent.onnx").string()), ModelFileError);
}

TEST(Contract, EngineSidecar) {
  auto dir = temp_dir("sidecar");
  write_bytes(dir / "m.engine", "not read here");
  EXPECT_THROW(disseg::read_model_info((dir / "m.engine").string()), ModelFileError);  // no sidecar
  json v = minimal();
  v["extra"] = {{"engine", {{"tensorrt_version", "10.3.0.30"}, {"gpu_name", "Orin"}, {"compute_capability", "87"}}}};
  write_bytes(dir / "m.engine.json", json{{"disseg", v}}.dump());
  auto info = disseg::read_model_info((dir / "m.engine").string());
  EXPECT_EQ(info.engine->gpu_name, "Orin");
  EXPECT_FALSE(disseg::engine_mismatch(info, {"10.3.0.30", "Orin", "87"}).has_value());
  EXPECT_FALSE(disseg::engine_mismatch(info, {"10.3.0", "Orin", "87"}).has_value());  // C++ headers give 3 parts
  auto why = disseg::engine_mismatch(info, {"10.7.0.23", "Orin", "87"});
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("10.7.0"), std::string::npos);
  EXPECT_TRUE(disseg::engine_mismatch(info, {"10.3.0.30", "Thor", "87"}).has_value());
  EXPECT_TRUE(disseg::engine_mismatch(info, {"10.3.0", "Orin", "87", "tensorrt_rtx"}).has_value());
  EXPECT_EQ(disseg::short_version("10.13.3.9"), "10.13.3");
  EXPECT_EQ(disseg::short_version("1.7"), "1.7");
  // An ahead-of-time TensorRT for RTX engine: any GPU of its compute capability, and its DLA-less facts.
  v["extra"] = {{"engine",
                 {{"tensorrt_version", "1.7.1"},
                  {"gpu_name", nullptr},
                  {"compute_capability", "86"},
                  {"flavour", "tensorrt_rtx"},
                  {"dla_core", nullptr}}}};
  write_bytes(dir / "m.engine.json", json{{"disseg", v}}.dump());
  auto rtx = disseg::read_model_info((dir / "m.engine").string());
  EXPECT_TRUE(rtx.engine->gpu_name.empty());
  EXPECT_FALSE(rtx.engine->dla_core.has_value());
  EXPECT_FALSE(
      disseg::engine_mismatch(rtx, {"1.7.1.116", "NVIDIA GeForce RTX 3090", "86", "tensorrt_rtx"}).has_value());
  EXPECT_TRUE(disseg::engine_mismatch(rtx, {"1.7.1", "NVIDIA GeForce RTX 4090", "89", "tensorrt_rtx"}).has_value());
  EXPECT_TRUE(disseg::engine_mismatch(rtx, {"1.7.1", "NVIDIA GeForce RTX 3090", "86"}).has_value());
  write_bytes(dir / "m.engine.json", "{\"disseg\": ");
  EXPECT_THROW(disseg::read_model_info((dir / "m.engine").string()), ModelFileError);
}

TEST(Contract, ExportedModelMatchesWhatPythonWrote) {
  if (test_model().empty()) GTEST_SKIP() << "DISSEG_TEST_MODEL is not set";
  auto meta = disseg::read_onnx_metadata(test_model());
  auto info = disseg::read_model_info(test_model());
  EXPECT_EQ(json::parse(meta.at("disseg.class_names")).size(), info.class_names.size());
  EXPECT_EQ(json::parse(meta.at("disseg.iterations")).get<int>(), info.iterations);
  EXPECT_EQ(info.schema, disseg::kSchema);
}

// Fuzz: damaged model files and sidecars may only ever raise ModelFileError (never another exception, a crash or
// a hang). Mutations land in the metadata (the file's tail, where metadata_props sits) and anywhere; plus
// truncations, and sidecars with keys deleted or given values of other types. Python's reader has the same test.
TEST(Contract, FuzzedFilesOnlyRaiseModelFileError) {
  if (test_model().empty()) GTEST_SKIP() << "DISSEG_TEST_MODEL is not set";
  std::ifstream in(test_model(), std::ios::binary);
  const std::string model((std::istreambuf_iterator<char>(in)), {});
  const std::size_t meta = model.rfind("disseg.schema") != std::string::npos ? model.find("disseg.") - 16 : 0;
  auto dir = temp_dir("fuzz");
  std::mt19937 rng(12345);
  int read_ok = 0, refused = 0;
  for (int i = 0; i < 600; ++i) {
    std::string bytes = model;
    if (i % 10 == 9) {
      bytes.resize(std::uniform_int_distribution<std::size_t>(0, model.size() - 1)(rng));
    } else {
      const std::size_t from = i % 2 ? meta : 0;
      for (int k = std::uniform_int_distribution<int>(1, 8)(rng); k > 0; --k)
        bytes[std::uniform_int_distribution<std::size_t>(from, bytes.size() - 1)(rng)] = static_cast<char>(rng());
    }
    write_bytes(dir / "m.onnx", bytes);
    try {
      disseg::read_model_info((dir / "m.onnx").string());
      ++read_ok;
    } catch (const ModelFileError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 50);  // the metadata mutations do reach the reader
  const std::vector<json> odd = {nullptr, 7, -3, 2.5, "x", json::array(), json::object(), json::array({1, "a"}), true};
  for (int i = 0; i < 300; ++i) {
    json v = minimal();
    auto it = v.begin();
    std::advance(it, std::uniform_int_distribution<int>(0, static_cast<int>(v.size()) - 1)(rng));
    if (rng() % 3 == 0)
      v.erase(it.key());
    else
      *it = odd[rng() % odd.size()];
    if (rng() % 2) v["extra"] = {{"engine", odd[rng() % odd.size()]}};
    write_bytes(dir / "m.engine", "x");
    write_bytes(dir / "m.engine.json", json{{"disseg", v}}.dump());
    try {
      disseg::read_model_info((dir / "m.engine").string());
    } catch (const ModelFileError&) {
    }
  }
  std::filesystem::remove_all(dir);
}
