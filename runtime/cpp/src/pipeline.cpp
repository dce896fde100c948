// The threaded loop of the I/O layer (include/disseg/io.hpp): runtime/pipeline.py in C++.
#include <condition_variable>
#include <deque>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include "disseg/io.hpp"
#include "util.hpp"

namespace disseg {
namespace {

// A bounded hand-over between threads: a file source never runs far ahead of inference, nothing grows.
template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity) {}
  void push(T value) {  // waits for room; dropped once the consumer has gone
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return items_.size() < capacity_ || abandoned_; });
    if (abandoned_) return;
    items_.push_back(std::move(value));
    not_empty_.notify_one();
  }
  bool pop(T& value) {  // false once the producer has finished and everything was taken
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return !items_.empty() || finished_; });
    if (items_.empty()) return false;
    value = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void finish() {  // producer: no more items
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
    not_empty_.notify_all();
  }
  void abandon() {  // consumer: stop taking; unblock the producer
    std::lock_guard<std::mutex> lock(mutex_);
    abandoned_ = finished_ = true;
    items_.clear();
    not_full_.notify_all();
    not_empty_.notify_all();
  }

 private:
  std::size_t capacity_;
  std::deque<T> items_;
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  bool finished_ = false, abandoned_ = false;
};

struct Done {
  Frame frame;
  Result result;
  double fps = 0;
};

// Reads frames into `inbox` until the source ends, `max_frames` or `stop`; a looped file source is reopened at its
// end and its frames numbered on (one numbering across the passes, as the Python runtime).
void read_frames(std::unique_ptr<Source>& source, const SourceSpec& spec, const PipelineOptions& options,
                 BoundedQueue<Frame>& inbox, Counters& counters, const std::atomic<bool>& stop) {
  int read = 0, loops = options.loops;
  Frame frame;
  while (!stop && (options.max_frames == 0 || read < options.max_frames)) {
    if (!source->next(frame)) {
      if (source->truncated) counters.truncated = source->truncated;
      if (--loops < 1) break;
      counters.skipped += source->skipped;
      try {
        source = open_source(spec, &stop);
      } catch (const Error& err) {
        std::cerr << "stopped looping: " << err.what() << "\n";
        break;
      }
      continue;
    }
    if (options.loops > 1) frame.name = frame_name(read);
    ++read;
    inbox.push(std::move(frame));
  }
}

// Renders and writes what was segmented; sets `stop` when the window is closed.
void write_frames(Segmenter& seg, const Sinks& sinks, const RenderOptions& options, BoundedQueue<Done>& outbox,
                  std::atomic<bool>& stop) {
  Done done;
  while (outbox.pop(done)) {
    if (sinks.masks) sinks.masks->write(done.frame.name, done.result.labels);
    if (!sinks.video && !sinks.window) continue;
    const cv::Mat shown = render(seg, done.frame, done.result, options, done.fps);
    if (sinks.video) sinks.video->write(shown);
    if (sinks.window) {
      sinks.window->write(shown);
      if (sinks.window->closed()) stop = true;
    }
  }
}

}  // namespace

Counters run_pipeline(Segmenter& seg, const SourceSpec& spec, const Sinks& sinks, const PipelineOptions& options,
                      Stats& stats, std::atomic<bool>& stop) {
  Counters counters;
  run_pipeline(seg, spec, sinks, options, stats, stop, counters);
  return counters;
}

void run_pipeline(Segmenter& seg, const SourceSpec& spec, const Sinks& sinks, const PipelineOptions& options,
                  Stats& stats, std::atomic<bool>& stop, Counters& counters) {
  std::unique_ptr<Source> source = open_source(spec, &stop);
  if (sinks.video && spec.video) sinks.video->set_fps(source->fps());  // a video file keeps its frame rate
  // A live source waits at one frame (it keeps replacing it with the newest); a file never runs far ahead.
  BoundedQueue<Frame> inbox(source->live() ? 1 : 8);
  BoundedQueue<Done> outbox(8);
  std::exception_ptr reader_error, writer_error;
  std::thread reader([&] {
    try {
      read_frames(source, spec, options, inbox, counters, stop);
    } catch (...) {  // e.g. a decoder error: stop, and report it once the threads are joined
      reader_error = std::current_exception();
      stop = true;
    }
    inbox.finish();
  });
  std::thread writer([&] {
    try {
      write_frames(seg, sinks, options.render, outbox, stop);
    } catch (...) {
      writer_error = std::current_exception();
      stop = true;
      outbox.abandon();
    }
  });
  Frame frame;
  while (!stop && inbox.pop(frame)) {
    const auto started = Clock::now();
    Result r = seg.segment(frame.image);
    stats.add(frame, r, started);
    outbox.push({std::move(frame), std::move(r), stats.fps()});
  }
  inbox.abandon();  // unblock the reader if it waits for room
  reader.join();
  outbox.finish();  // the writer drains what was segmented, so every counted frame is written
  writer.join();
  counters.skipped += source->skipped;
  counters.reconnects = source->reconnects;
  std::exception_ptr close_error;
  if (sinks.video) {  // closed even after the masks failed: a full disk for one sink must not cost the other
    try {
      sinks.video->close();
    } catch (...) {
      close_error = std::current_exception();
    }
  }
  if (reader_error) std::rethrow_exception(reader_error);
  if (writer_error) std::rethrow_exception(writer_error);
  if (close_error) std::rethrow_exception(close_error);
}

}  // namespace disseg
