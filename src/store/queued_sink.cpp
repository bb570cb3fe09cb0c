#include "store/queued_sink.h"

#include <algorithm>

namespace nfm {

void QueuedSink::write(const Frame& frame) {
  write_shared(std::make_shared<const Frame>(frame));
}

void QueuedSink::write_shared(const std::shared_ptr<const Frame>& frame) {
  {
    std::lock_guard lock(mutex_);
    if (abandoned_) {
      ++stats_.frames_dropped;
      return;
    }
    queue_.push_back(frame);
    // The oldest waiting frames go first; a batch being delivered stays whole.
    const size_t held = policy_.retry ? in_flight_ : 0;
    while (queue_.size() + held > std::max<size_t>(policy_.limit, 1) && !queue_.empty()) {
      queue_.pop_front();
      ++stats_.frames_dropped;
    }
  }
  wake_.notify_all();
}

bool QueuedSink::flush_until(std::chrono::steady_clock::time_point deadline) {
  deadline = std::min(deadline, std::chrono::steady_clock::now() + policy_.flush_wait);
  std::unique_lock lock(mutex_);
  ++flushing_;
  wake_.notify_all();
  const bool drained =
      idle_.wait_until(lock, deadline, [&] { return queue_.empty() && in_flight_ == 0; });
  --flushing_;
  return drained;
}

uint64_t QueuedSink::abandon() {
  std::lock_guard lock(mutex_);
  abandoned_ = true;
  const uint64_t dropped = queue_.size();
  stats_.frames_dropped += dropped;
  queue_.clear();
  wake_.notify_all();
  return dropped;
}

bool QueuedSink::busy() const {
  std::lock_guard lock(mutex_);
  return in_flight_ > 0;
}

void QueuedSink::count_expired(uint64_t frames) {
  std::lock_guard lock(mutex_);
  stats_.frames_expired += frames;
}

void QueuedSink::forget_vm(const VmIdentity& vm) {
  std::lock_guard lock(mutex_);
  forget_.push_back(vm.name);
}

SinkStats QueuedSink::stats() const {
  std::lock_guard lock(mutex_);
  SinkStats s = stats_;
  s.frames_buffered = queue_.size() + in_flight_;
  return s;
}

void QueuedSink::start_writer() {
  thread_ = std::thread([this] { run(); });
}

void QueuedSink::stop_writer() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void QueuedSink::run() {
  std::unique_lock lock(mutex_);
  Batch batch;  // taken off the queue, not yet delivered
  auto backoff = std::chrono::milliseconds(0);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !batch.empty() || !queue_.empty(); });
    // Stopping: a retrying sink leaves at once (its server may be gone for good);
    // the others write what is queued first.
    if (stop_ && (policy_.retry || (batch.empty() && queue_.empty()))) break;
    if (abandoned_ && !batch.empty()) {  // a failed batch is not tried again
      stats_.frames_dropped += batch.size();
      batch.clear();
      in_flight_ = 0;
      idle_.notify_all();
      continue;
    }
    if (batch.empty()) {
      while (!queue_.empty() && batch.size() < policy_.batch_max) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      in_flight_ = batch.size();
    }
    lock.unlock();
    Result<void> r = deliver(batch);
    lock.lock();
    if (r) {
      stats_.frames_written += batch.size();
    } else {
      ++stats_.write_errors;
      stats_.last_error = describe_error(r.error());
    }
    if (r || !policy_.retry) {
      if (!r) stats_.frames_dropped += batch.size();
      batch.clear();
      in_flight_ = 0;
      backoff = std::chrono::milliseconds(0);
      if (queue_.empty()) {  // the forgotten VMs' last frames are delivered
        for (const std::string& vm : forget_) forget(vm);
        forget_.clear();
        idle_.notify_all();
      }
      continue;
    }
    backoff =
        std::clamp(backoff * 2, std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
    const uint64_t flushes = flushing_;
    wake_.wait_for(lock, backoff, [&] { return stop_ || abandoned_ || flushing_ > flushes; });
  }
  idle_.notify_all();
}

}  // namespace nfm
