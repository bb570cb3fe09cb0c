// main() for a fuzz target built without libFuzzer (the normal toolchain, as in CI):
//   fuzz_T [--mutate SECONDS] [--seed N] [--artifacts DIR] FILE|DIR...
// Runs every file named (directories: every file in them) through
// LLVMFuzzerTestOneInput once: the seeds and every input that once crashed. With
// --mutate it then fuzzes for SECONDS: each round takes one of those inputs and applies
// a few random mutations of the kinds libFuzzer uses (bit flips, random and boundary
// values, erased, inserted and copied ranges, truncation). That is blind, not
// coverage-guided (scripts/fuzz.sh runs libFuzzer for that), but it runs under the same
// sanitizers in every CI run.
//
// A finding fails the run: a crash or sanitizer report (the process dies), a hang (one
// input running longer than 30 s) or a memory blow-up (resident set above 3 GiB). Its
// input is written first to DIR/crash-T-SEED-ROUND (default: the current directory),
// so that it can be replayed and kept under tests/fuzz/regressions/T/; a replayed
// file that fails is named.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fuzz_target.h"

namespace fs = std::filesystem;

// Weak: present only in a sanitizer build (it runs `save_input` when a report ends it).
extern "C" __attribute__((weak)) void
__sanitizer_set_death_callback(  // NOLINT(bugprone-reserved-identifier): the sanitizers' name
    void (*callback)());

// Weak: targets without set-up need not define it.
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int*, char***) {
  return 0;
}

namespace {

constexpr unsigned kHangSeconds = 30;
constexpr uint64_t kRssLimitBytes = uint64_t{3} << 30;

// The input being run and where it goes if it is a finding: written by the main
// thread (under g_input_mutex) between runs, read by the death callback and the signal
// handlers (on the main thread, during a run) and by the RSS watchdog (under the mutex).
std::vector<uint8_t> g_input;
char g_artifact[4096];  // where a mutated input is saved, or the replayed file's path
std::atomic<bool> g_mutating{false};
std::atomic<bool> g_running{false};  // an input is being run
std::mutex g_input_mutex;

void say(const char* text) {
  (void)!write(2, text, strlen(text));
}

void save_input() {
  if (!g_running.load()) return;
  if (!g_mutating.load()) {  // a replayed file is its own artifact
    say("fuzz: while running ");
    say(g_artifact);
    say("\n");
    return;
  }
  const int fd = open(g_artifact, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_input.size()) {
    const ssize_t n = write(fd, g_input.data() + done, g_input.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  say("fuzz: the input is saved as ");
  say(g_artifact);
  say("\n");
}

void on_hang(int) {
  say("fuzz: one input ran longer than 30 s (a hang)\n");
  save_input();
  _exit(3);
}

// A crash the sanitizers do not report through the death callback (abort(): ASan's
// handle_abort is off; every signal in a build without sanitizers): save, then die of it.
void on_crash(int sig) {
  say("fuzz: the target crashed (a signal)\n");
  save_input();
  signal(sig, SIG_DFL);
  raise(sig);
}

uint64_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// One to eight mutations of `data`, each of a kind libFuzzer's MutationDispatcher has.
void mutate(std::vector<uint8_t>& data, std::mt19937_64& rng) {
  auto below = [&rng](size_t n) { return n ? static_cast<size_t>(rng() % n) : 0; };
  static constexpr uint64_t kBoundaries[] = {
      0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0xffffffff, 0x8000000000000000ull, ~0ull};
  const int count = 1 + static_cast<int>(below(8));
  for (int i = 0; i < count; ++i) {
    const size_t at = below(data.size());
    switch (below(7)) {
      case 0:  // a bit flipped
        if (!data.empty()) data[at] ^= static_cast<uint8_t>(1u << below(8));
        break;
      case 1:  // a random byte
        if (!data.empty()) data[at] = static_cast<uint8_t>(rng());
        break;
      case 2: {  // a boundary value, 1, 2, 4 or 8 bytes wide
        const size_t width = size_t{1} << below(4);
        const uint64_t v = kBoundaries[below(std::size(kBoundaries))];
        if (at + width <= data.size()) std::memcpy(&data[at], &v, width);
        break;
      }
      case 3:  // a range erased
        if (!data.empty())
          data.erase(data.begin() + at,
                     data.begin() + at + below(std::min<size_t>(data.size() - at, 64)) + 1);
        break;
      case 4: {  // random bytes inserted
        std::vector<uint8_t> bytes(1 + below(16));
        for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
        data.insert(data.begin() + at, bytes.begin(), bytes.end());
        break;
      }
      case 5: {  // a range copied over another
        const size_t from = below(data.size()), len = below(64);
        if (from + len <= data.size() && at + len <= data.size())
          std::memmove(&data[at], &data[from], len);
        break;
      }
      case 6:  // cut short
        data.resize(at);
        break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  const std::string name = fs::path(argv[0]).filename().string();
  double mutate_seconds = 0;
  uint64_t seed = std::random_device{}();
  fs::path artifacts = ".";
  std::vector<fs::path> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--mutate" || arg == "--seed" || arg == "--artifacts") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--mutate") mutate_seconds = std::stod(value);
      if (arg == "--seed") seed = std::stoull(value);
      if (arg == "--artifacts") artifacts = value;
    } else {
      paths.emplace_back(arg);
    }
  }
  std::vector<std::vector<uint8_t>> inputs;
  std::vector<std::string> files;  // each input's file
  for (const fs::path& p : paths) {
    std::vector<fs::path> found;
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) found.push_back(e.path());
    } else {
      found.push_back(p);
    }
    for (const fs::path& f : found) {
      std::ifstream in(f, std::ios::binary);
      inputs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      files.push_back(f.string());
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "%s: no inputs (give files or directories)\n", argv[0]);
    return 2;
  }
  signal(SIGALRM, on_hang);
  signal(SIGABRT, on_crash);
  if (__sanitizer_set_death_callback) {
    __sanitizer_set_death_callback(save_input);
  } else {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, on_crash);
  }
  // The watchdog inherits a mask without SIGALRM and SIGABRT: they land on the main
  // thread, which runs the inputs.
  sigset_t handled, before;
  sigemptyset(&handled);
  sigaddset(&handled, SIGALRM);
  sigaddset(&handled, SIGABRT);
  pthread_sigmask(SIG_BLOCK, &handled, &before);
  std::thread([] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (rss_bytes() > kRssLimitBytes) {
        std::lock_guard lock(g_input_mutex);
        say("fuzz: resident set above 3 GiB (a memory blow-up)\n");
        save_input();
        _exit(4);
      }
    }
  }).detach();
  pthread_sigmask(SIG_SETMASK, &before, nullptr);

  // One input, with the hang alarm armed only while it runs.
  auto run = [](const uint8_t* data, size_t size) {
    g_running = true;
    alarm(kHangSeconds);
    LLVMFuzzerTestOneInput(data, size);
    alarm(0);
    g_running = false;
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    {
      std::lock_guard lock(g_input_mutex);
      std::snprintf(g_artifact, sizeof g_artifact, "%s", files[i].c_str());
    }
    run(inputs[i].data(), inputs[i].size());
  }
  std::printf("%s: %zu inputs replayed\n", name.c_str(), inputs.size());
  if (mutate_seconds <= 0) return 0;

  std::mt19937_64 rng(seed);
  std::printf("%s: mutating for %g s, --seed %llu\n", name.c_str(), mutate_seconds,
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::duration<double>(mutate_seconds));
  uint64_t rounds = 0;
  while (std::chrono::steady_clock::now() < end) {
    {
      std::lock_guard lock(g_input_mutex);
      g_input = inputs[rng() % inputs.size()];
      mutate(g_input, rng);
      std::snprintf(g_artifact, sizeof g_artifact, "%s/crash-%s-%llu-%llu", artifacts.c_str(),
                    name.c_str(), static_cast<unsigned long long>(seed),
                    static_cast<unsigned long long>(rounds));
      g_mutating = true;
    }
    run(g_input.data(), g_input.size());
    ++rounds;
  }
  std::printf("%s: %llu mutated inputs, no finding\n", name.c_str(),
              static_cast<unsigned long long>(rounds));
  return 0;
}
