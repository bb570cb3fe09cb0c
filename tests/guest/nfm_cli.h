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

// `nfm ARGS...` running in the background (e.g. `nfm crawl`), its stdout and stderr
// going to files, until signalled. Killed (SIGKILL) if still running when destroyed.
class NfmProcess {
 public:
  // Starts it; stdout to `out_path`, stderr to `err_path`.
  static NfmProcess start(const std::vector<std::string>& args, const std::string& out_path,
                          const std::string& err_path);
  NfmProcess(NfmProcess&& other) noexcept : pid_(other.pid_), status_(other.status_) {
    other.pid_ = -1;
  }
  NfmProcess& operator=(NfmProcess&&) = delete;
  ~NfmProcess();

  int pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Waits up to `timeout_s` for it to exit: its exit status, or -1 (still running
  // after the timeout, then killed; or died of a signal).
  int wait(int timeout_s);

 private:
  NfmProcess() = default;
  int pid_ = -1;
  int status_ = -2;  // -2: not reaped yet
};

}  // namespace nfm::testing
