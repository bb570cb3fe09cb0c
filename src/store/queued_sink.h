// The part the store sinks (SQLite, ClickHouse) share: write() puts the frame (the
// crawler's shared one, or a copy) on a bounded queue and returns, so a crawl never waits for a
// store; one writer thread per sink takes batches off the queue and delivers them. When the store
// falls behind by `limit` frames, the oldest waiting frame is dropped and counted. A subclass says
// how a batch is delivered and what a failure means.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/frame_sink.h"

namespace nfm {

class QueuedSink : public FrameSink {
 public:
  struct Policy {
    size_t limit = 1000;     // frames waiting (and, when retrying, in flight) at most
    size_t batch_max = 256;  // frames per delivery
    bool retry = false;      // a failed batch is tried again (back-off 0.1-5 s), else dropped
    std::chrono::seconds flush_wait{60};  // how long a flush waits for the queue at most
  };

  void write(const Frame& frame) final;
  void write_shared(const std::shared_ptr<const Frame>& frame) final;
  bool flush_until(std::chrono::steady_clock::time_point deadline) final;
  uint64_t abandon() final;
  bool busy() const final;
  // The VM is gone: forget(vm) runs once the frames queued before it are delivered.
  void forget_vm(const VmIdentity& vm) final;
  SinkStats stats() const final;

 protected:
  using Batch = std::vector<std::shared_ptr<const Frame>>;
  explicit QueuedSink(Policy policy) : policy_(policy) {}
  // Both on the subclass's watch: start once it can deliver, stop in its destructor
  // (before its members go). A non-retrying sink delivers what is queued first
  // (nothing, after abandon()).
  void start_writer();
  void stop_writer();

  // On the writer thread, without the lock. With Policy::retry, a failed batch
  // comes back until it succeeds or the sink stops.
  virtual Result<void> deliver(const Batch& frames) = 0;
  // On the writer thread: drop what is remembered of `vm`.
  virtual void forget(const std::string& vm) = 0;
  // The status line's text for a failed delivery.
  virtual std::string describe_error(const Error& e) const { return e.message; }
  // For subclasses that delete what they stored (retention): counted in stats().
  void count_expired(uint64_t frames);

 private:
  void run();

  const Policy policy_;
  mutable std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<std::shared_ptr<const Frame>> queue_;
  std::vector<std::string> forget_;
  size_t in_flight_ = 0;
  uint64_t flushing_ = 0;  // flush() calls waiting: a retry does not sleep through them
  bool stop_ = false;
  bool abandoned_ = false;  // write() drops, the writer takes no new batch
  SinkStats stats_;
  std::thread thread_;
};

}  // namespace nfm
