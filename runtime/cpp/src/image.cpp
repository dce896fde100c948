// Frames into the one format every backend takes, and resizing to and from the model (runtime/image.py).
#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "disseg/segmenter.hpp"

namespace disseg {
namespace {

cv::Mat high_byte(const cv::Mat& image) {  // v >> 8, as the Python runtime (convertTo would round)
  cv::Mat out(image.size(), CV_8UC(image.channels()));
  const int n = image.cols * image.channels();
  for (int y = 0; y < image.rows; ++y) {
    const auto* src = image.ptr<std::uint16_t>(y);
    auto* dst = out.ptr<std::uint8_t>(y);
    for (int x = 0; x < n; ++x) dst[x] = static_cast<std::uint8_t>(src[x] >> 8);
  }
  return out;
}

}  // namespace

cv::Mat to_bgr8(const cv::Mat& image, const std::string& source) {
  if (image.empty() || image.dims != 2)
    throw BadInput(source + ": expected an H x W (x C) image, got an empty or " + std::to_string(image.dims) +
                   "-D array");
  cv::Mat bytes;
  switch (image.depth()) {
    case CV_8U:
      bytes = image;
      break;
    case CV_16U:
      bytes = high_byte(image);
      break;
    case CV_32F:
    case CV_64F:
      image.convertTo(bytes, CV_8U, 255.0, 0.0);
      break;  // saturating, rounded: clip(v*255 + 0.5)
    default:
      throw BadInput(source + ": expected uint8, uint16 or float pixels, got OpenCV depth " +
                     std::to_string(image.depth()) + "; convert the image to 8-bit");
  }
  cv::Mat bgr;
  switch (bytes.channels()) {
    case 1:
      cv::cvtColor(bytes, bgr, cv::COLOR_GRAY2BGR);
      break;
    case 3:
      bgr = bytes.isContinuous() ? bytes : bytes.clone();
      break;
    case 4:
      cv::cvtColor(bytes, bgr, cv::COLOR_BGRA2BGR);
      break;
    default:
      throw BadInput(source + ": expected 1, 3 or 4 channels, got " + std::to_string(bytes.channels()) +
                     "; save it as RGB or grayscale");
  }
  return bgr;
}

// Area filter when shrinking, OpenCV's bit-exact bilinear when enlarging (equal on x86_64 and aarch64, whichever
// OpenCV build: plain INTER_LINEAR rounds differently there; runtime/image.py says more).
cv::Mat resize_to(const cv::Mat& image, int height, int width) {
  if (image.rows == height && image.cols == width) return image;
  const bool shrinking = static_cast<long long>(image.rows) * image.cols > static_cast<long long>(height) * width;
  cv::Mat out;
  cv::resize(image, out, cv::Size(width, height), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR_EXACT);
  return out;
}

cv::Mat resize_labels(const cv::Mat& labels, int height, int width) {
  if (labels.rows == height && labels.cols == width) return labels;
  cv::Mat out;
  cv::resize(labels, out, cv::Size(width, height), 0, 0, cv::INTER_NEAREST);
  return out;
}

cv::Rect letterbox_box(cv::Size frame, int height, int width) {
  const double r = std::min(static_cast<double>(height) / frame.height, static_cast<double>(width) / frame.width);
  // Python's round(): half to even, as Ultralytics (and runtime/image.py) compute it
  const auto py_round = [](double x) { return static_cast<int>(std::nearbyint(x)); };
  const int nh = py_round(frame.height * r), nw = py_round(frame.width * r);
  const int top = py_round((height - nh) / 2.0 - 0.1), left = py_round((width - nw) / 2.0 - 0.1);
  return {left, top, nw, nh};
}

cv::Mat fit_to(const cv::Mat& image, int height, int width, const std::string& resize, cv::Rect& box) {
  box = cv::Rect(0, 0, width, height);
  if (resize != "letterbox") return resize_to(image, height, width);
  box = letterbox_box(image.size(), height, width);
  cv::Mat canvas(height, width, CV_8UC3, cv::Scalar::all(kLetterboxPad));
  if (image.size() == box.size())
    image.copyTo(canvas(box));
  else
    cv::resize(image, canvas(box), box.size(), 0, 0, cv::INTER_LINEAR);  // as Ultralytics' LetterBox
  return canvas;
}

cv::Mat labels_back(const cv::Mat& labels, const cv::Rect& box, int height, int width) {
  return resize_labels(box.size() == labels.size() ? labels : labels(box), height, width);
}

}  // namespace disseg
