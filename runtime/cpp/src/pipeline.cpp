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
  // Never waits: an item still there is replaced (a live source's stale frame); true when one was.
  bool push_newest(T value) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (abandoned_) return false;
    const bool replaced = items_.size() >= capacity_;
    if (replaced) items_.pop_front();
    items_.push_back(std::move(value));
    not_empty_.notify_one();
    return replaced;
  }
  // Without waiting: 1 an item was taken, 0 none there yet, -1 the producer has finished and all were taken.
  int try_pop(T& value) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (items_.empty()) return finished_ ? -1 : 0;
    value = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return 1;
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

// Readers signal here that a frame arrived, so a round with nothing to take waits without spinning.
class Arrivals {
 public:
  void notify() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++count_;
    cond_.notify_all();
  }
  void wait_after(std::uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    cond_.wait_for(lock, timeout, [&] { return count_ != seen; });
  }
  std::uint64_t count() {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cond_;
  std::uint64_t count_ = 0;
};

struct Done {
  int stream = 0;
  Frame frame;
  Result result;
  double fps = 0;
};

// One stream while it runs: its source, the frames read ahead of inference and what was counted.
struct Running {
  const Stream* stream;
  std::unique_ptr<Source> source;
  std::unique_ptr<BoundedQueue<Frame>> inbox;
  StreamFacts facts;
  bool ended = false;
  int frames = 0;
  std::exception_ptr error;
  std::thread reader;
};

// Reads frames into `inbox` until the source ends, `max_frames` or `stop`; a looped file source is reopened at its
// end and its frames numbered on (one numbering across the passes, as the Python runtime).
void read_frames(Running& r, const PipelineOptions& options, Arrivals& arrivals, const std::atomic<bool>& stop) {
  int read = 0, loops = options.loops;
  Frame frame;
  while (!stop && (options.max_frames == 0 || read < options.max_frames)) {
    if (!r.source->next(frame)) {
      if (r.source->truncated) r.facts.truncated = r.source->truncated;
      if (--loops < 1 || r.source->live()) break;
      r.facts.skipped += r.source->skipped;
      try {
        r.source = open_source(r.stream->spec, &stop);
      } catch (const Error& err) {
        std::cerr << "stopped looping: " << err.what() << "\n";
        break;
      }
      continue;
    }
    if (options.loops > 1) frame.name = frame_name(read);
    ++read;
    if (r.source->live()) {  // keep only the newest: a live frame never waits behind an older one (counted)
      if (r.inbox->push_newest(std::move(frame))) ++r.facts.skipped;
    } else {
      r.inbox->push(std::move(frame));
    }
    arrivals.notify();
  }
}

// Renders and writes what was segmented into its stream's sinks; sets `stop` when a window is closed.
void write_frames(Segmenter& seg, const std::vector<Stream>& streams, const RenderOptions& options,
                  BoundedQueue<Done>& outbox, std::atomic<bool>& stop) {
  Done done;
  while (outbox.pop(done)) {
    const Stream& stream = streams[done.stream];
    const Sinks& sinks = stream.sinks;
    if (sinks.events)
      sinks.events->write(done.stream, describe(stream.spec), done.frame, done.result, stream.scene_tags);
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

// The next round: a frame from every stream that has one (a file stream's next, waited for; a live stream's newest,
// if there); waits until there is at least one. Empty once every stream has ended or `stop` is set.
std::vector<std::pair<int, Frame>> gather(std::vector<Running>& running, Arrivals& arrivals,
                                          const std::atomic<bool>& stop) {
  std::vector<std::pair<int, Frame>> batch;
  while (!stop) {
    const std::uint64_t seen = arrivals.count();
    bool all_ended = true;
    for (std::size_t i = 0; i < running.size(); ++i) {
      Running& r = running[i];
      if (r.ended) continue;
      Frame frame;
      const int got = r.source->live() ? r.inbox->try_pop(frame) : (r.inbox->pop(frame) ? 1 : -1);
      if (got < 0) r.ended = true;
      if (got > 0) batch.emplace_back(static_cast<int>(i), std::move(frame));
      all_ended = all_ended && r.ended;
    }
    if (!batch.empty() || all_ended) break;
    arrivals.wait_after(seen, std::chrono::milliseconds(50));
  }
  return batch;
}

// Segments rounds until every stream has ended or `stop` is set; hands each result to the writer.
void infer_rounds(Segmenter& seg, std::vector<Running>& running, Arrivals& arrivals, BoundedQueue<Done>& outbox,
                  Stats& stats, const std::atomic<bool>& stop) {
  const auto started_run = Clock::now();
  for (auto batch = gather(running, arrivals, stop); !batch.empty(); batch = gather(running, arrivals, stop)) {
    std::vector<cv::Mat> images;
    std::vector<std::vector<float>> tags;
    for (const auto& item : batch) {
      images.push_back(item.second.image);
      tags.push_back(running[item.first].stream->scene_tags);
    }
    const auto started = Clock::now();
    std::vector<Result> results = seg.segment_batch(images, tags);
    stats.add_batches(seg.batch_plan(static_cast<int>(images.size())));
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const int i = batch[k].first;
      stats.add(batch[k].second, results[k], started, i);
      const double wall = std::chrono::duration<double>(Clock::now() - started_run).count();
      const double fps = wall > 0 ? ++running[i].frames / wall : 0.0;
      outbox.push({i, std::move(batch[k].second), std::move(results[k]), fps});
    }
  }
}

// Every source opened in order, before any thread runs: a bad source fails the run with nothing started.
std::vector<Running> open_streams(const std::vector<Stream>& streams, std::atomic<bool>& stop) {
  std::vector<Running> running(streams.size());
  for (std::size_t i = 0; i < streams.size(); ++i) {
    running[i].stream = &streams[i];
    running[i].source = open_source(streams[i].spec, &stop);
    // A live source waits at one frame (it keeps replacing it with the newest); a file never runs far ahead.
    running[i].inbox = std::make_unique<BoundedQueue<Frame>>(running[i].source->live() ? 1 : 8);
    if (streams[i].sinks.video && streams[i].spec.get<VideoFile>())
      streams[i].sinks.video->set_fps(running[i].source->fps());  // a video file keeps its frame rate
  }
  return running;
}

// Each stream's facts into the counters and every video closed (even after a sink failed: other disks keep theirs);
// the first error seen is kept in `first_error`.
void finish_streams(const std::vector<Stream>& streams, std::vector<Running>& running, Counters& counters,
                    std::exception_ptr& first_error) {
  for (std::size_t i = 0; i < running.size(); ++i) {
    Running& r = running[i];
    r.facts.skipped += r.source->skipped;
    r.facts.reconnects = r.source->reconnects;
    counters.streams.push_back(r.facts);
    counters.skipped += r.facts.skipped;
    counters.reconnects += r.facts.reconnects;
    if (r.facts.truncated && !counters.truncated) counters.truncated = r.facts.truncated;
    if (r.error && !first_error) first_error = r.error;
    if (VideoSink* video = streams[i].sinks.video) {
      try {
        video->close();
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
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
  run_pipeline(seg, std::vector<Stream>{{spec, sinks, {}}}, options, stats, stop, counters);
}

void run_pipeline(Segmenter& seg, const std::vector<Stream>& streams, const PipelineOptions& options, Stats& stats,
                  std::atomic<bool>& stop, Counters& counters) {
  std::vector<Running> running = open_streams(streams, stop);
  Arrivals arrivals;
  BoundedQueue<Done> outbox(8 * streams.size());
  std::exception_ptr writer_error;
  for (Running& r : running)
    r.reader = std::thread([&r, &options, &arrivals, &stop] {
      try {
        read_frames(r, options, arrivals, stop);
      } catch (...) {  // e.g. a decoder error: stop, and report it once the threads are joined
        r.error = std::current_exception();
        stop = true;
      }
      r.inbox->finish();
      arrivals.notify();
    });
  std::thread writer([&] {
    try {
      write_frames(seg, streams, options.render, outbox, stop);
    } catch (...) {
      writer_error = std::current_exception();
      stop = true;
      outbox.abandon();
    }
  });
  // Whatever happens in inference (a backend that throws mid-run), the threads are stopped and joined and every sink
  // closed before the error goes on: never std::terminate with joinable threads, never a video left unfinished.
  std::exception_ptr infer_error;
  try {
    infer_rounds(seg, running, arrivals, outbox, stats, stop);
  } catch (...) {
    infer_error = std::current_exception();
    stop = true;
  }
  for (Running& r : running) {
    r.inbox->abandon();  // unblock the reader if it waits for room
    r.reader.join();
  }
  for (Running& r : running) r.source->interrupt();  // every live source's thread ends at once, not one by one
  outbox.finish();  // the writer drains what was segmented, so every counted frame is written
  writer.join();
  std::exception_ptr first_error = infer_error ? infer_error : writer_error;
  finish_streams(streams, running, counters, first_error);
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace disseg
