// main() for guest test programs: runs the tests, then shuts the fixture guests down
// before static destructors run.
#include <gtest/gtest.h>

#include "fixture.h"

namespace {
// Shared guests must not stay paused (and locked) for the other programs after a test
// failed between pause() and resume().
class ReleaseSharedGuests : public testing::EmptyTestEventListener {
  void OnTestEnd(const testing::TestInfo&) override { nfm::lab::release_shared_guests(); }
};
}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  testing::UnitTest::GetInstance()->listeners().Append(new ReleaseSharedGuests);
  int rc = RUN_ALL_TESTS();
  nfm::lab::shutdown_guests();
  return rc;
}
