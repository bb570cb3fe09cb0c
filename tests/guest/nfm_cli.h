// Running the real `nfm` binary from guest tests, as a user would.
#pragma once

#include <string>
#include <vector>

namespace nfm::testing {

struct CliResult {
  int status = -1;  // exit status, or -1 if it did not exit normally (crash, timeout)
  std::string out, err;
};

// Runs `nfm ARGS...` (bounded by `timeout_s`), optionally as another uid and
// from another copy of the binary (the build tree may not be reachable by that uid).
CliResult run_nfm(const std::vector<std::string>& args, int timeout_s = 120, int as_uid = -1,
                  const std::string& binary = {});

// The nfm binary under test.
const char* nfm_binary();

}  // namespace nfm::testing
