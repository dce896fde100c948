// The C ABI over Segmenter: no C++ types or exceptions cross it; errors become a status and a per-thread line.
#include "disseg/disseg.h"

#include <cstring>

#include "disseg/segmenter.hpp"

struct disseg_segmenter {
  disseg::Segmenter seg;
  std::string backend;
};

namespace {

thread_local std::string last_error;

template <typename F>
disseg_status guarded(F&& body) {
  try {
    body();
    last_error.clear();
    return DISSEG_OK;
  } catch (const disseg::BadInput& err) {  // bad input or model file: the caller can fix it
    last_error = err.what();
    return DISSEG_BAD_INPUT;
  } catch (const disseg::ModelFileError& err) {
    last_error = err.what();
    return DISSEG_BAD_INPUT;
  } catch (const std::exception& err) {  // a backend or device failing at run time (disseg::Error and the rest)
    last_error = err.what();
    return DISSEG_ERROR;
  }
}

}  // namespace

extern "C" {

disseg_status disseg_create(const char* model_path, const char* backend, int threads, disseg_segmenter** out) {
  return guarded([&] {
    if (!model_path || !out) throw disseg::BadInput("disseg_create: model_path and out must not be NULL");
    *out = nullptr;
    disseg::Options options;
    if (backend) options.backend = backend;
    options.threads = threads;
    disseg::Segmenter seg(model_path, options);
    std::string name = seg.backend_name();
    *out = new disseg_segmenter{std::move(seg), std::move(name)};
  });
}

disseg_status disseg_segment(disseg_segmenter* seg, const uint8_t* pixels, int height, int width, int channels,
                             size_t row_stride, uint8_t* labels, float* tags) {
  return guarded([&] {
    if (!seg || !pixels || !labels) throw disseg::BadInput("disseg_segment: seg, pixels and labels must not be NULL");
    if (height <= 0 || width <= 0 || (channels != 1 && channels != 3 && channels != 4))
      throw disseg::BadInput("disseg_segment: expected height, width > 0 and 1, 3 or 4 channels, got " +
                             std::to_string(height) + "x" + std::to_string(width) + "x" + std::to_string(channels));
    if (row_stride < static_cast<size_t>(width) * channels)
      throw disseg::BadInput("disseg_segment: row_stride " + std::to_string(row_stride) + " is shorter than a row of " +
                             std::to_string(width * channels) + " bytes");
    if (seg->seg.info().num_classes() > 256)
      throw disseg::BadInput("disseg_segment: the model has more than 256 classes; use the C++ API (int32 labels)");
    const cv::Mat frame(height, width, CV_8UC(channels), const_cast<uint8_t*>(pixels), row_stride);
    disseg::Result r = seg->seg.segment(frame);
    cv::Mat out(height, width, CV_8U, labels);
    r.labels.copyTo(out);
    if (tags) {
      const int k = seg->seg.info().num_classes();
      for (int c = 0; c < k; ++c) tags[c] = r.tags.empty() ? 0.0f : r.tags[c];
    }
  });
}

int disseg_num_classes(const disseg_segmenter* seg) { return seg ? seg->seg.info().num_classes() : 0; }

const char* disseg_class_name(const disseg_segmenter* seg, int index) {
  if (!seg || index < 0 || index >= seg->seg.info().num_classes()) return nullptr;
  return seg->seg.class_names()[index].c_str();
}

disseg_status disseg_palette(const disseg_segmenter* seg, int index, uint8_t rgb[3]) {
  return guarded([&] {
    if (!seg || !rgb || index < 0 || index >= seg->seg.info().num_classes())
      throw disseg::BadInput("disseg_palette: index " + std::to_string(index) + " out of range");
    std::memcpy(rgb, seg->seg.info().palette[index].data(), 3);
  });
}

void disseg_input_size(const disseg_segmenter* seg, int* height, int* width) {
  if (height) *height = seg ? seg->seg.info().input_height : 0;
  if (width) *width = seg ? seg->seg.info().input_width : 0;
}

int disseg_iterations(const disseg_segmenter* seg) { return seg ? seg->seg.info().iterations : 0; }

const char* disseg_backend_name(const disseg_segmenter* seg) { return seg ? seg->backend.c_str() : ""; }

const char* disseg_last_error(void) { return last_error.c_str(); }

void disseg_destroy(disseg_segmenter* seg) { delete seg; }

}  // extern "C"
