// Sinks and the rendered view for the I/O layer (include/disseg/io.hpp): runtime/sinks.py in C++.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <png.h>
#include <opencv2/highgui.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "disseg/io.hpp"

namespace fs = std::filesystem;

namespace disseg {

struct VideoSink::Impl {
  fs::path path;
  double fps = kDefaultFps;
  bool mp4 = true;
  std::unique_ptr<AtomicFile> file;
  cv::VideoWriter writer;
  cv::Size size;
  int frames = 0;
};

namespace {
constexpr int kCheckSpaceEvery = 100;  // frames: a disk that filled up mid-run stops the run instead of running on
}

VideoSink::VideoSink(const std::string& path_arg, double fps) : impl_(std::make_unique<Impl>()) {
  const fs::path path(path_arg);
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  if (ext != ".mp4" && ext != ".avi" && ext != ".mkv")
    throw BadInput("--output " + path_arg + ": expected a .mp4, .avi or .mkv file");
  check_output(path_arg, "--output");
  impl_->path = path;
  impl_->fps = fps;
  impl_->mp4 = ext == ".mp4";
}

VideoSink::~VideoSink() {
  try {
    close();
  } catch (...) {  // a destructor must not throw; close() explicitly to see the error
  }
}

void VideoSink::write(const cv::Mat& image) {
  Impl& v = *impl_;
  if (!v.writer.isOpened()) {
    v.file = std::make_unique<AtomicFile>(v.path.string());
    const int fourcc =
        v.mp4 ? cv::VideoWriter::fourcc('m', 'p', '4', 'v') : cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
    if (!v.writer.open(v.file->tmp(), fourcc, v.fps, image.size())) {
      v.file.reset();
      throw BadInput("--output " + v.path.string() + ": OpenCV cannot write this video format here");
    }
    v.size = image.size();
  }
  if (image.size() != v.size) {  // images of other sizes: a video has one (OpenCV would drop the others)
    cv::Mat resized;
    cv::resize(image, resized, v.size, 0, 0, cv::INTER_AREA);
    v.writer.write(resized);
  } else {
    v.writer.write(image);
  }
  ++v.frames;
  if (v.frames % kCheckSpaceEvery == 0 &&
      !disk_reason(v.path.parent_path().empty() ? "." : v.path.parent_path().string()).empty())
    throw v.file->fail("");
}

void VideoSink::close() {
  Impl& v = *impl_;
  if (!v.writer.isOpened()) return;
  v.writer.release();
  std::unique_ptr<AtomicFile> file = std::move(v.file);  // removed on any error below
  // The finished file holds every frame written, the last one readable (a full disk cuts the trailer).
  cv::VideoCapture check(file->tmp());
  const int found = check.isOpened() ? static_cast<int>(check.get(cv::CAP_PROP_FRAME_COUNT)) : 0;
  bool last_ok = false;
  if (found == v.frames) {
    check.set(cv::CAP_PROP_POS_FRAMES, v.frames - 1);
    cv::Mat last;
    last_ok = check.read(last);
  }
  check.release();
  if (found != v.frames || !last_ok)
    throw file->fail("the finished video holds " + std::to_string(found) + " of " + std::to_string(v.frames) +
                     " frames");
  file->commit();
}

int VideoSink::frames() const { return impl_->frames; }

void VideoSink::set_fps(double fps) { impl_->fps = fps; }

namespace {

// libpng, since OpenCV cannot write palette PNGs. False (errno set) when the file could not be written whole.
bool write_palette_png(const fs::path& path, const cv::Mat& labels, const std::vector<png_color>& palette) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  bool ok = png && info && !setjmp(png_jmpbuf(png));
  if (ok) {
    png_init_io(png, file);
    png_set_IHDR(png, info, labels.cols, labels.rows, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_PLTE(png, info, palette.data(), static_cast<int>(palette.size()));
    png_write_info(png, info);
    for (int y = 0; y < labels.rows; ++y) png_write_row(png, labels.ptr<png_byte>(y));
    png_write_end(png, nullptr);
  }
  png_destroy_write_struct(png ? &png : nullptr, info ? &info : nullptr);
  ok = std::fflush(file) == 0 && !std::ferror(file) && ok;
  const int err = errno;
  ok = std::fclose(file) == 0 && ok;
  if (!ok && errno == 0) errno = err;
  return ok;
}

}  // namespace

MaskSink::MaskSink(const std::string& folder, const std::vector<std::array<std::uint8_t, 3>>& palette)
    : folder_(folder), palette_(palette) {
  check_output(folder, "--masks", true);
  palette_.resize(256, {0, 0, 0});
}

void MaskSink::write(const std::string& name, const cv::Mat& labels) {
  const std::string target = (fs::path(folder_) / (name + ".png")).string();
  if (labels.type() != CV_8U) {  // above 256 classes: a 16-bit grayscale PNG of class indices (as runtime/sinks.py)
    cv::Mat wide;
    labels.convertTo(wide, CV_16U);
    std::vector<std::uint8_t> data;
    if (!cv::imencode(".png", wide, data)) throw BadInput("--masks: OpenCV cannot encode a 16-bit PNG here");
    atomic_write(target, [&](const std::string& tmp) {
      std::FILE* file = std::fopen(tmp.c_str(), "wb");
      const bool ok = file && std::fwrite(data.data(), 1, data.size(), file) == data.size();
      return (file && std::fclose(file) == 0) && ok;
    });
    ++count;
    return;
  }
  std::vector<png_color> palette;
  for (const auto& rgb : palette_) palette.push_back({rgb[0], rgb[1], rgb[2]});
  atomic_write(target, [&](const std::string& tmp) { return write_palette_png(tmp, labels, palette); });
  ++count;
}

WindowSink::~WindowSink() { cv::destroyWindow(title_); }

void WindowSink::write(const cv::Mat& image) {
  cv::imshow(title_, image);
  const int key = cv::waitKey(1) & 0xFF;
  if (key == 27 || key == 'q') closed_ = true;
}

namespace {

void draw_legend(cv::Mat& shown, const Segmenter& seg, const cv::Mat& labels, double scale) {
  std::vector<bool> present(seg.info().num_classes(), false);
  for (int y = 0; y < labels.rows; ++y)
    for (int x = 0; x < labels.cols; ++x) {
      const int c = labels.type() == CV_8U ? labels.at<std::uint8_t>(y, x) : labels.at<std::int32_t>(y, x);
      if (c >= 0 && c < static_cast<int>(present.size())) present[c] = true;
    }
  int row = 0;
  for (int c = 0; c < static_cast<int>(present.size()); ++c) {
    if (!present[c]) continue;
    const int y = static_cast<int>((10 + 22 * row++) * scale);
    const auto& rgb = seg.info().palette[c];
    cv::rectangle(shown, {int(8 * scale), y}, {int(26 * scale), y + int(16 * scale)},
                  cv::Scalar(rgb[2], rgb[1], rgb[0]), cv::FILLED);
    cv::putText(shown, seg.class_names()[c], {int(32 * scale), y + int(14 * scale)}, cv::FONT_HERSHEY_SIMPLEX,
                0.5 * scale, {255, 255, 255}, 1, cv::LINE_AA);
  }
}

}  // namespace

cv::Mat render(const Segmenter& seg, const Frame& frame, const Result& r, const RenderOptions& options, double fps) {
  cv::Mat shown;
  if (options.view == "mask") {
    shown = seg.colorize(r.labels);
  } else if (options.view == "side-by-side") {
    cv::hconcat(frame.image, seg.colorize(r.labels), shown);
  } else {
    shown = seg.overlay(frame.image, r, options.alpha);
  }
  const double scale = std::max(0.4, std::min(shown.rows, 720) / 720.0);
  if (options.legend) draw_legend(shown, seg, r.labels, scale);
  char text[64];
  std::snprintf(text, sizeof text, "%.1f FPS  %.1f ms", fps, r.timings.infer_ms);
  cv::putText(shown, text, {int(8 * scale), shown.rows - int(10 * scale)}, cv::FONT_HERSHEY_SIMPLEX, 0.6 * scale,
              {255, 255, 255}, 1, cv::LINE_AA);
  return shown;
}

}  // namespace disseg
