// libdisseg's I/O layer used as a library, the way an application other than dis_run_cpp would use it.
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "disseg/io.hpp"
#include "test_util.hpp"

namespace {

std::filesystem::path image_folder(const std::string& name, int count) {
  const auto dir = temp_dir(name);
  for (int i = 0; i < count; ++i) {
    cv::Mat img(40 + 8 * i, 56, CV_8UC3, cv::Scalar(20 * i, 90, 160));
    cv::circle(img, {28, 20}, 12, cv::Scalar(30, 200, 90), cv::FILLED);
    cv::imwrite((dir / ("f" + std::to_string(i) + ".png")).string(), img);
  }
  write_bytes(dir / "broken.png", "\x89PNG not really");
  return dir;
}

}  // namespace

TEST(IO, SourceSpecIsOneSourceOfAKind) {
  static_assert(!std::is_default_constructible_v<disseg::SourceSpec>, "a spec always names its source");
  const disseg::SourceSpec missing{disseg::ImageFiles{"/nonexistent/folder"}};
  EXPECT_TRUE(missing.file() && !missing.live() && missing.get<disseg::ImageFiles>());
  EXPECT_THROW(disseg::open_source(missing), disseg::SourceError);
  const disseg::SourceSpec pipeline = disseg::parse_source_uri("gst+live: videotestsrc ! appsink");
  ASSERT_NE(pipeline.get<disseg::GstPipeline>(), nullptr);
  EXPECT_EQ(pipeline.get<disseg::GstPipeline>()->kind, "live");
  EXPECT_EQ(pipeline.get<disseg::GstPipeline>()->pipeline, "videotestsrc ! appsink");
  EXPECT_TRUE(pipeline.live() && pipeline.replayable());
  EXPECT_EQ(disseg::parse_source_uri("v4l2:///dev/video3").get<disseg::Camera>()->index, 3);
}

TEST(IO, ImageSourceSkipsWhatItCannotDecode) {
  const disseg::SourceSpec spec{disseg::ImageFiles{image_folder("io-images", 3).string()}};
  auto source = disseg::open_source(spec);
  EXPECT_FALSE(source->live());
  std::vector<std::string> names;
  disseg::Frame frame;
  while (source->next(frame)) names.push_back(frame.name);
  EXPECT_EQ(names, (std::vector<std::string>{"f0", "f1", "f2"}));
  EXPECT_EQ(source->skipped, 1);
}

TEST(IO, RedactHidesThePasswordOnly) {
  // The cases both runtimes are held to (tests/redact_cases.json, also read by tests/runtime/test_credentials.py).
  const auto cases = nlohmann::json::parse(std::ifstream(DISSEG_REDACT_CASES_FILE))["cases"];
  ASSERT_GT(cases.size(), 10u);
  for (const auto& c : cases) {
    const std::string shown = disseg::redact(c[0].get<std::string>());
    EXPECT_EQ(shown, c[1].get<std::string>()) << c[0];
    EXPECT_EQ(shown.find("SECRET"), std::string::npos) << c[0];
  }
}

TEST(IO, PipelineWritesMasksAndStatsWithTheSharedKeys) {
  REQUIRE_TEST_MODEL();
  disseg::Segmenter seg(test_model(), {"onnxruntime", 1});
  disseg::SourceSpec spec{disseg::ImageFiles{image_folder("io-pipeline", 4).string()}};
  const auto out = temp_dir("io-out");
  disseg::MaskSink masks((out / "masks").string(), seg.info().palette);
  disseg::Stats stats(seg.class_names());
  std::atomic<bool> stop{false};
  disseg::PipelineOptions options;
  options.loops = 2;
  const auto counts = disseg::run_pipeline(seg, spec, {nullptr, &masks, nullptr}, options, stats, stop);
  EXPECT_EQ(stats.frames(), 8);
  EXPECT_EQ(masks.count, 8);
  EXPECT_EQ(counts.skipped, 2);                                                 // broken.png, once per pass
  EXPECT_TRUE(std::filesystem::is_regular_file(out / "masks" / "000007.png"));  // looped: one numbering
  stats.write((out / "stats.json").string(), {"m.onnx", seg.backend_name(), counts.skipped, counts.reconnects, false});
  const auto written = nlohmann::json::parse(std::ifstream(out / "stats.json"));
  std::set<std::string> keys;
  for (const auto& item : written.items()) keys.insert(item.key());
  EXPECT_EQ(keys, std::set<std::string>(disseg::stats_keys().begin(), disseg::stats_keys().end()));
  // The one list both test suites check (tests/stats_keys.json): C++ and Python cannot drift apart.
  const auto shared =
      nlohmann::json::parse(std::ifstream(DISSEG_STATS_KEYS_FILE))["keys"].get<std::vector<std::string>>();
  EXPECT_EQ(keys, std::set<std::string>(shared.begin(), shared.end()));
  EXPECT_EQ(written["frames"], 8);
  EXPECT_GE(written["frame_age_ms"]["p50"].get<double>(), 0.0);
}

TEST(IO, PipelineStopsWhenAskedAndFlushesWhatItCounted) {
  REQUIRE_TEST_MODEL();
  disseg::Segmenter seg(test_model(), {"onnxruntime", 1});
  disseg::SourceSpec spec{disseg::ImageFiles{image_folder("io-stop", 2).string()}};
  const auto out = temp_dir("io-stop-out");
  disseg::MaskSink masks((out / "masks").string(), seg.info().palette);
  disseg::Stats stats(seg.class_names());
  std::atomic<bool> stop{true};  // Ctrl-C before the first frame
  disseg::PipelineOptions options;
  options.loops = 1000;
  disseg::run_pipeline(seg, spec, {nullptr, &masks, nullptr}, options, stats, stop);
  EXPECT_EQ(masks.count, stats.frames());
  EXPECT_LT(stats.frames(), 2000);
}

TEST(IO, UniqueNamesFollowThePythonRule) {  // tests/test_faults.py holds the Python runtime to the same list
  const std::vector<std::string> paths{"x/a.JPG", "x/a.jpg", "x/a.png", "x/b.png", "y/b.jpg.png", "y/c.png", "z/c.png"};
  const std::vector<std::string> want{"a.JPG", "a.jpg-2", "a.png", "b", "b.jpg", "c.png", "c.png-2"};
  EXPECT_EQ(disseg::unique_names(paths), want);
  EXPECT_EQ(disseg::unique_names({"street.jpg", "Street.PNG"}), (std::vector<std::string>{"street.jpg", "Street.PNG"}));
}

TEST(IO, AFailedWriteLeavesTheOldFileAndNoTempFile) {
  const auto dir = temp_dir("atomic");
  const auto target = dir / "stats.json";
  write_bytes(target, "old");
  EXPECT_THROW(disseg::atomic_write(target.string(),
                                    [](const std::string& tmp) {
                                      std::ofstream(tmp) << "half";
                                      errno = ENOSPC;  // as a full disk reports it
                                      return false;
                                    }),
               disseg::WriteFailed);
  std::ifstream in(target);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "old");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files += entry.path() != target;
  EXPECT_EQ(files, 0);  // the temp file is gone
  disseg::atomic_write(target.string(),
                       [](const std::string& tmp) { return static_cast<bool>(std::ofstream(tmp) << "new"); });
  std::ifstream again(target);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(again), {}), "new");
}

TEST(IO, UnusableOutputsAreRefusedUpFront) {
  const auto dir = temp_dir("outputs");
  write_bytes(dir / "a-file", "x");
  EXPECT_THROW(disseg::check_output((dir / "a-file").string(), "--masks", true), disseg::BadInput);
  EXPECT_THROW(disseg::check_output(dir.string(), "--stats"), disseg::BadInput);
  EXPECT_THROW(disseg::check_output((dir / "a-file" / "s.json").string(), "--stats"), disseg::BadInput);
  EXPECT_NO_THROW(disseg::check_output((dir / "new" / "deeper" / "s.json").string(), "--stats"));
  EXPECT_NO_THROW(disseg::check_output((dir / "masks").string(), "--masks", true));
}
