#include <opencv2/imgproc.hpp>

#include "disseg/segmenter.hpp"
#include "test_util.hpp"

TEST(Image, ToBgr8ConvertsEveryAcceptedFormat) {
  cv::Mat gray(5, 7, CV_8U, cv::Scalar(200));
  cv::Mat out = disseg::to_bgr8(gray);
  EXPECT_EQ(out.type(), CV_8UC3);
  EXPECT_EQ(out.at<cv::Vec3b>(2, 3), cv::Vec3b(200, 200, 200));
  cv::Mat bgra(5, 7, CV_8UC4, cv::Scalar(1, 2, 3, 4));
  EXPECT_EQ(disseg::to_bgr8(bgra).at<cv::Vec3b>(0, 0), cv::Vec3b(1, 2, 3));
  cv::Mat deep(2, 3, CV_16UC3);
  const std::uint16_t values[] = {0, 255, 256, 511, 65535, 32768};
  for (int i = 0; i < 6; ++i) deep.at<cv::Vec3w>(i / 3, i % 3) = cv::Vec3w(values[i], values[i], values[i]);
  cv::Mat high = disseg::to_bgr8(deep);
  const std::uint8_t expected[] = {0, 0, 1, 1, 255, 128};  // the high byte, as the Python runtime's `>> 8`
  for (int i = 0; i < 6; ++i) EXPECT_EQ(high.at<cv::Vec3b>(i / 3, i % 3)[0], expected[i]) << values[i];
  cv::Mat unit(1, 2, CV_32FC3, cv::Scalar(0.5, 1.5, -1));
  EXPECT_EQ(disseg::to_bgr8(unit).at<cv::Vec3b>(0, 1), cv::Vec3b(128, 255, 0));
}

TEST(Image, ToBgr8RejectsWhatItCannotTake) {
  EXPECT_THROW(disseg::to_bgr8(cv::Mat()), disseg::BadInput);
  EXPECT_THROW(disseg::to_bgr8(cv::Mat(4, 4, CV_8UC2)), disseg::BadInput);
  EXPECT_THROW(disseg::to_bgr8(cv::Mat(4, 4, CV_32SC3)), disseg::BadInput);
}

TEST(Image, ResizeRules) {
  cv::Mat big(100, 60, CV_8UC3), small(10, 6, CV_8UC3);
  cv::randu(big, 0, 256);
  cv::randu(small, 0, 256);
  cv::Mat area, linear;
  cv::resize(big, area, {30, 50}, 0, 0, cv::INTER_AREA);
  cv::resize(small, linear, {30, 50}, 0, 0, cv::INTER_LINEAR_EXACT);
  EXPECT_EQ(cv::norm(disseg::resize_to(big, 50, 30), area, cv::NORM_INF), 0);
  EXPECT_EQ(cv::norm(disseg::resize_to(small, 50, 30), linear, cv::NORM_INF), 0);
  EXPECT_EQ(disseg::resize_to(big, 100, 60).data, big.data);  // the model's size: no copy
  cv::Mat labels = (cv::Mat_<std::uint8_t>(2, 2) << 0, 1, 2, 3);
  cv::Mat up = disseg::resize_labels(labels, 4, 6);
  EXPECT_EQ(up.size(), cv::Size(6, 4));
  double lo, hi;
  cv::minMaxLoc(up, &lo, &hi);
  EXPECT_EQ(hi, 3);  // nearest: no blended classes
  EXPECT_EQ(up.at<std::uint8_t>(3, 5), 3);
}
