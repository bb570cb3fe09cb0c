// main() for guest test programs: runs the tests, then shuts the fixture guests down
// before static destructors run.
#include <gtest/gtest.h>

#include "fixture.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  nfm::lab::shutdown_guests();
  return rc;
}
