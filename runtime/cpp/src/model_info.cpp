// The model-file contract: ONNX metadata_props (read with a few lines of protobuf) or an engine's JSON
// sidecar, parsed with runtime/contract.py's rules and messages.
#include "disseg/model_info.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "util.hpp"

namespace disseg {
namespace {

using json = nlohmann::json;

// "a, b, c": a list of names for a message.
template <typename Names>
std::string joined(const Names& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError(path + ": no such model file");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// One protobuf message: field number, wire type, and the value (length-delimited ones as a byte range).
struct Field {
  std::uint64_t number;
  int wire;
  std::uint64_t varint;
  std::string_view bytes;
};

class ProtoReader {
 public:
  explicit ProtoReader(std::string_view buf) : buf_(buf) {}
  bool next_varint(Field& f) {  // one value of a packed repeated varint field
    if (pos_ >= buf_.size()) return false;
    f.varint = varint();
    return true;
  }
  bool next(Field& f) {
    if (pos_ >= buf_.size()) return false;
    std::uint64_t key = varint();
    f.number = key >> 3;
    f.wire = static_cast<int>(key & 7);
    f.varint = 0;
    f.bytes = {};
    switch (f.wire) {
      case 0:
        f.varint = varint();
        break;
      case 1:
        skip(8);
        break;
      case 2: {
        std::uint64_t n = varint();
        need(n);
        f.bytes = buf_.substr(pos_, n);
        pos_ += n;
        break;
      }
      case 5:
        skip(4);
        break;
      default:
        throw std::invalid_argument("unsupported protobuf wire type " + std::to_string(f.wire));
    }
    return true;
  }

 private:
  std::uint64_t varint() {
    std::uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      auto byte = static_cast<std::uint8_t>(buf_[pos_++]);
      result |= std::uint64_t(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return result;
    }
    throw std::invalid_argument("malformed varint");
  }
  void need(std::uint64_t n) {
    if (n > buf_.size() - pos_) throw std::invalid_argument("truncated protobuf message");
  }
  void skip(std::uint64_t n) {
    need(n);
    pos_ += n;
  }
  std::string_view buf_;
  std::size_t pos_ = 0;
};

template <typename T>
T take(const json& values, const char* key, const std::string& source) {
  auto it = values.find(key);
  if (it == values.end())
    throw ModelFileError(source + ": disseg metadata lacks '" + key + "'; re-export it with this version's dis-export");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw ModelFileError(source + ": disseg metadata '" + key + "' has the wrong type (" + it->dump().substr(0, 60) +
                         "); re-export it with dis-export");
  }
}

template <typename T>
T take_or(const json& values, const char* key, T fallback, const std::string& source) {
  return values.contains(key) ? take<T>(values, key, source) : fallback;
}

void tensor_locations(std::string_view tensor, std::vector<std::string>& out) {
  ProtoReader reader(tensor);
  for (Field f; reader.next(f);) {
    if (f.number != 13 || f.wire != 2) continue;  // TensorProto.external_data: {key 1, value 2}
    ProtoReader entry(f.bytes);
    std::string key, value;
    for (Field e; entry.next(e);) {
      if (e.wire == 2 && e.number == 1) key = std::string(e.bytes);
      if (e.wire == 2 && e.number == 2) value = std::string(e.bytes);
    }
    if (key == "location") out.push_back(value);
  }
}

// The external data locations of a GraphProto: initializers, sparse initializers, node attributes' tensors and
// subgraphs (runtime/contract.py _external_locations).
void graph_locations(std::string_view graph, std::vector<std::string>& out, int depth = 0) {
  if (depth > 32) throw std::invalid_argument("subgraphs nested too deep");
  ProtoReader reader(graph);
  for (Field f; reader.next(f);) {
    if (f.wire != 2) continue;
    if (f.number == 5) tensor_locations(f.bytes, out);
    if (f.number == 15) {
      ProtoReader sparse(f.bytes);
      for (Field s; sparse.next(s);)
        if (s.wire == 2 && (s.number == 1 || s.number == 2)) tensor_locations(s.bytes, out);
    }
    if (f.number != 1) continue;
    ProtoReader node(f.bytes);
    for (Field a; node.next(a);) {
      if (a.number != 5 || a.wire != 2) continue;
      ProtoReader attribute(a.bytes);
      for (Field v; attribute.next(v);) {
        if (v.wire == 2 && (v.number == 5 || v.number == 10)) tensor_locations(v.bytes, out);
        if (v.wire == 2 && (v.number == 6 || v.number == 11)) graph_locations(v.bytes, out, depth + 1);
      }
    }
  }
}

struct GraphNode {
  std::string op;
  std::vector<std::string> inputs;
  std::map<std::string, std::int64_t> ints;
};

std::vector<std::int64_t> tensor_dims(std::string_view tensor, std::string& name) {
  std::vector<std::int64_t> dims;
  ProtoReader reader(tensor);
  for (Field f; reader.next(f);) {
    if (f.number == 1 && f.wire == 0) dims.push_back(static_cast<std::int64_t>(f.varint));
    if (f.number == 1 && f.wire == 2) {  // packed
      ProtoReader packed(f.bytes);
      for (Field v; packed.next_varint(v);) dims.push_back(static_cast<std::int64_t>(v.varint));
    }
    if (f.number == 8 && f.wire == 2) name = std::string(f.bytes);
  }
  return dims;
}

// The ops through which an argmax's channel count is the count of what feeds them (runtime/contract.py).
constexpr std::array<const char*, 18> kChannelKeeping{"Cast",
                                                      "Identity",
                                                      "Resize",
                                                      "Upsample",
                                                      "Relu",
                                                      "Sigmoid",
                                                      "Softmax",
                                                      "LogSoftmax",
                                                      "Where",
                                                      "Add",
                                                      "Sub",
                                                      "Mul",
                                                      "Div",
                                                      "Clip",
                                                      "LeakyRelu",
                                                      "BatchNormalization",
                                                      "QuantizeLinear",
                                                      "DequantizeLinear"};

bool channel_keeping(const std::string& op) {
  return std::any_of(kChannelKeeping.begin(), kChannelKeeping.end(), [&](const char* k) { return op == k; });
}

int conv_channels(const std::string& name, const std::map<std::string, GraphNode>& nodes,
                  const std::map<std::string, std::vector<std::int64_t>>& weights, std::set<std::string>& seen) {
  const auto it = nodes.find(name);
  if (it == nodes.end() || seen.count(name) || seen.size() > 200) return 0;
  seen.insert(name);
  const GraphNode& node = it->second;
  if ((node.op == "Conv" || node.op == "ConvInteger") && node.inputs.size() > 1) {
    std::string kernel = node.inputs[1];
    const auto dq = nodes.find(kernel);
    if (!weights.count(kernel) && dq != nodes.end() && dq->second.op == "DequantizeLinear" &&
        !dq->second.inputs.empty())
      kernel = dq->second.inputs[0];
    const auto w = weights.find(kernel);
    return w != weights.end() && w->second.size() == 4 ? static_cast<int>(w->second[0]) : 0;
  }
  if (!channel_keeping(node.op)) return 0;
  for (const std::string& source : node.inputs)
    if (!source.empty() && !weights.count(source))
      if (const int found = conv_channels(source, nodes, weights, seen)) return found;
  return 0;
}

// Every external data file of the model lies inside its folder, as runtime/contract.py check_external_data.
void check_external_data(const std::string& path, std::string_view buf) {
  std::vector<std::string> found;
  ProtoReader model(buf);
  for (Field f; model.next(f);) {
    if (f.number != 7 || f.wire != 2) continue;
    try {
      graph_locations(f.bytes, found);
    } catch (const std::invalid_argument&) {  // a graph that does not parse names no file; ONNX Runtime refuses it
      found.clear();
    }
  }
  std::error_code ec;
  const std::filesystem::path folder =
      std::filesystem::weakly_canonical(std::filesystem::absolute(path), ec).parent_path();
  for (const std::string& location : found) {
    const std::filesystem::path target = std::filesystem::weakly_canonical(folder / location, ec);
    const auto rel = target.lexically_relative(folder);
    const bool inside = !location.empty() && location.find('\0') == std::string::npos &&
                        !std::filesystem::path(location).is_absolute() && !ec && !rel.empty() && *rel.begin() != "..";
    if (!inside)
      throw ModelFileError(path + ": its weights point outside its folder ('" + location.substr(0, 100) +
                           "'); a model's external data must lie beside it (re-save it with onnx.save(..., "
                           "save_as_external_data=True, location='NAME.data'))");
  }
}

}  // namespace

bool ModelInfo::has_output(const std::string& name) const {
  return std::find(outputs.begin(), outputs.end(), name) != outputs.end();
}

namespace {

int graph_label_channels(const std::string& buf) {
  std::map<std::string, GraphNode> nodes;
  std::map<std::string, std::vector<std::int64_t>> weights;
  ProtoReader model(buf);
  for (Field g; model.next(g);) {
    if (g.number != 7 || g.wire != 2) continue;
    ProtoReader graph(g.bytes);
    for (Field f; graph.next(f);) {
      if (f.wire == 2 && f.number == 5) {
        std::string name;
        auto dims = tensor_dims(f.bytes, name);
        weights[name] = std::move(dims);
      }
      if (f.wire != 2 || f.number != 1) continue;
      GraphNode node;
      std::vector<std::string> outputs;
      ProtoReader reader(f.bytes);
      for (Field n; reader.next(n);) {
        if (n.wire == 2 && n.number == 1) node.inputs.emplace_back(n.bytes);
        if (n.wire == 2 && n.number == 2) outputs.emplace_back(n.bytes);
        if (n.wire == 2 && n.number == 4) node.op = std::string(n.bytes);
        if (n.wire != 2 || n.number != 5) continue;
        std::string attribute;
        std::int64_t value = 0;
        bool has_int = false;
        ProtoReader a(n.bytes);
        for (Field v; a.next(v);) {
          if (v.number == 1 && v.wire == 2) attribute = std::string(v.bytes);
          if (v.number == 3 && v.wire == 0) value = static_cast<std::int64_t>(v.varint), has_int = true;
        }
        if (has_int) node.ints[attribute] = value;
      }
      for (const auto& out : outputs) nodes[out] = node;
    }
  }
  std::string name = kLabels;
  for (int step = 0; step < 8; ++step) {
    const auto it = nodes.find(name);
    if (it == nodes.end() || it->second.inputs.empty()) return 0;
    const GraphNode& node = it->second;
    if (node.op == "ArgMax") {
      const auto axis = node.ints.find("axis");
      std::set<std::string> seen;
      return axis != node.ints.end() && axis->second == 1 ? conv_channels(node.inputs[0], nodes, weights, seen) : 0;
    }
    if (node.op != "Cast" && node.op != "Identity") return 0;
    name = node.inputs[0];
  }
  return 0;
}

}  // namespace

int label_channels(const std::string& path) {
  try {
    return graph_label_channels(read_file(path));
  } catch (const std::invalid_argument&) {  // a graph that does not parse says nothing (ONNX Runtime refuses it)
    return 0;
  }
}

// ModelProto.metadata_props (field 14) of an ONNX file's bytes.
static std::map<std::string, std::string> metadata_from(const std::string& buf) {
  std::map<std::string, std::string> props;
  ProtoReader model(buf);
  Field f;
  while (model.next(f)) {
    if (f.number != 14 || f.wire != 2) continue;  // ModelProto.metadata_props
    ProtoReader entry(f.bytes);
    Field e;
    std::string key, value;
    while (entry.next(e)) {
      if (e.wire != 2) continue;
      if (e.number == 1) key = std::string(e.bytes);
      if (e.number == 2) value = std::string(e.bytes);
    }
    props[key] = value;
  }
  return props;
}

std::map<std::string, std::string> read_onnx_metadata(const std::string& path) {
  return metadata_from(read_file(path));
}

namespace {

// The disseg.* entries of a model's metadata, each parsed as JSON, keyed without the prefix.
json parsed_metadata(const std::map<std::string, std::string>& props, const std::string& source) {
  if (!props.count(std::string(kPrefix) + "schema"))
    throw ModelFileError(
        source + " is not a disseg model (no 'disseg.schema' metadata); export one with: dis-export CKPT --iters 3");
  json v = json::object();
  for (const auto& [key, text] : props) {
    if (key.rfind(kPrefix, 0) != 0) continue;
    try {
      v[key.substr(std::char_traits<char>::length(kPrefix))] = json::parse(text);
    } catch (const json::parse_error& err) {
      throw ModelFileError(source + " has corrupt disseg metadata (" + key + ": " + err.what() +
                           "); re-export it with dis-export");
    }
  }
  return v;
}

std::vector<std::array<std::uint8_t, 3>> read_palette(const json& v, const std::string& source) {
  std::vector<std::array<std::uint8_t, 3>> palette;
  for (const auto& rgb : take<std::vector<std::vector<int>>>(v, "palette", source)) {
    if (rgb.size() != 3)
      throw ModelFileError(source + ": palette entries must be [r, g, b]; re-export it with dis-export");
    palette.push_back(
        {static_cast<std::uint8_t>(rgb[0]), static_cast<std::uint8_t>(rgb[1]), static_cast<std::uint8_t>(rgb[2])});
  }
  return palette;
}

// What an engine's sidecar says it was built for (extra.engine), when it says it.
std::optional<EngineFacts> engine_facts(const json& v, const std::string& source) {
  if (!v.contains("extra") || !v["extra"].is_object() || !v["extra"].contains("engine") ||
      !v["extra"]["engine"].is_object())
    return std::nullopt;
  const json& e = v["extra"]["engine"];
  const bool ahead_of_time = e.contains("gpu_name") && e["gpu_name"].is_null();
  EngineFacts facts{take<std::string>(e, "tensorrt_version", source),
                    ahead_of_time ? std::string() : take<std::string>(e, "gpu_name", source),
                    take<std::string>(e, "compute_capability", source),
                    take_or<std::string>(e, "flavour", "tensorrt", source), std::nullopt};
  if (e.contains("dla_core") && !e["dla_core"].is_null()) facts.dla_core = take<int>(e, "dla_core", source);
  return facts;
}

// As runtime/contract.py: class names unique, non-empty, without control characters.
void check_class_names(const std::vector<std::string>& names, const std::string& source) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    const bool control = std::any_of(name.begin(), name.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return u < 32 || u == 127;
    });
    const bool repeated = std::find(names.begin(), names.begin() + i, name) != names.begin() + i;
    if (name.empty() || control || repeated)
      throw ModelFileError(source + ": class names must be unique, non-empty text without control characters (found " +
                           json(name).dump().substr(0, 60) + "); re-export or re-import it");
  }
}

// The facts read agree with one another: sizes, classes and palette, the labels output, the scene-tag use.
void check_consistent(const ModelInfo& info, const std::string& source) {
  if (info.class_names.empty() || info.palette.size() < info.class_names.size() || info.input_height <= 0 ||
      info.input_width <= 0)
    throw ModelFileError(
        source +
        ": disseg metadata is inconsistent (input name or size, classes, palette or extras); re-export it with "
        "dis-export");
  check_class_names(info.class_names, source);
  if (std::none_of(kResizeModes.begin(), kResizeModes.end(), [&](const char* m) { return info.resize == m; }))
    throw ModelFileError(source + ": disseg metadata names the resize '" + info.resize +
                         "' (known: " + joined(kResizeModes) + "); re-export it with this version's dis-export");
  if (!info.has_output(kLabels))
    throw ModelFileError(source + ": the model has no 'labels' output; re-export it with dis-export");
  const bool known_use = info.scene_tags.empty() == (info.schema == kSchema) &&
                         (info.scene_tags.empty() || std::any_of(kSceneTagModes.begin(), kSceneTagModes.end(),
                                                                 [&](const char* m) { return info.scene_tags == m; }));
  if (!known_use)
    throw ModelFileError(source + ": disseg metadata names scene-tag use '" + info.scene_tags + "' under schema '" +
                         info.schema + "' (known: " + joined(kSceneTagModes) + ", under " + kSchemaSceneTags +
                         "); re-export it with this version's dis-export");
}

}  // namespace

ModelInfo model_info_from_metadata(const std::map<std::string, std::string>& props, const std::string& source) {
  json v = parsed_metadata(props, source);
  ModelInfo info;
  info.schema = v["schema"].is_string() ? v["schema"].get<std::string>() : v["schema"].dump();
  if (info.schema != kSchema && info.schema != kSchemaSceneTags)
    throw ModelFileError(source + " uses model schema '" + info.schema + "', this runtime reads '" + kSchema +
                         "' and '" + kSchemaSceneTags + "'; re-export it with this version's dis-export");
  info.input_name = take<std::string>(v, "input_name", source);
  info.input_height = take<int>(v, "input_height", source);
  info.input_width = take<int>(v, "input_width", source);
  const json& batch = v["batch"];
  info.batch = batch.is_number_integer() ? batch.get<int>() : 0;  // "dynamic"
  info.class_names = take<std::vector<std::string>>(v, "class_names", source);
  info.palette = read_palette(v, source);
  info.iterations = take<int>(v, "iterations", source);
  info.step_size = take<double>(v, "step_size", source);
  info.tag_weight = take<double>(v, "tag_weight", source);
  info.precision = take<std::string>(v, "precision", source);
  info.outputs = take<std::vector<std::string>>(v, "outputs", source);
  info.mean = take_or<std::array<double, 3>>(v, "mean", kImagenetMean, source);
  info.std = take_or<std::array<double, 3>>(v, "std", kImagenetStd, source);
  info.input_layout = take_or<std::string>(v, "input_layout", kInputLayout, source);
  info.input_dtype = take_or<std::string>(v, "input_dtype", kInputDtype, source);
  info.color_order = take_or<std::string>(v, "color_order", kColorOrder, source);
  info.scene_tags = take_or<std::string>(v, "scene_tags", "", source);
  info.resize = take_or<std::string>(v, "resize", kResizeModes[0], source);
  info.checkpoint_sha256 = take_or<std::string>(v, "checkpoint_sha256", "", source);
  info.onnx_sha256 = take_or<std::string>(v, "onnx_sha256", "", source);
  info.engine = engine_facts(v, source);
  check_consistent(info, source);
  return info;
}

ModelInfo read_model_info(const std::string& path) {
  if (std::filesystem::is_directory(path))
    throw ModelFileError(path +
                         ": is a folder; pass an exported model (MODEL.onnx, or MODEL.engine with its .json sidecar)");
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw ModelFileError(path + ": no such model file");
    std::string head(512, '\0');
    probe.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<std::size_t>(probe.gcount()));
    const bool zip = head.rfind("PK\x03\x04", 0) == 0 &&
                     (head.find("data.pkl") != std::string::npos || head.find("/version") != std::string::npos);
    if (zip || ends_with(path, ".pt") || ends_with(path, ".pth"))  // torch.save's archive: what dis-train writes
      throw ModelFileError(path + ": is a PyTorch checkpoint, not an exported model; export it first: dis-export " +
                           path);
  }
  if (ends_with(path, ".onnx")) {
    std::map<std::string, std::string> props;
    try {
      const std::string buf = read_file(path);  // read once: the metadata, then the external data it names
      props = metadata_from(buf);
      check_external_data(path, buf);
    } catch (const std::invalid_argument& err) {
      throw ModelFileError(path + ": not a readable ONNX file (" + err.what() + "); re-export it with dis-export");
    }
    return model_info_from_metadata(props, path);
  }
  const std::string sidecar = path + ".json";
  std::ifstream in(sidecar);
  const bool engine_name = ends_with(path, ".engine") || ends_with(path, ".plan") || ends_with(path, ".trt");
  if (!in && !engine_name)  // as runtime/contract.py model_kind: neither ONNX, engine nor checkpoint
    throw ModelFileError(path +
                         ": is not a model file disseg reads; pass an exported model (MODEL.onnx, or MODEL.engine "
                         "with its .json sidecar)");
  if (!in)
    throw ModelFileError(path + ": no sidecar " + sidecar.substr(sidecar.find_last_of('/') + 1) +
                         "; rebuild the engine with: dis-export MODEL.onnx --engine");
  in.close();
  const std::string text = read_text(sidecar, "engine sidecar", "the .json dis-export wrote beside the engine");
  json data;
  try {
    data = json::parse(text).at("disseg");
  } catch (const json::exception& err) {
    throw ModelFileError(sidecar + ": corrupt engine sidecar (" + std::string(err.what()).substr(0, 80) +
                         "); rebuild with: dis-export MODEL.onnx --engine");
  }
  std::map<std::string, std::string> props;
  for (const auto& [key, value] : data.items()) props[kPrefix + key] = value.dump();
  return model_info_from_metadata(props, sidecar);
}

std::string short_version(const std::string& version) {
  std::size_t end = 0;
  for (int dots = 0; end < version.size(); ++end)
    if (version[end] == '.' && ++dots == 3) break;
  return version.substr(0, end);
}

std::optional<std::string> engine_mismatch(const ModelInfo& info, const EngineFacts& here) {
  if (!info.engine) return std::string("its sidecar has no engine facts");
  const EngineFacts& built = *info.engine;
  if (built.flavour != here.flavour)
    return "engine was built with " + built.flavour + "; this machine runs " + here.flavour;
  const std::string built_version = short_version(built.tensorrt_version),
                    here_version = short_version(here.tensorrt_version);
  if (built_version != here_version || built.compute_capability != here.compute_capability)
    return "engine was built for TensorRT " + built_version + " on sm_" + built.compute_capability +
           "; this machine has " + here_version + " on sm_" + here.compute_capability;
  if (!built.gpu_name.empty() && built.gpu_name != here.gpu_name)
    return "engine was built on " + built.gpu_name + ", this GPU is " + here.gpu_name;
  return std::nullopt;
}

}  // namespace disseg
