/* disseg C ABI: create / segment / destroy, for other languages' FFI (ctypes, cffi, JNI, Rust, C#).
 *
 *   disseg_segmenter* seg = NULL;
 *   if (disseg_create("model.onnx", "auto", 0, &seg) != DISSEG_OK) fprintf(stderr, "%s\n", disseg_last_error());
 *   disseg_segment(seg, bgr, height, width, 3, width * 3, labels, NULL);   // labels: height*width bytes
 *   disseg_destroy(seg);
 *
 * disseg_segment_batch runs several frames (several cameras) as one batch; disseg_version names the library.
 * Status codes match the commands' exit statuses (2: bad input or model file). Error text is per thread.
 * A segmenter serves one thread at a time; create one per thread for parallel streams.
 *
 * Who owns what (as mmdeploy's C API says it):
 * - disseg_create allocates the segmenter and hands it to the caller, who releases it with disseg_destroy.
 * - Every buffer passed in (pixels, labels, tags and the arrays of disseg_segment_batch, model_path, backend,
 *   names) stays the caller's: the library reads or writes it during the call only and keeps no pointer to it.
 * - Strings the library returns are the library's; never free them: disseg_version's live as long as the library,
 *   disseg_class_name's and disseg_backend_name's as long as the segmenter, disseg_last_error's until the next call
 *   on the same thread.
 * - No C++ exception crosses this ABI: every failure is a status and disseg_last_error.
 */
#ifndef DISSEG_H
#define DISSEG_H

#include <stddef.h>
#include <stdint.h>

#include "disseg/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct disseg_segmenter disseg_segmenter;

typedef enum disseg_status {
  DISSEG_OK = 0,
  DISSEG_ERROR = 1,     /* an unexpected failure inside a backend */
  DISSEG_BAD_INPUT = 2, /* an argument, frame or model file the runtime cannot take */
} disseg_status;

/* model_path: an exported .onnx, or a .engine with its .json sidecar (UTF-8 path). backend: "auto", "onnxruntime" or
 * "tensorrt" (NULL: auto). threads: ONNX Runtime CPU threads, 0 = all. out: receives the new segmenter (NULL
 * on failure). */
DISSEG_API disseg_status disseg_create(const char* model_path, const char* backend, int threads,
                                       disseg_segmenter** out);

/* pixels: height rows of row_stride bytes, channels 1 (gray), 3 (BGR) or 4 (BGRA), 8-bit.
 * labels: height*width bytes, written with class indices at the frame's size.
 * tags: NULL, or room for disseg_num_classes() floats (zeros when the model has no tags output). */
DISSEG_API disseg_status disseg_segment(disseg_segmenter* seg, const uint8_t* pixels, int height, int width,
                                        int channels, size_t row_stride, uint8_t* labels, float* tags);

/* As disseg_segment, for a model of any number of classes (up to 65536): labels is height*width uint16_t values.
 * disseg_segment refuses a model of more than 256 classes (its labels are bytes); this one takes every model. */
DISSEG_API disseg_status disseg_segment_wide(disseg_segmenter* seg, const uint8_t* pixels, int height, int width,
                                             int channels, size_t row_stride, uint16_t* labels, float* tags);

/* Several frames in one call: one batch on a dynamic-batch model (split at its maximum), padded on a fixed one; the
 * labels of each frame equal disseg_segment's. Each argument is an array of `count` (frames may differ in size and
 * channels); labels[i]: heights[i]*widths[i] bytes; tags: NULL, or `count` pointers each NULL or room for
 * disseg_num_classes() floats. */
DISSEG_API disseg_status disseg_segment_batch(disseg_segmenter* seg, int count, const uint8_t* const* pixels,
                                              const int* heights, const int* widths, const int* channels,
                                              const size_t* row_strides, uint8_t* const* labels, float* const* tags);

/* Scene tags, for a model exported with --scene-tags: what the camera may see, used by every later call.
 * tags: disseg_num_classes() values in [0, 1] (1 = may appear, 0 = absent); NULL with count 0 clears them (all ones:
 * the model without tags). names: comma-separated class names ("road,car,person"; a class named "background" is kept
 * too). DISSEG_BAD_INPUT for an unknown name (the error lists the classes), a wrong count or value, or a model
 * exported without scene tags. */
DISSEG_API disseg_status disseg_set_scene_tags(disseg_segmenter* seg, const float* tags, int count);
DISSEG_API disseg_status disseg_set_scene_tag_names(disseg_segmenter* seg, const char* names);

/* The library's version, "MAJOR.MINOR.PATCH" (the project's), for checking a loaded library against headers. */
DISSEG_API const char* disseg_version(void);

/* The model's facts. A NULL seg gives 0, NULL or "" (and DISSEG_BAD_INPUT from disseg_palette). */
DISSEG_API int disseg_num_classes(const disseg_segmenter* seg);                   /* K, the classes of the model */
DISSEG_API const char* disseg_class_name(const disseg_segmenter* seg, int index); /* NULL when out of range */
/* rgb: room for 3 bytes, written with the class's overlay colour (R, G, B); DISSEG_BAD_INPUT when out of range. */
DISSEG_API disseg_status disseg_palette(const disseg_segmenter* seg, int index, uint8_t rgb[3]);
/* The model's input size (frames of any size are resized to it); either pointer may be NULL. */
DISSEG_API void disseg_input_size(const disseg_segmenter* seg, int* height, int* width);
DISSEG_API int disseg_iterations(const disseg_segmenter* seg);           /* refinement steps unrolled in it */
DISSEG_API const char* disseg_backend_name(const disseg_segmenter* seg); /* e.g. "onnxruntime" */
/* The last error on this thread, one line; "" when none. Valid until the next call on this thread. */
DISSEG_API const char* disseg_last_error(void);
/* Releases the segmenter and everything it holds (the model, the backend's buffers); NULL is allowed. */
DISSEG_API void disseg_destroy(disseg_segmenter* seg);

#ifdef __cplusplus
}
#endif
#endif
