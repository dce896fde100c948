#include <opencv2/core.hpp>

#include "disseg/disseg.h"
#include "disseg/segmenter.hpp"
#include "test_util.hpp"

TEST(CApi, ErrorsAreStatusesWithOneLine) {
  disseg_segmenter* seg = reinterpret_cast<disseg_segmenter*>(0x1);
  EXPECT_EQ(disseg_create("/nonexistent.onnx", nullptr, 0, &seg), DISSEG_BAD_INPUT);
  EXPECT_EQ(seg, nullptr);
  EXPECT_NE(std::string(disseg_last_error()).find("no such model file"), std::string::npos);
  EXPECT_EQ(disseg_create(nullptr, nullptr, 0, &seg), DISSEG_BAD_INPUT);
  EXPECT_EQ(disseg_num_classes(nullptr), 0);
  EXPECT_EQ(disseg_class_name(nullptr, 0), nullptr);
}

TEST(CApi, SegmentMatchesTheCppApiOnStridedFrames) {
  REQUIRE_TEST_MODEL();
  disseg_segmenter* seg = nullptr;
  ASSERT_EQ(disseg_create(test_model().c_str(), "onnxruntime", 1, &seg), DISSEG_OK) << disseg_last_error();
  const int k = disseg_num_classes(seg);
  ASSERT_GT(k, 1);
  EXPECT_NE(disseg_class_name(seg, k - 1), nullptr);
  EXPECT_EQ(disseg_class_name(seg, k), nullptr);
  std::uint8_t rgb[3];
  EXPECT_EQ(disseg_palette(seg, 0, rgb), DISSEG_OK);
  EXPECT_EQ(disseg_palette(seg, k, rgb), DISSEG_BAD_INPUT);
  cv::Mat padded(70, 100, CV_8UC3);  // a 70 x 90 view with 30 bytes of padding per row
  cv::randu(padded, 0, 256);
  cv::Mat view = padded(cv::Rect(0, 0, 90, 70));
  std::vector<std::uint8_t> labels(70 * 90);
  std::vector<float> tags(k);
  ASSERT_EQ(disseg_segment(seg, view.data, 70, 90, 3, view.step, labels.data(), tags.data()), DISSEG_OK)
      << disseg_last_error();
  disseg::Segmenter cpp(test_model(), {"onnxruntime", 1});
  disseg::Result r = cpp.segment(view);
  EXPECT_EQ(cv::countNonZero(cv::Mat(70, 90, CV_8U, labels.data()) != r.labels), 0);
  for (int c = 0; c < k; ++c) EXPECT_FLOAT_EQ(tags[c], r.tags[c]);
  EXPECT_EQ(disseg_segment(seg, view.data, 70, 90, 2, view.step, labels.data(), nullptr), DISSEG_BAD_INPUT);
  EXPECT_EQ(disseg_segment(seg, view.data, 70, 90, 3, 10, labels.data(), nullptr), DISSEG_BAD_INPUT);
  EXPECT_NE(std::string(disseg_last_error()).find("row_stride"), std::string::npos);
  disseg_destroy(seg);
}
