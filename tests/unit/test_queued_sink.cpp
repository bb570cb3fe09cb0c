// QueuedSink's hand-off: the crawler's shared frame is queued as it is (every sink
// holds the same object, no copy per sink); a frame passed by reference is copied.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <vector>

#include "store/queued_sink.h"

namespace nfm {
namespace {

class RecordingSink final : public QueuedSink {
 public:
  RecordingSink() : QueuedSink({.limit = 100, .batch_max = 8}) { start_writer(); }
  ~RecordingSink() override { stop_writer(); }
  std::string describe() const override { return "recording"; }
  std::vector<std::shared_ptr<const Frame>> delivered() {
    std::lock_guard lock(mu_);
    return delivered_;
  }

 private:
  Result<void> deliver(const Batch& frames) override {
    std::lock_guard lock(mu_);
    delivered_.insert(delivered_.end(), frames.begin(), frames.end());
    return {};
  }
  void forget(const std::string& /*vm*/) override {}
  std::mutex mu_;
  std::vector<std::shared_ptr<const Frame>> delivered_;
};

TEST(QueuedSink, KeepsTheSharedFrameItIsHandedAndCopiesOneLent) {
  auto shared = std::make_shared<Frame>();
  shared->meta.vm.name = "shared-vm";
  Frame lent;
  lent.meta.vm.name = "lent-vm";
  RecordingSink a, b;
  for (RecordingSink* s : {&a, &b}) {
    s->write_shared(shared);
    s->write(lent);
    ASSERT_TRUE(s->flush());
  }
  for (RecordingSink* s : {&a, &b}) {
    const auto got = s->delivered();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].get(), shared.get());  // the crawler's object itself, in both sinks
    EXPECT_NE(got[1].get(), &lent);
    EXPECT_EQ(got[1]->meta.vm.name, "lent-vm");
    EXPECT_EQ(s->stats().frames_written, 2u);
    EXPECT_EQ(s->stats().frames_dropped, 0u);
  }
  EXPECT_EQ(shared.use_count(), 3);  // here and in each sink's record
}

}  // namespace
}  // namespace nfm
