// Guests for a test program: declared at namespace scope, booted once (all of them, in
// parallel) on first use, shut down when the program ends. Link nfm_lab_gtest_main for
// main(). Example:
//
//   static const int kDeclared = nfm::lab::declare_guests({{.kernel = "5.10"},
//                                                           {.kernel = "6.12", .ram_mib = 256}});
//   class Lab : public testing::TestWithParam<std::string> {};
//   TEST_P(Lab, Works) {
//     NFM_LAB_GUEST(g, GetParam());          // nfm::lab::Guest* g, or the test fails
//     EXPECT_EQ(g->truth().hostname, "nfm-guest");
//   }
//   INSTANTIATE_TEST_SUITE_P(All, Lab, testing::ValuesIn(nfm::lab::declared_guests()));
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "guest.h"

namespace nfm::lab {

// Registers guests; the key of each is opts.name, or opts.kernel when the name is empty
// The QEMU -name is "nfm-<key>-<test program pid>" (unique across parallel test programs),
// and the workload is quiet unless the test asks (with_quiet_workload). Returns how many are
// declared in total.
int declare_guests(std::vector<GuestOptions> guests);
std::vector<std::string> declared_guests();  // keys, in declaration order

// Under ctest ($NFM_LAB_POOL set, see pool.h) a guest declared with exactly the pool's
// options (the standard workload, 384 MiB, 1 vCPU, no extra options) and not .exclusive
// is the pool's running guest of that kernel, shared with other programs: it cannot be
// changed (Guest::attach), and its truth().seq counts every program's dumps.
//
// The guest registered as `key`. The first call boots every declared guest: QEMU
// processes are started one after the other from the calling thread (call from the main
// thread, see guest.h), then they boot concurrently. Later calls return the same guests.
Result<Guest*> guest(std::string_view key);
// A gtest parameter name for a guest key ("6.1-cloud" -> "6_1_cloud"), for
// INSTANTIATE_TEST_SUITE_P(..., ValuesIn(declared_guests()), param_name).
std::string param_name(const ::testing::TestParamInfo<std::string>& info);

// Resumes shared (pooled) guests that the finished test left paused, so that a failed
// assertion between pause() and resume() does not stall the other test programs.
void release_shared_guests();

// Kills every fixture guest now (main() of nfm_lab_gtest_main calls it at exit).
void shutdown_guests();

}  // namespace nfm::lab

// Declares `Guest* var` for the guest `key`; fails the current test if it did not boot.
#define NFM_LAB_GUEST(var, key)                                       \
  auto var##_result = ::nfm::lab::guest(key);                         \
  ASSERT_TRUE(var##_result.ok()) << var##_result.error().to_string(); \
  ::nfm::lab::Guest* var = *var##_result
