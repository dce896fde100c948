#include <cctype>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "disseg/segmenter.hpp"
#include "test_util.hpp"

namespace {
cv::Mat textured(int h, int w, int seed) {
  cv::Mat img(h, w, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(img, cv::RNG::UNIFORM, 0, 256);
  cv::circle(img, {w / 2, h / 2}, std::min(h, w) / 3, cv::Scalar(30, 200, 90), cv::FILLED);
  return img;
}
}  // namespace

TEST(Segmenter, MissingAndForeignModelsFailWithOneLine) {
  try {
    disseg::Segmenter seg("/nonexistent/model.onnx");
    FAIL();
  } catch (const disseg::ModelFileError& err) {
    EXPECT_NE(std::string(err.what()).find("no such model file"), std::string::npos);
  }
  auto dir = temp_dir("foreign");
  write_bytes(dir / "x.onnx", std::string("\x08\x07", 2));  // ir_version only: an ONNX without our metadata
  EXPECT_THROW(disseg::Segmenter((dir / "x.onnx").string()), disseg::ModelFileError);
  EXPECT_THROW(disseg::Segmenter((dir / "x.onnx").string(), {"cuda", 0}), disseg::Error);
}

TEST(Segmenter, LabelsAtFrameSizeForAnyFrame) {
  REQUIRE_TEST_MODEL();
  disseg::Segmenter seg(test_model(), {"onnxruntime", 1});
  EXPECT_EQ(seg.backend_name(), "onnxruntime");
  for (auto [h, w, type] :
       {std::tuple{64, 64, CV_8UC3}, {1, 1, CV_8UC3}, {123, 301, CV_8UC1}, {50, 40, CV_8UC4}, {90, 70, CV_16UC3}}) {
    cv::Mat frame(h, w, type);
    cv::randu(frame, 0, type == CV_16UC3 ? 65536 : 256);
    disseg::Result r = seg.segment(frame);
    EXPECT_EQ(r.labels.size(), cv::Size(w, h));
    EXPECT_EQ(r.labels.type(), CV_8U);
    double lo, hi;
    cv::minMaxLoc(r.labels, &lo, &hi);
    EXPECT_LT(hi, seg.info().num_classes());
    EXPECT_EQ(static_cast<int>(r.tags.size()), seg.info().num_classes());  // the test model exports tags
    for (float t : r.tags) EXPECT_TRUE(t >= 0.f && t <= 1.f);
    EXPECT_GT(r.timings.infer_ms, 0);
  }
}

TEST(Segmenter, BatchEqualsOneByOne) {
  REQUIRE_TEST_MODEL();
  disseg::Segmenter seg(test_model(), {"onnxruntime", 1});
  std::vector<cv::Mat> frames{textured(64, 64, 1), textured(80, 120, 2), textured(30, 30, 3)};
  auto batch = seg.segment_batch(frames);
  ASSERT_EQ(batch.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i)
    EXPECT_EQ(cv::countNonZero(batch[i].labels != seg.segment(frames[i]).labels), 0) << i;
}

TEST(Segmenter, OverlayKeepsBackgroundAndBlendsClasses) {
  REQUIRE_TEST_MODEL();
  disseg::Segmenter seg(test_model(), {"onnxruntime", 1});
  cv::Mat frame = textured(64, 64, 4);
  disseg::Result r = seg.segment(frame);
  r.labels.setTo(0);
  r.labels(cv::Rect(0, 0, 32, 64)).setTo(1);  // left half class 1, right half background
  cv::Mat shown = seg.overlay(frame, r, 1.0);
  const auto& rgb = seg.info().palette[1];
  EXPECT_EQ(shown.at<cv::Vec3b>(10, 10), cv::Vec3b(rgb[2], rgb[1], rgb[0]));
  EXPECT_EQ(shown.at<cv::Vec3b>(10, 50), frame.at<cv::Vec3b>(10, 50));
  EXPECT_THROW(seg.overlay(textured(10, 10, 5), r), disseg::BadInput);
  cv::Mat colour = seg.colorize(r.labels);
  EXPECT_EQ(colour.at<cv::Vec3b>(0, 40),
            cv::Vec3b(seg.info().palette[0][2], seg.info().palette[0][1], seg.info().palette[0][0]));
}

TEST(Segmenter, EngineWithoutTensorRTIsRefusedClearly) {
  auto dir = temp_dir("engine");
  write_bytes(dir / "m.engine", "x");
  write_bytes(
      dir / "m.engine.json",
      R"({"disseg": {"schema": "disseg-model/1", "input_name": "image", "input_height": 8, "input_width": 8, "batch": 1,
                 "class_names": ["bg"], "palette": [[0, 0, 0]], "iterations": 0, "step_size": 1, "tag_weight": 0,
                 "precision": "fp32", "outputs": ["labels"], "extra": {"engine": {"tensorrt_version": "0", "gpu_name": "none",
                 "compute_capability": "0"}}}})");
  try {
    disseg::Segmenter seg((dir / "m.engine").string(), {"onnxruntime", 0});
    FAIL();
  } catch (const disseg::BadInput& err) {
    EXPECT_NE(std::string(err.what()).find(".onnx it was built from"), std::string::npos);
  }
}

// The test model's sibling exported with --scene-tags (tests/make_test_model.py): the same checkpoint.
TEST(Segmenter, SceneTagsRestrictLabelsAndAllOnesIsThePlainModel) {
  REQUIRE_TEST_MODEL();
  const std::string tagged = std::filesystem::path(test_model()).replace_extension(".scene-tags.onnx").string();
  if (!std::filesystem::exists(tagged)) GTEST_SKIP() << tagged << " is missing (tests/make_test_model.py writes it)";
  disseg::Segmenter plain(test_model(), {"onnxruntime", 1}), seg(tagged, {"onnxruntime", 1});
  ASSERT_EQ(seg.info().scene_tags, "energy+mask");
  const int k = seg.info().num_classes();
  std::vector<cv::Mat> frames{textured(64, 64, 4), textured(80, 120, 5), textured(30, 50, 6)};
  for (const auto& frame : frames)  // no tags: all ones, the model without them
    EXPECT_EQ(cv::countNonZero(plain.segment(frame).labels != seg.segment(frame).labels), 0);
  std::vector<float> two(k, 0.0f), one(k, 0.0f);
  two[1] = two[2] = 1.0f;
  one[3] = 1.0f;
  auto batch = seg.segment_batch(frames, {two, one, {}});
  for (int i = 0; i < 2; ++i) {
    const cv::Mat& labels = batch[i].labels;
    const int allowed = i == 0 ? cv::countNonZero((labels == 1) | (labels == 2)) : cv::countNonZero(labels == 3);
    EXPECT_EQ(allowed, labels.rows * labels.cols) << "frame " << i << " has labels its tags exclude";
  }
  EXPECT_EQ(cv::countNonZero(batch[2].labels != seg.segment(frames[2]).labels), 0);
  seg.set_scene_tags(two);  // the Segmenter's own tags: what a frame without its own gets
  EXPECT_EQ(cv::countNonZero(seg.segment(frames[0]).labels != batch[0].labels), 0);
  EXPECT_EQ(disseg::scene_tag_vector(seg.info(), {seg.class_names()[4]})[0], 1.0f);  // background kept
  std::string shouted = " " + seg.class_names()[1] + " ";  // names are trimmed and matched ignoring case
  for (auto& c : shouted) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(disseg::scene_tag_vector(seg.info(), {shouted}),
            disseg::scene_tag_vector(seg.info(), {seg.class_names()[1]}));
  EXPECT_THROW(disseg::scene_tag_vector(seg.info(), {" ", ""}), disseg::BadInput);
  EXPECT_THROW(seg.set_scene_tags(std::vector<float>(2, 1.0f)), disseg::BadInput);
  EXPECT_THROW(disseg::scene_tag_vector(seg.info(), {"boat"}), disseg::BadInput);
  EXPECT_THROW(plain.set_scene_tags(two), disseg::BadInput);
}
