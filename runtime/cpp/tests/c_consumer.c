/* The C ABI from plain C (C99): bad input is a status and one line; a model segments a gray frame. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disseg/disseg.h"

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                  \
    }                                                            \
  } while (0)

int main(void) {
  disseg_segmenter* seg = NULL;
  CHECK(disseg_create("/nonexistent/model.onnx", NULL, 0, &seg) == DISSEG_BAD_INPUT);
  CHECK(seg == NULL && strstr(disseg_last_error(), "no such model file") != NULL);
  const char* model = getenv("DISSEG_TEST_MODEL");
  if (!model) return 0;
  disseg_status status = disseg_create(model, "auto", 1, &seg);
  if (status != DISSEG_OK) {
    fprintf(stderr, "%s\n", disseg_last_error());
    return 1;
  }
  enum { H = 33, W = 47 };
  static uint8_t gray[H * W], labels[H * W];
  for (int i = 0; i < H * W; ++i) gray[i] = (uint8_t)(i * 7);
  const int k = disseg_num_classes(seg);
  float* tags = malloc(sizeof(float) * (size_t)k);
  CHECK(disseg_segment(seg, gray, H, W, 1, W, labels, tags) == DISSEG_OK);
  for (int i = 0; i < H * W; ++i) CHECK(labels[i] < k);
  for (int c = 0; c < k; ++c) CHECK(tags[c] >= 0.0f && tags[c] <= 1.0f);
  CHECK(strcmp(disseg_last_error(), "") == 0);
  printf("%s: %d classes, %d refinement steps, %s\n", model, k, disseg_iterations(seg), disseg_backend_name(seg));
  free(tags);
  disseg_destroy(seg);
  return 0;
}
