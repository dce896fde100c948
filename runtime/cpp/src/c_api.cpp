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
  } catch (const disseg::BadInput& err) {  // bad input or model file (ModelFileError is one): the caller can fix it
    last_error = err.what();
    return DISSEG_BAD_INPUT;
  } catch (const std::exception& err) {  // a backend or device failing at run time (disseg::Error and the rest)
    last_error = err.what();
    return DISSEG_ERROR;
  } catch (...) {  // anything else a library throws: disseg.h promises that no exception crosses the C ABI
    last_error = "an unknown error (a non-standard exception) inside libdisseg";
    return DISSEG_ERROR;
  }
}

// One frame of a C caller's, checked: a view of its pixels (no copy).
cv::Mat wrap(const uint8_t* pixels, int height, int width, int channels, size_t row_stride, const uint8_t* labels) {
  if (!pixels || !labels) throw disseg::BadInput("disseg_segment: pixels and labels must not be NULL");
  if (height <= 0 || width <= 0 || (channels != 1 && channels != 3 && channels != 4))
    throw disseg::BadInput("disseg_segment: expected height, width > 0 and 1, 3 or 4 channels, got " +
                           std::to_string(height) + "x" + std::to_string(width) + "x" + std::to_string(channels));
  if (row_stride < static_cast<size_t>(width) * channels)
    throw disseg::BadInput("disseg_segment: row_stride " + std::to_string(row_stride) + " is shorter than a row of " +
                           std::to_string(width * channels) + " bytes");
  return cv::Mat(height, width, CV_8UC(channels), const_cast<uint8_t*>(pixels), row_stride);
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
  return disseg_segment_batch(seg, 1, &pixels, &height, &width, &channels, &row_stride, &labels,
                              tags ? &tags : nullptr);
}

disseg_status disseg_segment_wide(disseg_segmenter* seg, const uint8_t* pixels, int height, int width, int channels,
                                  size_t row_stride, uint16_t* labels, float* tags) {
  return guarded([&] {
    if (!seg) throw disseg::BadInput("disseg_segment_wide: seg must not be NULL");
    const cv::Mat frame = wrap(pixels, height, width, channels, row_stride, reinterpret_cast<const uint8_t*>(labels));
    const std::vector<disseg::Result> results = seg->seg.segment_batch({frame});
    cv::Mat wide;
    results[0].labels.convertTo(wide, CV_16U);
    wide.copyTo(cv::Mat(height, width, CV_16U, labels));
    const int k = seg->seg.info().num_classes();
    if (tags)
      for (int c = 0; c < k; ++c) tags[c] = results[0].tags.empty() ? 0.0f : results[0].tags[c];
  });
}

disseg_status disseg_segment_batch(disseg_segmenter* seg, int count, const uint8_t* const* pixels, const int* heights,
                                   const int* widths, const int* channels, size_t const* row_strides,
                                   uint8_t* const* labels, float* const* tags) {
  return guarded([&] {
    if (!seg || count < 1 || !pixels || !heights || !widths || !channels || !row_strides || !labels)
      throw disseg::BadInput("disseg_segment: seg, pixels, sizes and labels must not be NULL, count at least 1");
    if (seg->seg.info().num_classes() > 256)
      throw disseg::BadInput(
          "disseg_segment: the model has more than 256 classes; use disseg_segment_wide (16-bit labels)");
    std::vector<cv::Mat> frames;
    for (int i = 0; i < count; ++i)
      frames.push_back(wrap(pixels[i], heights[i], widths[i], channels[i], row_strides[i], labels[i]));
    std::vector<disseg::Result> results = seg->seg.segment_batch(frames);
    const int k = seg->seg.info().num_classes();
    for (int i = 0; i < count; ++i) {
      cv::Mat out(heights[i], widths[i], CV_8U, labels[i]);
      results[i].labels.copyTo(out);
      if (tags && tags[i])
        for (int c = 0; c < k; ++c) tags[i][c] = results[i].tags.empty() ? 0.0f : results[i].tags[c];
    }
  });
}

disseg_status disseg_set_scene_tags(disseg_segmenter* seg, const float* tags, int count) {
  return guarded([&] {
    if (!seg || count < 0 || (count > 0 && !tags))
      throw disseg::BadInput("disseg_set_scene_tags: seg must not be NULL, tags NULL only with count 0");
    seg->seg.set_scene_tags(std::vector<float>(tags, tags + count));
  });
}

disseg_status disseg_set_scene_tag_names(disseg_segmenter* seg, const char* names) {
  return guarded([&] {
    if (!seg || !names) throw disseg::BadInput("disseg_set_scene_tag_names: seg and names must not be NULL");
    std::vector<std::string> list;
    std::string text(names);
    for (std::size_t start = 0; start <= text.size();) {
      const std::size_t end = std::min(text.find(',', start), text.size());
      if (end > start) list.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    seg->seg.set_scene_tags(disseg::scene_tag_vector(seg->seg.info(), list));
  });
}

const char* disseg_version(void) { return DISSEG_VERSION; }

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
