// The guest pool: one lab guest per standard kernel, booted once per test run and shared
// by every test program that only reads it (ctest fixture "guest_pool", see
// tests/guest/CMakeLists.txt). Booting under TCG is the most expensive thing the suite
// does; most programs compare nfm with an unchanged guest, which any guest can serve.
//
//   nfm-lab pool start DIR   starts the pool process (returns at once; guests boot behind)
//   nfm-lab pool stop DIR    stops it and its guests, prints its log
//
// The pool process publishes each guest, once ready, as DIR/KERNEL.json (or the boot
// error as DIR/KERNEL.error). Test programs find DIR in $NFM_LAB_POOL; the fixture
// (fixture.h) attaches to a pooled guest when a declared guest has exactly the pool's
// options (pool::matches), else boots its own as without a pool. The pool process keeps
// the guest's serial port (QEMU serves one client) and relays "dump"/"ping" lines written
// to RUN_DIR/cmd.sock; attached programs read the truth log (see Guest::attach).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "guest.h"

namespace nfm::lab::pool {

// The pooled kernels, and the options every pooled guest has (as the fixture declares
// them, its defaults included).
const std::vector<std::string>& kernels();
GuestOptions options(const std::string& kernel);
// Whether a declared guest (after the fixture's defaults) can be a pooled one.
bool matches(const GuestOptions& declared);

// The directory of the pool this process should use ($NFM_LAB_POOL), or "".
std::string directory();
// Whether that pool's process runs (it may still be booting its guests).
bool running();
// Waits until the pool publishes `kernel` and attaches to it.
Result<std::unique_ptr<Guest>> attach(const std::string& dir, const std::string& kernel,
                                      std::chrono::seconds timeout);

// nfm-lab pool start|stop|serve.
int start(const std::string& dir, const std::string& self_exe);
int stop(const std::string& dir);
int serve(const std::string& dir, pid_t watch);

}  // namespace nfm::lab::pool
